"""Project settings: see https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader

from cltv.hooks import (
    CltvFitTagHook,
    MlflowStoreHook,
    NodeTimingHook,
    ParameterCheckHook,
    SparkHooks,
)

# Hooks marked tryfirst run in the reverse of this order, before the plugins' (kedro-mlflow's):
# the parameters are checked, MLflow's store is chosen, then Spark starts in the background
# while kedro-mlflow sets up.
HOOKS = (
    SparkHooks(),
    MlflowStoreHook(),
    ParameterCheckHook(),
    CltvFitTagHook(),
    NodeTimingHook(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
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
