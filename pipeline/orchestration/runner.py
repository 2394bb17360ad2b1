"""Runs one pipeline: its steps in order_no order, each on a worker, each step's output the next one's input.

Plain functions and one small class over the RPC client and the records module; the daemon
decides which pipelines run and when.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from pipeline import hot_sql
from pipeline.models import Step
from pipeline.orchestration import records
from pipeline.orchestration.mirror_process import MirrorProcess
from pipeline.orchestration.prefect_recorder import PrefectRecorder
from pipeline.orchestration.writer import Writer
from pipeline.services import record_event
from shepherd_rpc import NoWorker, RpcClient, RpcError, StepFailed, StepResult, StepTimeout

logger = logging.getLogger(__name__)

#: longest single wait on a step's future before looking at shutdown and cancel requests
POLL_SECONDS = 0.5
MAX_BACKOFF = 60.0

EventSink = Callable[[int, str, str, Step | None], None]


class Outcome(enum.Enum):
    #: succeeded, failed or cancelled: the hand-off message can be acknowledged
    FINAL = "final"
    #: the daemon is stopping: the pipeline stays running, resumable by the next daemon
    INTERRUPTED = "interrupted"


@dataclass
class RunContext:
    """What every pipeline run of one daemon shares."""

    client: RpcClient
    recorder: PrefectRecorder | MirrorProcess
    #: every write of the runs goes through it (see writer.py)
    writer: Writer
    wait_limit: float
    backoff: float
    stopping: threading.Event
    shutdown_grace: float
    #: futures of calls a previous run of this daemon left in flight, by call id
    resumed: dict[str, Future[StepResult]] = field(default_factory=dict)
    #: called from the RPC thread when a worker claims a request (keep it cheap)
    on_claimed: Callable[[int, Step, dict[str, Any]], None] | None = None
    stop_deadline: float | None = None


def run_pipeline(pipeline_id: int, ctx: RunContext) -> Outcome:
    """Run the pipeline's unfinished steps; return whether it reached a final state."""
    pipeline = hot_sql.pipeline(pipeline_id)
    flow_name = f"pipeline-{pipeline.pk}-{pipeline.name}"
    ctx.recorder.pipeline_state(pipeline.pk, name=flow_name, state="running",
                                flow_run_id=pipeline.prefect_flow_run_id or None)
    data: Any = pipeline.data_url or None
    for step in hot_sql.steps_in_order(pipeline_id):
        if step.status == Step.Status.SUCCEEDED:
            data = step.output
            continue
        if ctx.stopping.is_set() and step.status != Step.Status.RUNNING:
            return Outcome.INTERRUPTED
        result = _run_step(pipeline_id, step, data, ctx)
        if result is None:
            return Outcome.INTERRUPTED
        if result is CANCELLED:
            ctx.writer.run(records.pipeline_cancelled, pipeline_id)
            ctx.recorder.pipeline_state(pipeline_id, name=flow_name, state="cancelled")
            return Outcome.FINAL
        ok, data = result
        if not ok:
            ctx.recorder.pipeline_state(pipeline_id, name=flow_name, state="failed",
                                        message=f"step {step.name} failed")
            return Outcome.FINAL
    ctx.writer.run(records.pipeline_succeeded, pipeline_id, output=data)
    ctx.recorder.pipeline_state(pipeline_id, name=flow_name, state="succeeded")
    return Outcome.FINAL


#: what _run_step returns when a cancel was requested before the step (or its retry) was published
CANCELLED = object()


