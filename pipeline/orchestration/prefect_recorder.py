"""Mirror of pipeline runs in Prefect, kept off the steps' critical path.

Each pipeline becomes a Prefect flow run named after it and each step a task run named after the
step, with their states, so `prefect server start` (or the server PREFECT_API_URL points at)
shows every run. The daemon never waits on Prefect: updates go to an in-memory map that a
background thread drains through Prefect's client API. Updates to the same run coalesce, so a
slow Prefect server costs latency of the mirror, never of the pipelines; if Prefect is down,
updates wait and are retried, and Shepherd's own database stays the record of truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

FLOW_NAME = "shepherd-pipeline"
RETRY_DELAY = 5.0


@dataclass
class _Update:
    kind: str  # "flow" or "task"
    pipeline_id: int
    state: str
    name: str
    message: str = ""
    step_id: int | None = None
    flow_run_id: str | None = None


def _prefect_state(state: str, message: str) -> Any:
    from prefect import states

    build = {
        "running": states.Running,
        "succeeded": states.Completed,
        "failed": states.Failed,
        "skipped": states.Cancelled,
        "cancelled": states.Cancelled,
        "pending": states.Pending,
    }[state]
    return build(message=message or None)


class PrefectRecorder:
    """Records flow and task runs in Prefect from a background thread. Never blocks its callers."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending: OrderedDict[tuple[str, int], _Update] = OrderedDict()
        self._lock = threading.Condition()
        self._flow_runs: dict[int, str] = {}
        self._task_runs: dict[int, str] = {}
        self._closing = False
        self._thread: threading.Thread | None = None
        self._tasks: dict[str, Any] = {}
        self._flow: Any = None
        self.recorded = 0

    # -- what the daemon calls --------------------------------------------------------

    def pipeline_state(self, pipeline_id: int, *, name: str, state: str, message: str = "",
                       flow_run_id: str | None = None) -> None:
        self._put(("flow", pipeline_id), _Update("flow", pipeline_id, state, name, message,
                                                 flow_run_id=flow_run_id))

    def step_state(self, pipeline_id: int, step_id: int, *, name: str, state: str, message: str = "") -> None:
        self._put(("task", step_id), _Update("task", pipeline_id, state, name, message, step_id=step_id))

    def backlog(self) -> int:
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prefect-recorder", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout``, then stop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and self._thread is not None and time.monotonic() < deadline:
                self._lock.wait(0.1)
            self._closing = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + 1)
        if self._pending:
            logger.warning("prefect mirror stopped with %d update(s) not recorded", len(self._pending))

    # -- the background thread -------------------------------------------------------

    def _put(self, key: tuple[str, int], update: _Update) -> None:
        if not self.enabled:
            return
        with self._lock:
            previous = self._pending.pop(key, None)
            if previous is not None and previous.flow_run_id and not update.flow_run_id:
                update.flow_run_id = previous.flow_run_id
            self._pending[key] = update
            self._lock.notify()

    def _next(self) -> _Update | None:
        with self._lock:
            while not self._pending and not self._closing:
                self._lock.wait(1.0)
            if not self._pending:
                return None
            key, update = next(iter(self._pending.items()))
            if update.kind == "task" and update.pipeline_id not in self._flow_runs:
                flow_key = ("flow", update.pipeline_id)
                if flow_key in self._pending:  # its flow run first
                    key, update = flow_key, self._pending[flow_key]
            del self._pending[key]
            return update

    def _run(self) -> None:
        from prefect.client.orchestration import get_client

        while not self._closing:
            try:
                with get_client(sync_client=True) as client:
                    logger.info("prefect mirror recording to %s", client.api_url)
                    while (update := self._next()) is not None:
                        try:
                            self._record(client, update)
                        except Exception:
                            self._put_back(update)
                            raise
                        self.recorded += 1
                        with self._lock:
                            self._lock.notify_all()
                    return
            except Exception as exc:  # Prefect down or misconfigured: keep the backlog, retry
                logger.warning("prefect mirror cannot record (%s: %s); retrying in %g s",
                               type(exc).__name__, exc, RETRY_DELAY)
                with self._lock:
                    self._lock.wait(RETRY_DELAY)

    def _put_back(self, update: _Update) -> None:
        key = (update.kind, update.step_id if update.kind == "task" else update.pipeline_id)
        with self._lock:
            if key not in self._pending:
                self._pending[key] = update
                self._pending.move_to_end(key, last=False)

    def _record(self, client: Any, update: _Update) -> None:
        state = _prefect_state(update.state, update.message)
        if update.kind == "flow":
            run_id = self._flow_runs.get(update.pipeline_id) or update.flow_run_id
            if run_id is None:
                run = client.create_flow_run(self._flow_object(), name=update.name,
                                             parameters={"pipeline_id": update.pipeline_id}, state=state)
                self._flow_runs[update.pipeline_id] = str(run.id)
                _remember_flow_run(update.pipeline_id, str(run.id))
            else:
                self._flow_runs[update.pipeline_id] = run_id
                client.set_flow_run_state(run_id, state, force=True)
            return
        flow_run_id = self._flow_runs.get(update.pipeline_id)
        task_run_id = self._task_runs.get(update.step_id or 0)
        if task_run_id is None:
            run = client.create_task_run(self._task_object(update.name), flow_run_id=flow_run_id,
                                         dynamic_key=str(update.step_id), name=update.name, state=state)
            self._task_runs[update.step_id or 0] = str(run.id)
        else:
            client.set_task_run_state(task_run_id, state, force=True)

    def _flow_object(self) -> Any:
        if self._flow is None:
            from prefect import flow

            def shepherd_pipeline(pipeline_id: int) -> None:
                """A Shepherd pipeline; its steps ran on workers through RabbitMQ."""

            self._flow = flow(name=FLOW_NAME)(shepherd_pipeline)
        return self._flow

    def _task_object(self, name: str) -> Any:
        step_name = name.rsplit("-", 1)[0]
        if step_name not in self._tasks:
            from prefect import task

            def shepherd_step() -> None:
                """A Shepherd step, run by a worker."""

            self._tasks[step_name] = task(name=step_name)(shepherd_step)
        return self._tasks[step_name]


def _remember_flow_run(pipeline_id: int, flow_run_id: str) -> None:
    """Store the flow run id so a restarted daemon updates the same run instead of making another."""
    from pipeline.models import Pipeline

    Pipeline.objects.filter(pk=pipeline_id).update(prefect_flow_run_id=flow_run_id)
