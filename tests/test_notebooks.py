"""The notebooks run top to bottom on the output of a real run, and are committed clean."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = ("exploration", "score_new_customer")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(project_root, name):
    notebook = nbformat.read(project_root / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_on_the_last_run(project_root, default_run, name):
    folder = default_run.project / "notebooks"
    folder.mkdir(exist_ok=True)
    path = shutil.copy(project_root / "notebooks" / f"{name}.ipynb", folder)
    notebook = nbformat.read(path, as_version=4)
    # raises CellExecutionError (with the cell and traceback) if any cell fails, asserts included
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    results = [o for c in notebook.cells for o in c.get("outputs", []) if "data" in o]
    assert results, "the notebook showed nothing"
    assert not (folder / "mlflow.db").exists()  # MLflow used the project's store
