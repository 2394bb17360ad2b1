"""Steps of the demo project. Their worker is workers/demo_worker.py."""

from __future__ import annotations

from pipeline.registry import StepSpec

STEPS = [
    StepSpec(name="noop", description="Return the input unchanged.", timeout=60),
    StepSpec(
        name="append",
        description="Append context.text to the input (a string; empty if none).",
        schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        timeout=60,
    ),
    StepSpec(
        name="sleep",
        description="Wait context.seconds, then return the input.",
        schema={
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
            "required": ["seconds"],
        },
        timeout=3600,
    ),
    StepSpec(
        name="fail",
        description="Raise an error with context.message (to see how failures look).",
        schema={"type": "object", "properties": {"message": {"type": "string"}}},
        timeout=60,
    ),
]
