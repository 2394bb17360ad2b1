"""Worker for the split_column step: `python projects/generic_transformations/workers/split_column.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("split_column", name="split_column")
