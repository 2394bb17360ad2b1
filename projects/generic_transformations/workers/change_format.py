"""Worker for the change_format step: `python projects/generic_transformations/workers/change_format.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("change_format", name="change_format")
