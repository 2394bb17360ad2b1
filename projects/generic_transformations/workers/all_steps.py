"""One worker serving every generic_transformations step:
`python projects/generic_transformations/workers/all_steps.py [--concurrency N]`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve()
