"""Mirror of pipeline runs in Prefect, kept off the steps' critical path.

Each pipeline becomes a Prefect flow run named after it and each step a task run named after the
step, with their states, so `prefect server start` (or the server PREFECT_API_URL points at)
shows every run. The daemon never waits on Prefect: updates go to in-memory maps that a few
background threads drain through Prefect's client API. A pipeline's updates always go to the same
thread, so they reach Prefect in order, and updates to the same run coalesce, so a slow Prefect
server costs latency of the mirror, never of the pipelines. If Prefect is down, updates wait and
are retried. Which pipelines' final states have reached Prefect is stored (``prefect_state``), so
a daemon that stopped with a backlog sends it again when it starts: Shepherd's database stays the
record of truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from pipeline.models import Pipeline

logger = logging.getLogger(__name__)

FLOW_NAME = "shepherd-pipeline"
RETRY_DELAY = 5.0
FINAL_STATES = ("succeeded", "failed", "cancelled")
#: how far back a starting daemon looks for pipelines whose final state never reached Prefect
RECOVER_WINDOW = timedelta(days=7)
RECOVER_LIMIT = 2000


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


class _Shard:
    """The updates of some pipelines, and the thread that sends them in order."""

    def __init__(self, recorder: PrefectRecorder, index: int) -> None:
        self.recorder = recorder
        self.pending: OrderedDict[tuple[str, int], _Update] = OrderedDict()
        self.lock = threading.Condition()
        self.flow_runs: dict[int, str] = {}
        self.task_runs: dict[int, str] = {}
        self.steps_of: dict[int, set[int]] = {}
        #: pipelines whose final flow state is recorded, by that state, until their steps' are too
        self.finished: dict[int, str] = {}
        self.tasks_pending: Counter[int] = Counter()
        self.thread = threading.Thread(target=self.run, name=f"prefect-mirror-{index}", daemon=True)

    def put(self, key: tuple[str, int], update: _Update) -> None:
        with self.lock:
            previous = self.pending.pop(key, None)
            if previous is None and update.kind == "task":
                self.tasks_pending[update.pipeline_id] += 1
            if previous is not None and previous.flow_run_id and not update.flow_run_id:
                update.flow_run_id = previous.flow_run_id
            self.pending[key] = update
            self.lock.notify()

    def put_back(self, update: _Update) -> None:
        key = (update.kind, update.step_id if update.kind == "task" else update.pipeline_id)
        with self.lock:
            if key not in self.pending:
                self.pending[key] = update
                self.pending.move_to_end(key, last=False)
                if update.kind == "task":
                    self.tasks_pending[update.pipeline_id] += 1

    def next(self) -> _Update | None:
        with self.lock:
            while not self.pending and not self.recorder.closing:
                self.lock.wait(1.0)
            if not self.pending:
                return None
            key, update = next(iter(self.pending.items()))
            if update.kind == "task" and update.pipeline_id not in self.flow_runs:
                flow_key = ("flow", update.pipeline_id)
                if flow_key in self.pending:  # its flow run first
                    key, update = flow_key, self.pending[flow_key]
            del self.pending[key]
            if update.kind == "task":
                self.tasks_pending[update.pipeline_id] -= 1
            return update

    def run(self) -> None:
        while not self.recorder.closing:
            client = self.recorder.client()
            if client is None:
                continue
            try:
                while (update := self.next()) is not None:
                    try:
                        self.record(client, update)
                    except Exception as exc:
                        if not _rejected(exc):
                            self.put_back(update)
                            raise
                        # Prefect refused this one update (its database was reset, say): retrying
                        # it would stall every pipeline behind it, so it is dropped.
                        logger.warning("prefect refused the %s update of pipeline %s (%s); skipped",
                                       update.kind, update.pipeline_id, exc)
                    self.forget_if_done(update.pipeline_id)
                    with self.lock:
                        self.lock.notify_all()
                return
            except Exception as exc:  # Prefect down or misconfigured: keep the backlog, retry
                logger.warning("prefect mirror cannot record (%s: %s); retrying in %g s",
                               type(exc).__name__, exc, RETRY_DELAY)
                with self.lock:
                    self.lock.wait(RETRY_DELAY)

    def record(self, client: Any, update: _Update) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            self._record(client, update)
        except ObjectNotFound:
            # The run it knew is gone from Prefect (another Prefect, or a reset one): make a new one.
            logger.info("prefect has no run for the %s update of pipeline %s; creating it again",
                        update.kind, update.pipeline_id)
            if update.kind == "task":
                self.task_runs.pop(update.step_id or 0, None)
            else:
                self.flow_runs.pop(update.pipeline_id, None)
                update.flow_run_id = None
            self._record(client, update)

    def _record(self, client: Any, update: _Update) -> None:
        state = _prefect_state(update.state, update.message)
        if update.kind == "task":
            self._record_task(client, update, state)
            return
        run_id = self.flow_runs.get(update.pipeline_id) or update.flow_run_id
        if run_id is None:
            run = client.create_flow_run(self.recorder.flow_object(), name=update.name,
                                         parameters={"pipeline_id": update.pipeline_id}, state=state)
            run_id = str(run.id)
            _store(update.pipeline_id, prefect_flow_run_id=run_id)
        else:
            client.set_flow_run_state(UUID(run_id), state, force=True)
        self.flow_runs[update.pipeline_id] = run_id
        if update.state in FINAL_STATES:
            self.finished[update.pipeline_id] = update.state

    def forget_if_done(self, pipeline_id: int) -> None:
        """Once a finished pipeline's updates are all sent: say so in the database, drop its ids."""
        with self.lock:
            if pipeline_id not in self.finished or self.tasks_pending[pipeline_id] > 0:
                return
            if ("flow", pipeline_id) in self.pending:
                return
            state = self.finished.pop(pipeline_id)
            del self.tasks_pending[pipeline_id]
        _store(pipeline_id, prefect_state=state)
        self.flow_runs.pop(pipeline_id, None)
        for step_id in self.steps_of.pop(pipeline_id, set()):
            self.task_runs.pop(step_id, None)

    def _record_task(self, client: Any, update: _Update, state: Any) -> None:
        step_id = update.step_id or 0
        self.steps_of.setdefault(update.pipeline_id, set()).add(step_id)
        task_run_id = self.task_runs.get(step_id)
        if task_run_id is None:
            run = client.create_task_run(self.recorder.task_object(update.name),
                                         flow_run_id=_uuid(self.flow_runs.get(update.pipeline_id)),
                                         dynamic_key=str(update.step_id), name=update.name, state=state)
            self.task_runs[step_id] = str(run.id)
        else:
            client.set_task_run_state(UUID(task_run_id), state, force=True)


