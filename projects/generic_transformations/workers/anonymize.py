"""Worker for the anonymize step: `python projects/generic_transformations/workers/anonymize.py`."""

from __future__ import annotations

from csv_steps import serve

if __name__ == "__main__":
    serve("anonymize", name="anonymize")
