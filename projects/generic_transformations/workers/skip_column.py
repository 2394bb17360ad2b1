"""Worker for the skip_column step: `python projects/generic_transformations/workers/skip_column.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("skip_column", name="skip_column")
