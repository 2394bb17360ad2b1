"""Worker for the demo project's steps: `python projects/demo/workers/demo_worker.py`.

Set DEMO_WORKER_LOG to a file path to have each handled call appended to it (tests use this to
check that no step runs twice).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from shepherd_rpc import Worker

worker = Worker(name="demo")


def _note(step: str, context: dict[str, Any]) -> None:
    path = os.environ.get("DEMO_WORKER_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"step": step, "context": context, "pid": os.getpid()}) + "\n")


@worker.step("noop")
def noop(context: dict[str, Any], input: Any) -> Any:
    _note("noop", context)
    return input


@worker.step("append")
def append(context: dict[str, Any], input: Any) -> str:
    _note("append", context)
    return (input if isinstance(input, str) else "") + context["text"]


@worker.step("sleep")
def sleep(context: dict[str, Any], input: Any) -> Any:
    _note("sleep", context)
    time.sleep(float(context["seconds"]))
    return input


@worker.step("fail")
def fail(context: dict[str, Any], input: Any) -> Any:
    _note("fail", context)
    raise ValueError(context.get("message") or "the demo step failed as asked")


if __name__ == "__main__":
    worker.run()
