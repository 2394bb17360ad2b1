"""Worker for the merge_columns step: `python projects/generic_transformations/workers/merge_columns.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("merge_columns", name="merge_columns")
