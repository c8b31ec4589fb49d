"""Deploying the project to Databricks: the bundle's job resources and an SDK deploy."""
