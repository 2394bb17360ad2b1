"""A worker for the RPC tests: small steps whose side effects the tests can inspect.

Environment:
  RPC_TEST_RUN_LOG: file this process appends "<event> <token> <pid>" lines to.
"""

from __future__ import annotations

import os
import time
from typing import Any

from shepherd_rpc import Worker

worker = Worker(name=os.environ.get("RPC_TEST_WORKER_NAME", "test-steps"))


def _record(event: str, token: str) -> None:
    path = os.environ.get("RPC_TEST_RUN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{event} {token} {os.getpid()}\n")


@worker.step("echo")
def echo(context: dict[str, Any], input: Any) -> Any:
    """Return the input; record its token when it finishes."""
    if isinstance(input, dict):
        time.sleep(float(input.get("sleep", 0)))
        if "token" in input:
            _record("done", input["token"])
    return input


@worker.step("slow")
def slow(context: dict[str, Any], input: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``seconds``, recording the start and the end of each run."""
    _record("start", input["token"])
    time.sleep(float(input["seconds"]))
    _record("done", input["token"])
    return {"token": input["token"], "slept": input["seconds"]}


@worker.step("boom")
def boom(context: dict[str, Any], input: Any) -> Any:
    raise ValueError(f"boom: cannot handle {input!r}")


if __name__ == "__main__":
    worker.run()