def _run_step(pipeline_id: int, step: Step, data: Any, ctx: RunContext) -> tuple[bool, Any] | object | None:
    """Attempts of one step until success or no retry is left.

    Returns ``(ok, output)``, :data:`CANCELLED`, or None if interrupted by a shutdown.
    """
    task_name = f"{step.name}-{step.order_no}"
    retake_attempt = False
    while True:
        resumed = step.status == Step.Status.RUNNING and step.call_id in ctx.resumed
        future = _attach_or_publish(pipeline_id, step, data, ctx, new_attempt=not retake_attempt)
        if future is None:
            return CANCELLED
        retake_attempt = False
        ctx.recorder.step_state(pipeline_id, step.pk, name=task_name, state="running")
        try:
            result = _wait(future, ctx)
        except _Interrupted:
            return None
        except RpcError as exc:
            if resumed and isinstance(exc, NoWorker):
                # The daemon died between recording the attempt and publishing it, or the request
                # waited in the queue: publish the same attempt again. A copy taken later is refused.
                _event(ctx, pipeline_id, "republished", f"step {step.order_no} {step.name!r}: attempt "
                       f"{step.attempts} left in flight was not taken by a worker; publishing it again",
                       step=step, level="warning")
                retake_attempt = True
                continue
            final = step.attempts > step.retries
            error, worker = _describe_error(exc)
            ctx.writer.run(records.step_attempt_failed, step, error=error, worker=worker, final=final)
            ctx.client.settle(step.call_id)
            if final:
                ctx.recorder.step_state(pipeline_id, step.pk, name=task_name, state="failed",
                                        message=error["message"])
                return False, None
            delay = min(MAX_BACKOFF, ctx.backoff * 2 ** (step.attempts - 1))
            _event(ctx, pipeline_id, "retrying", f"step {step.order_no} {step.name!r} attempt "
                   f"{step.attempts} failed ({error['type']}: {error['message']}); retrying in {delay:g} s",
                   step=step, level="warning")
            if ctx.stopping.wait(delay):
                return None
            continue
        ctx.writer.run(records.step_succeeded, step, output=result.output, worker=result.worker,
                       worker_label=worker_label(result.worker))
        ctx.client.settle(result.call_id)
        ctx.recorder.step_state(pipeline_id, step.pk, name=task_name, state="succeeded")
        return True, result.output


def _attach_or_publish(
    pipeline_id: int, step: Step, data: Any, ctx: RunContext, *, new_attempt: bool = True
) -> Future[StepResult] | None:
    """Re-attach to the attempt a previous run left in flight, or publish an attempt.

    Every publication gets a call id of its own, so a stale request of an earlier attempt (or of
    a run before a retry) can never be granted in place of the current one. None if the pipeline
    is to be cancelled instead.
    """
    if step.status == Step.Status.RUNNING and step.call_id in ctx.resumed:
        _event(ctx, pipeline_id, "reattached", f"step {step.order_no} {step.name!r}: waiting for "
               f"attempt {step.attempts} left in flight", step=step)
        return ctx.resumed.pop(step.call_id)
    attempt = step.attempts + 1 if new_attempt else step.attempts
    call_id = f"step-{step.pk}-{attempt}-{uuid.uuid4().hex[:8]}"
    if not ctx.writer.run(records.step_start_attempt, step, call_id=call_id, attempt=attempt):
        return None

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        if kind == "claimed" and ctx.on_claimed is not None:
            ctx.on_claimed(pipeline_id, step, payload)

    return ctx.client.submit(
        step.queue, context=step.context, input=data, timeout=step.timeout, wait_limit=ctx.wait_limit,
        call_id=call_id, attempt=step.attempts, pipeline_id=pipeline_id, step_id=step.pk, step=step.name,
        on_event=on_event,
    )


def _event(ctx: RunContext, pipeline_id: int, event: str, message: str, **kwargs: Any) -> None:
    ctx.writer.run(record_event, pipeline_id, event, message, **kwargs)


class _Interrupted(Exception):
    pass


def _wait(future: Future[StepResult], ctx: RunContext) -> StepResult:
    """The call's result; gives up (leaving the call resumable) once a shutdown's grace has run out."""
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except FutureTimeout:
            if ctx.stopping.is_set():
                if ctx.stop_deadline is None:
                    ctx.stop_deadline = time.monotonic() + ctx.shutdown_grace
                if time.monotonic() > ctx.stop_deadline:
                    raise _Interrupted from None


def _describe_error(exc: RpcError) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if isinstance(exc, StepFailed):
        return {"type": exc.error_type, "message": exc.message, "traceback": exc.traceback or ""}, exc.worker
    kind = {NoWorker: "NoWorker", StepTimeout: "StepTimeout"}.get(type(exc), type(exc).__name__)
    return {"type": kind, "message": str(exc), "traceback": ""}, None


def worker_label(worker: dict[str, Any] | None) -> str:
    if not worker:
        return "an unknown worker"
    return f"worker {worker.get('name') or '?'} ({worker.get('host')}, pid {worker.get('pid')})"
