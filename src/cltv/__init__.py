"""cltv-churn: customer lifetime value and churn on Spark + Delta Lake, as a Kedro project."""

import re
import warnings

__version__ = "0.1.0"

# Warnings a library raises on every run whatever the project does, with nothing for a user to
# act on, kept out of a run's log here (the project's first module Kedro imports):
# - kedro and kedro-mlflow register their config resolvers with omegaconf's
#   register_new_resolver, deprecated by omegaconf 2.4 (hydra-ecosystem/omegaconf#426);
warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)
# - kedro-mlflow's KedroPipelineModel (imported with its hooks; this project does not use it)
#   has a predict without type hints, which MLflow 3 points out when the class is defined.
#   MLflow raises it inside its own `simplefilter("once", UserWarning)`
#   (mlflow.utils.annotations.filter_user_warnings_once), which overrides any filter, so it
#   is dropped where warnings are shown instead.
_NOT_SHOWN = re.compile(r"Add type hints to the `predict` method")
_show_warning = warnings.showwarning


def _show_warning_unless_not_shown(message, category, filename, lineno, file=None, line=None):
    if not _NOT_SHOWN.search(str(message)):
        _show_warning(message, category, filename, lineno, file, line)


warnings.showwarning = _show_warning_unless_not_shown
