"""A worker that serves only the demo project's `append` step (tests leave other steps unserved)."""

from __future__ import annotations

import json
import os
from typing import Any

from shepherd_rpc import Worker

worker = Worker(name="append-only")


@worker.step("append")
def append(context: dict[str, Any], input: Any) -> str:
    with open(os.environ["DEMO_WORKER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"step": "append", "context": context, "pid": os.getpid()}) + "\n")
    return (input if isinstance(input, str) else "") + context["text"]


if __name__ == "__main__":
    worker.run()
