"""Worker for the rename_column step: `python projects/generic_transformations/workers/rename_column.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("rename_column", name="rename_column")
