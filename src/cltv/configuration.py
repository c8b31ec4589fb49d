"""How the project reads its configuration: the config loader's arguments (``settings.py``
passes them to Kedro) and, before any Kedro session exists, the environment's ``spark.yml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "spark": ["spark*", "spark*/**"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],  # as kedro-mlflow registers it
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
    # conf/local (or an environment) overriding cltv.gamma_gamma.penalizer keeps the rest of
    # cltv; so do nested --params, which Kedro merges into the parameters the same way
    "merge_strategy": {"parameters": "soft"},
}


def spark_settings(conf_source: str | Path, env: str | None) -> dict[str, Any]:
    """The Spark settings a run in ``env`` (default ``KEDRO_ENV``, else ``local``) reads from
    ``conf_source``: what Kedro's config loader gives as ``config_loader["spark"]``."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(conf_source), env=env or os.environ.get("KEDRO_ENV"), **CONFIG_LOADER_ARGS
    )
    return dict(loader["spark"])
