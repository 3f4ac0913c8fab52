"""Strip outputs, execution counts and run-time metadata from notebooks, so that git holds only their source.

Usage::

    python notebooks/strip_outputs.py                  # every notebooks/*.ipynb, in place
    python notebooks/strip_outputs.py --check          # exit 1 and name the notebooks that hold outputs
    python notebooks/strip_outputs.py path/to/nb.ipynb ...

CI runs the check (``tests/test_notebook.py``); run the script before committing a notebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
RUNTIME_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
RUNTIME_NB_METADATA = ("widgets", "varInspector")


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs, execution counts and run-time metadata in place; return whether anything changed."""
    changed = False
    for key in RUNTIME_NB_METADATA:
        changed |= nb.metadata.pop(key, None) is not None
    for cell in nb.cells:
        for key in RUNTIME_CELL_METADATA:
            changed |= cell.metadata.pop(key, None) is not None
        if cell.cell_type == "code":
            changed |= bool(cell.outputs) or cell.execution_count is not None
            cell.outputs, cell.execution_count = [], None
    return changed


def main(argv: list[str] | None = None) -> int:
    """Strip (or with ``--check`` only inspect) the notebooks given, or every ``notebooks/*.ipynb``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook holds outputs")
    args = ap.parse_args(argv)
    dirty = []
    for path in args.paths or sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    verb = "holds outputs" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}", file=sys.stderr)
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
