"""Project settings: see https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_ARGS live in cltv.configuration: `kedro run` reads spark.yml with them before
# a Kedro session exists, to start Spark early (cltv.cli)
from cltv.configuration import CONFIG_LOADER_ARGS  # noqa: F401
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
