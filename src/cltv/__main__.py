"""``python -m cltv`` and the ``cltv-churn`` script: the project's ``kedro run``.

Installed from the wheel (a Databricks job, say) there is no ``pyproject.toml``:
``configure_project`` takes settings and pipelines from the installed package, and Kedro takes
the current folder as the project, so relative ``data/...`` paths and ``mlflow.db`` land there.
Pass the configuration with ``--conf-source`` (a ``conf`` folder or ``conf-cltv.tar.gz``).
"""

import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args: Any, **kwargs: Any) -> Any:
    """Run the project: ``main()`` parses ``sys.argv`` like ``kedro run`` does."""
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    # Outside an interpreter session click exits with the run's status (non-zero on failure).
    # Inside one (Databricks runs wheel tasks in a REPL) it must not: SystemExit(0) would fail
    # the task, so errors propagate as exceptions and success returns the run's result.
    kwargs.setdefault("standalone_mode", not hasattr(sys, "ps1"))
    return find_run_command(package_name)(*args, **kwargs)


if __name__ == "__main__":
    main()
