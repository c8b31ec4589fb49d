"""Project settings: see https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader

from cltv.hooks import (
    CltvFitTagHook,
    MlflowRunHook,
    MlflowStoreHook,
    NodeTimingHook,
    ParameterCheckHook,
    SparkHooks,
)

# Hooks marked tryfirst run in the reverse of this order, before kedro-mlflow's (MlflowRunHook):
# the parameters are checked, MLflow's store is chosen, then Spark starts in the background
# while kedro-mlflow sets up. The others run in the reverse of this order too: MlflowRunHook,
# last, runs first, as kedro-mlflow's own hook did when it was registered as a plugin.
HOOKS = (
    SparkHooks(),
    MlflowStoreHook(),
    ParameterCheckHook(),
    CltvFitTagHook(),
    NodeTimingHook(),
    MlflowRunHook(),
)
# kedro-mlflow's hook as installed: MlflowRunHook is that hook, logging in fewer calls
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)

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
