"""Strip outputs, execution counts and per-run metadata from Jupyter notebooks.

The notebooks are committed without outputs so that the repository stays diffable; the test
suite executes them instead (tests/test_notebooks.py). Run this before committing a notebook
you ran in JupyterLab:

    python scripts/strip_notebooks.py                  # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check          # change nothing; exit 1 naming what needs stripping
    python scripts/strip_notebooks.py path/to/a.ipynb  # given notebooks only

What goes: code-cell outputs and execution counts, cell metadata that records a run
(``execution``, ``ExecuteTime``, ``collapsed``, ``scrolled``) and notebook metadata that depends on
the machine (``widgets``, ``signature``, the language version). Sources, cell ids and the kernel
spec stay.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RUN_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")
MACHINE_NOTEBOOK_METADATA = ("widgets", "signature")


def strip(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without outputs, execution counts and per-run metadata."""
    clean = copy.deepcopy(notebook)
    for cell in clean.cells:
        for key in RUN_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    for key in MACHINE_NOTEBOOK_METADATA:
        clean.metadata.pop(key, None)
    if "language_info" in clean.metadata:
        # Version and lexer details change with the machine that ran it; the name is enough.
        clean.metadata["language_info"] = {"name": clean.metadata["language_info"].get("name", "python")}
    return clean


def needs_stripping(notebook: nbformat.NotebookNode) -> bool:
    return strip(notebook) != notebook


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if any notebook needs stripping"
    )
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        try:
            notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        except (OSError, ValueError) as exc:  # unreadable file or invalid JSON
            print(f"{path}: cannot read notebook: {exc}", file=sys.stderr)
            return 2
        if not needs_stripping(notebook):
            continue
        dirty.append(path)
        if not args.check:
            nbformat.write(strip(notebook), path)
            print(f"stripped {path}")
    if args.check and dirty:
        for path in dirty:
            print(
                f"{path}: has outputs, execution counts or run metadata; run python scripts/strip_notebooks.py",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
