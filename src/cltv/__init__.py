"""cltv-churn: customer lifetime value and churn on Spark + Delta Lake, as a Kedro project."""

__version__ = "0.1.0"