class PrefectRecorder:
    """Records flow and task runs in Prefect from background threads. Never blocks its callers."""

    def __init__(self, *, enabled: bool = True, threads: int = 4) -> None:
        self.enabled = enabled
        self.closing = False
        self._shards = [_Shard(self, i) for i in range(max(1, threads))]
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._objects_lock = threading.Lock()
        self._flow: Any = None
        self._tasks: dict[str, Any] = {}

    # -- what the daemon calls --------------------------------------------------------

    def pipeline_state(self, pipeline_id: int, *, name: str, state: str, message: str = "",
                       flow_run_id: str | None = None) -> None:
        if self.enabled:
            self._shard(pipeline_id).put(("flow", pipeline_id), _Update(
                "flow", pipeline_id, state, name, message, flow_run_id=flow_run_id))

    def step_state(self, pipeline_id: int, step_id: int, *, name: str, state: str, message: str = "") -> None:
        if self.enabled:
            self._shard(pipeline_id).put(("task", step_id), _Update(
                "task", pipeline_id, state, name, message, step_id=step_id))

    def backlog(self) -> int:
        return sum(len(shard.pending) for shard in self._shards)

    def start(self) -> None:
        if self.enabled:
            threading.Thread(target=self.recover, name="prefect-mirror-recover", daemon=True).start()
            for shard in self._shards:
                shard.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout``, then stop; the rest is sent after a restart."""
        deadline = time.monotonic() + timeout
        started = [shard for shard in self._shards if shard.thread.is_alive()]
        while self.backlog() and started and time.monotonic() < deadline:
            time.sleep(0.1)
        self.closing = True
        for shard in started:
            with shard.lock:
                shard.lock.notify_all()
        for shard in started:
            shard.thread.join(max(0.0, deadline - time.monotonic()) + 1)
        if self.backlog():
            logger.warning("prefect mirror stopped with %d update(s) not recorded; the next daemon start "
                           "sends the final states again", self.backlog())
        if self._client is not None:
            self._client.__exit__(None, None, None)

    def recover(self) -> None:
        """Queue the final states of recent pipelines that never reached Prefect (the daemon stopped)."""
        try:
            behind = (Pipeline.objects.filter(status__in=FINAL_STATES,
                                              finished_at__gte=timezone.now() - RECOVER_WINDOW)
                      .exclude(prefect_state=F("status")).prefetch_related("steps")
                      .order_by("finished_at")[:RECOVER_LIMIT])
            count = 0
            for pipeline in behind:
                self._requeue(pipeline)
                count += 1
            if count:
                logger.info("prefect mirror: sending the final state of %d pipeline(s) again", count)
        except Exception:
            logger.exception("prefect mirror could not look for pipelines to send again")
        finally:
            close_old_connections()

    def _requeue(self, pipeline: Any) -> None:
        shard = self._shard(pipeline.pk)
        if pipeline.prefect_flow_run_id:
            self._known_task_runs(shard, pipeline)
        for step in pipeline.steps.all():
            if step.status != "pending":
                self.step_state(pipeline.pk, step.pk, name=f"{step.name}-{step.order_no}", state=step.status)
        self.pipeline_state(pipeline.pk, name=f"pipeline-{pipeline.pk}-{pipeline.name}",
                            state=pipeline.status, flow_run_id=pipeline.prefect_flow_run_id or None)

    def _known_task_runs(self, shard: _Shard, pipeline: Any) -> None:
        """Task runs Prefect already has for this flow run, so they are updated, not made twice."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        client = self.client()
        if client is None:
            return
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[pipeline.prefect_flow_run_id])))
        by_name = {run.name: str(run.id) for run in runs}
        shard.flow_runs[pipeline.pk] = pipeline.prefect_flow_run_id
        for step in pipeline.steps.all():
            if (run_id := by_name.get(f"{step.name}-{step.order_no}")) is not None:
                shard.task_runs[step.pk] = run_id
                shard.steps_of.setdefault(pipeline.pk, set()).add(step.pk)

    # -- shared by the shards ------------------------------------------------------------

    def _shard(self, pipeline_id: int) -> _Shard:
        return self._shards[pipeline_id % len(self._shards)]

    def client(self) -> Any:
        """One Prefect client for all shards (its HTTP pool is thread-safe); None while unreachable."""
        with self._client_lock:
            if self._client is None:
                from prefect.client.orchestration import get_client

                try:
                    client = get_client(sync_client=True)
                    client.__enter__()
                except Exception as exc:
                    logger.warning("prefect mirror cannot reach Prefect (%s: %s); retrying in %g s",
                                   type(exc).__name__, exc, RETRY_DELAY)
                    time.sleep(RETRY_DELAY)
                    return None
                logger.info("prefect mirror recording to %s", client.api_url)
                self._client = client
            return self._client

    def flow_object(self) -> Any:
        with self._objects_lock:
            if self._flow is None:
                from prefect import flow

                def shepherd_pipeline(pipeline_id: int) -> None:
                    """A Shepherd pipeline; its steps ran on workers through RabbitMQ."""

                self._flow = flow(name=FLOW_NAME)(shepherd_pipeline)
            return self._flow

    def task_object(self, name: str) -> Any:
        step_name = name.rsplit("-", 1)[0]
        with self._objects_lock:
            if step_name not in self._tasks:
                from prefect import task

                def shepherd_step() -> None:
                    """A Shepherd step, run by a worker."""

                self._tasks[step_name] = task(name=step_name)(shepherd_step)
            return self._tasks[step_name]


def _rejected(exc: Exception) -> bool:
    """Whether Prefect answered the update with a client error (4xx): retrying cannot help."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 0)
    return 400 <= status < 500 and status not in (408, 429)


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value else None


def _store(pipeline_id: int, **fields: str) -> None:
    Pipeline.objects.filter(pk=pipeline_id).update(**fields)
