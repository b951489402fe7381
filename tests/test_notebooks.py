"""The psychometrician's notebooks: each runs top to bottom on its small defaults, and none is
committed with outputs.

Every notebook ends with a cell that asserts its own claims (validation passed, parameters
recovered, ...), so executing it is a test of those claims, not only of "no exception". The
kernel is the project's interpreter (``python3``: jupyter_client starts it with
``sys.executable``, i.e. the ``.venv`` python that runs pytest). 03_promote starts the delivery
service in the background: it must be gone when the notebook ends, and as soon as a cell fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "01_exposure_study.ipynb",
    "02_calibration.ipynb",
    "03_promote.ipynb",
    "04_polytomous_exposure.ipynb",
)
STRIP = ROOT / "scripts" / "strip_notebooks.py"
SERVICE_LINE = re.compile(r"qbank serve \(pid (\d+)\) on (http://[\d.:]+)")


def _outputs(notebook, output_type=None):
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output_type is None or output["output_type"] == output_type:
                yield cell, output


def _execute(notebook, **options):
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        **options,
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error (unless allowed)


def _started_services(notebook) -> list[tuple[int, str]]:
    return [
        (int(m.group(1)), m.group(2))
        for _, output in _outputs(notebook, "stream")
        for m in SERVICE_LINE.finditer(output["text"])
    ]


def _assert_stopped(pid: int, url: str) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(pid, 9)  # do not leave it behind for the next test
        pytest.fail(f"qbank serve (pid {pid}) outlived the notebook")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


def test_the_notebooks_are_all_found():
    # A renamed or deleted notebook must not drop silently out of the executed set.
    assert set(EXPECTED) <= {path.name for path in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    # Figures, bundles and databases go to a temporary folder instead of runs/notebooks.
    monkeypatch.setenv("QBANK_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    try:
        _execute(notebook)
    finally:
        for pid, url in _started_services(notebook):
            _assert_stopped(pid, url)
    stderr = [output["text"] for _, output in _outputs(notebook, "stream") if output["name"] == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr (a warning the reader would see):\n" + "\n".join(stderr)
    data = [output.get("data", {}) for _, output in _outputs(notebook)]
    assert any("image/png" in d for d in data), f"{path.name} shows no plot"
    assert any("text/html" in d for d in data), f"{path.name} shows no table"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    with_output = [i for i, cell in enumerate(notebook.cells) if cell.get("outputs")]
    counted = [i for i, cell in enumerate(notebook.cells) if cell.get("execution_count") is not None]
    assert not with_output and not counted, (
        f"{path.name}: cells {sorted(set(with_output + counted))} carry outputs or execution counts; "
        "run python scripts/strip_notebooks.py"
    )
    parameters = next(
        cell.source for cell in notebook.cells if cell.cell_type == "code" and "FULL_SIZE" in cell.source
    )
    assert "FULL_SIZE = False" in parameters, f"{path.name}: commit the small defaults"


@pytest.mark.slow
def test_a_failing_cell_stops_the_service(tmp_path, monkeypatch):
    monkeypatch.setenv("QBANK_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK_DIR / "03_promote.ipynb", as_version=4)
    start = next(
        i for i, cell in enumerate(notebook.cells) if "start-service" in cell.metadata.get("tags", [])
    )
    notebook.cells[start + 1 :] = [
        nbformat.v4.new_code_cell('raise RuntimeError("injected failure")'),
        nbformat.v4.new_code_cell(
            'assert not service.running, "the failed cell left the service running"\n'
            'print("stopped after the failure")'
        ),
    ]
    _execute(notebook, allow_errors=True)
    started = _started_services(notebook)
    assert len(started) == 1, "the tagged cell did not start the service"
    failed, after = notebook.cells[-2:]
    assert [o.get("evalue") for o in failed.outputs if o["output_type"] == "error"] == ["injected failure"]
    assert not [o for o in after.outputs if o["output_type"] == "error"], after.outputs
    assert "stopped after the failure" in "".join(o.get("text", "") for o in after.outputs)
    _assert_stopped(*started[0])


def _run_strip(*args):
    return subprocess.run(
        [sys.executable, str(STRIP), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_strip_script_checks_and_strips(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["language_info"] = {
        "name": "python",
        "version": "3.11.9",
        "codemirror_mode": {"version": 3},
    }
    notebook.metadata["widgets"] = {"state": {}}
    code = nbformat.v4.new_code_cell("print(1)\n1 + 1", execution_count=3)
    code.metadata["execution"] = {"iopub.status.idle": "2026-11-24T10:00:00Z"}
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3),
    ]
    notebook.cells = [nbformat.v4.new_markdown_cell("# Title"), code]
    path = tmp_path / "dirty.ipynb"
    nbformat.write(notebook, path)

    checked = _run_strip("--check", path)
    assert checked.returncode == 1 and "dirty.ipynb" in checked.stderr
    assert nbformat.read(path, as_version=4) == notebook  # --check changes nothing

    assert _run_strip(path).returncode == 0
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert clean.cells[1].metadata == {} and clean.cells[1].id == code.id
    assert [cell.source for cell in clean.cells] == ["# Title", "print(1)\n1 + 1"]
    assert clean.metadata["language_info"] == {"name": "python"} and "widgets" not in clean.metadata
    assert _run_strip("--check", path).returncode == 0


def test_strip_script_names_an_unreadable_notebook(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps({"cells": "not a list"})[:-3])
    result = _run_strip("--check", path)
    assert result.returncode == 2 and "broken.ipynb: cannot read notebook" in result.stderr


def test_the_repository_notebooks_pass_the_strip_check():
    result = _run_strip("--check")
    assert result.returncode == 0, result.stderr
