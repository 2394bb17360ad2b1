"""The steps of ids_drr. Schemas say what each step needs; cross-field rules are checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.registry import StepSpec

ISO_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
YEAR = {"oneOf": [{"type": "integer", "minimum": 1000, "maximum": 9999},
                  {"type": "string", "pattern": r"^\d{4}$"}]}
MONTH = {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 12},
                   {"type": "string", "pattern": r"^(0?[1-9]|1[0-2])$"}]}


def dates_are_real_and_ordered(context: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """date_start and date_end must be calendar dates, start not after end."""
    parsed = {}
    for key in ("date_start", "date_end"):
        try:
            parsed[key] = dt.date.fromisoformat(str(context.get(key)))
        except ValueError:
            yield key, f"{context.get(key)!r} is not a calendar date (YYYY-MM-DD)"
    if len(parsed) == 2 and parsed["date_start"] > parsed["date_end"]:
        yield "date_start", "must not be after date_end"


STEPS = [
    StepSpec(
        name="sentinel",
        description="Download Sentinel-1 flood inundation rasters for a date range.",
        schema={
            "type": "object",
            "properties": {"date_start": ISO_DATE, "date_end": ISO_DATE},
            "required": ["date_start", "date_end"],
        },
        checks=(dates_are_real_and_ordered,),
        timeout=3 * 3600,
        retries=2,
    ),
    StepSpec(
        name="sentinel_upload_to_s3",
        description="Upload the previous step's files to the configured S3 bucket.",
        schema={"type": "object", "properties": {"prefix": {"type": "string"}}},
        timeout=1800,
        retries=3,
    ),
    StepSpec(
        name="collect_imd_data",
        description="Collect IMD gridded rainfall for a year.",
        schema={"type": "object", "properties": {"year": YEAR}, "required": ["year"]},
        timeout=3600,
        retries=2,
    ),
    StepSpec(
        name="bhuvan_get_dates",
        description="List the dates for which Bhuvan has flood layers.",
        schema={"type": "object"},
        timeout=600,
        retries=2,
    ),
    StepSpec(
        name="bhuvan_gdal_wms",
        description="Fetch Bhuvan WMS tiles with GDAL.",
        schema={"type": "object", "properties": {"dates": {"type": "array", "items": ISO_DATE}}},
        timeout=3600,
        retries=2,
    ),
    StepSpec(
        name="bhuvan_remove_watermark",
        description="Remove the watermark from Bhuvan rasters.",
        schema={"type": "object"},
        timeout=1800,
        retries=1,
    ),
    StepSpec(
        name="bhuvan_transformer",
        description="Aggregate Bhuvan flood layers for a month.",
        schema={
            "type": "object",
            "properties": {"year": YEAR, "month": MONTH},
            "required": ["year", "month"],
        },
        timeout=3600,
        retries=1,
    ),
]
