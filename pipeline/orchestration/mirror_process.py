"""The Prefect mirror in a process of its own.

Prefect's client (httpx, pydantic) is CPU-heavy; run in the daemon's threads it competed with the
pipelines for the interpreter and added 7 to 8 ms to every step (docs/bench-orchestrator.md). The
daemon now only puts small tuples on a queue; a child process runs :class:`PrefectRecorder`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import signal
from typing import Any

logger = logging.getLogger(__name__)

#: how long the child waits for its first update before checking that the daemon is still there
POLL_SECONDS = 1.0


class MirrorProcess:
    """Same calls as PrefectRecorder; the work happens in a child process."""

    def __init__(self, *, threads: int = 4, nice: int = 0) -> None:
        """``nice`` is added to the child's CPU niceness (and its temporary Prefect server's)."""
        context = multiprocessing.get_context("spawn")  # the daemon has threads: never fork it
        self._queue: Any = context.Queue()
        self._process = context.Process(target=_serve, args=(self._queue, threads, nice),
                                        name="prefect-mirror", daemon=True)

    def start(self) -> None:
        self._process.start()
        logger.info("prefect mirror running in process %s", self._process.pid)

    def pipeline_state(self, pipeline_id: int, *, name: str, state: str, message: str = "",
                       flow_run_id: str | None = None) -> None:
        self._queue.put(("flow", pipeline_id, {"name": name, "state": state, "message": message,
                                               "flow_run_id": flow_run_id}))

    def step_state(self, pipeline_id: int, step_id: int, *, name: str, state: str, message: str = "") -> None:
        self._queue.put(("task", pipeline_id, {"step_id": step_id, "name": name, "state": state,
                                               "message": message}))

    def close(self, timeout: float = 10.0) -> None:
        """Let the child flush for up to ``timeout`` seconds; what is left is resent at the next start."""
        if not self._process.is_alive():
            return
        self._queue.put(None)
        self._process.join(timeout + 10)
        if self._process.is_alive():
            logger.warning("prefect mirror process did not stop in time; terminating it")
            self._process.terminate()
            self._process.join(5)


def _serve(updates: Any, threads: int, nice: int) -> None:
    """The child: feed the updates to a PrefectRecorder until told to stop or the daemon is gone."""
    # Measured: 206 vs 192 steps/s (median of six bursts each) with the mirror at +10, the mirror
    # catching up 30 to 50 s later (docs/bench-orchestrator.md).
    os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when the mirror stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A temporary Prefect server's usage reporting only contends for its SQLite file.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # On a busy machine the temporary server's first start (its database migrations) can exceed
    # Prefect's 20 s default; a start that times out is retried with a new server while the old
    # one keeps running, orphaned once this process exits.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    import django

    django.setup()
    from pipeline.orchestration.prefect_recorder import PrefectRecorder

    recorder = PrefectRecorder(threads=threads)
    recorder.start()
    parent = multiprocessing.parent_process()
    try:
        while True:
            try:
                item = updates.get(timeout=POLL_SECONDS)
            except queue_module.Empty:
                if parent is not None and not parent.is_alive():
                    break
                continue
            if item is None:
                break
            kind, pipeline_id, fields = item
            if kind == "flow":
                recorder.pipeline_state(pipeline_id, **fields)
            else:
                recorder.step_state(pipeline_id, fields.pop("step_id"), **fields)
    finally:
        recorder.close()
