"""The steps of generic_transformations, with the contexts existing clients send."""

from __future__ import annotations

from pipeline.registry import StepSpec

NAME = {"type": "string", "minLength": 1}
NAMES = {"type": "array", "items": NAME, "minItems": 1}
NAME_OR_NAMES = {"oneOf": [NAME, NAMES]}
# Older clients send booleans as the strings "True"/"False".
FLAG = {"oneOf": [{"type": "boolean"}, {"enum": ["True", "False", "true", "false"]}]}
# aggregate takes comma-separated names or a list of names.
CSV_NAMES = {"oneOf": [NAME, NAMES]}


def _object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required}


STEPS = [
    StepSpec(
        name="skip_column",
        description="Drop one or more columns.",
        schema=_object({"columns": NAME_OR_NAMES}, ["columns"]),
        timeout=600,
        retries=1,
    ),
    StepSpec(
        name="merge_columns",
        description="Join columns into one with a separator, optionally dropping the originals.",
        schema=_object(
            {
                "columns": NAMES,
                "output_column": NAME,
                "separator": {"type": "string"},
                "drop_flag": FLAG,
            },
            ["columns", "output_column", "separator"],
        ),
        timeout=600,
        retries=1,
    ),
    StepSpec(
        name="anonymize",
        description="Replace values matching a case-insensitive pattern in one column.",
        schema=_object(
            {"to_replace": NAME, "replace_val": {"type": "string"}, "column": NAME},
            ["to_replace", "replace_val", "column"],
        ),
        timeout=600,
        retries=1,
    ),
    StepSpec(
        name="rename_column",
        description="Rename columns: {old: new}.",
        schema=_object(
            {
                "rename_dict": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": NAME,
                }
            },
            ["rename_dict"],
        ),
        timeout=600,
        retries=1,
    ),
    StepSpec(
        name="split_column",
        description="Split one column into several on a separator.",
        schema=_object(
            {"column": NAME, "new_cols": NAMES, "sep": {"type": "string", "minLength": 1}},
            ["column", "new_cols", "sep"],
        ),
        timeout=600,
        retries=1,
    ),
    StepSpec(
        name="aggregate",
        description="Pivot: index rows by a column, spread columns, aggregate values.",
        schema=_object({"index": CSV_NAMES, "columns": CSV_NAMES, "values": CSV_NAMES},
                       ["index", "columns", "values"]),
        timeout=900,
        retries=1,
    ),
    StepSpec(
        name="change_format",
        description="Convert a CSV to JSON (an array of objects) or XML (<rows><row>...</row></rows>).",
        schema=_object({"format": {"enum": ["json", "xml", "JSON", "XML"]}}, ["format"]),
        timeout=600,
        retries=1,
    ),
]
