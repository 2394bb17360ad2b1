"""Worker for the aggregate step: `python projects/generic_transformations/workers/aggregate.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("aggregate", name="aggregate")
