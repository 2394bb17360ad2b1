"""The daemon's writes: claiming pipelines, leases, and the state of each step as it happens.

Every transition is a conditional UPDATE, so two daemons (or one restarted) never both win. Each
function's statements belong in one transaction: the daemon runs them through its Writer, which
supplies it (``atomic(savepoint=False)`` here only opens one when called outside a transaction).
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from pipeline import hot_sql
from pipeline.models import Pipeline, Step
from pipeline.services import record_event


class Claim(enum.Enum):
    RUN = "run"
    SKIP = "skip"


def pipeline_claim(pipeline_id: int, *, daemon: str, lease: float) -> Claim:
    """Take a pipeline to run: a queued one, or a running one whose claim has lapsed.

    A running pipeline is taken over when its lease has expired (its daemon died) or when it is
    claimed under this daemon's name (this daemon was restarted; it never hands a pipeline it is
    already running to this function).
    """
    now = timezone.now()
    until = now + timedelta(seconds=lease)
    with transaction.atomic(savepoint=False):
        claimed = hot_sql.claim_queued(pipeline_id, daemon=daemon, until=until, now=now)
        if claimed:
            record_event(pipeline_id, "claimed", f"picked up by daemon {daemon!r}", at=now)
    if claimed:
        return Claim.RUN
    pipeline = (Pipeline.objects.filter(pk=pipeline_id)
                .values("status", "claimed_by", "lease_expires_at").first())
    if pipeline is None or pipeline["status"] != Pipeline.Status.RUNNING:
        return Claim.SKIP
    lapsed = pipeline["lease_expires_at"] is None or pipeline["lease_expires_at"] < now
    if not lapsed and pipeline["claimed_by"] != daemon:
        return Claim.SKIP
    taken = Pipeline.objects.filter(
        pk=pipeline_id, status=Pipeline.Status.RUNNING, claimed_by=pipeline["claimed_by"],
        lease_expires_at=pipeline["lease_expires_at"],
    ).update(claimed_by=daemon, lease_expires_at=until)
    if not taken:
        return Claim.SKIP
    previous = pipeline["claimed_by"]
    previous = "its restart" if previous == daemon else f"daemon {previous!r} stopped"
    record_event(pipeline_id, "resumed", f"resumed by daemon {daemon!r} after {previous}")
    return Claim.RUN


def leases_renew(pipeline_ids: list[int], *, daemon: str, lease: float) -> None:
    if pipeline_ids:
        Pipeline.objects.filter(pk__in=pipeline_ids, claimed_by=daemon).update(
            lease_expires_at=timezone.now() + timedelta(seconds=lease)
        )


def lease_release(pipeline_id: int, *, daemon: str, note: str) -> None:
    """Let any daemon resume this pipeline at once (this one is shutting down); ``note`` says why."""
    with transaction.atomic(savepoint=False):
        Pipeline.objects.filter(pk=pipeline_id, claimed_by=daemon, status=Pipeline.Status.RUNNING).update(
            lease_expires_at=timezone.now()
        )
        record_event(pipeline_id, "interrupted", note, level="warning")


def step_start_attempt(step: Step, *, call_id: str, attempt: int) -> bool:
    """Mark an attempt running, with its call id, before its request is published.

    One transaction with the ``published`` event, conditional on no cancel having been requested
    (so the cancel check costs no query of its own). False if the pipeline is to be cancelled.
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        started_at = step.started_at or now
        if not hot_sql.start_attempt(step, attempt=attempt, call_id=call_id, started_at=started_at):
            return False
        record_event(step.pipeline_id, "published", f"step {step.order_no} {step.name!r} attempt {attempt} "
                     f"published to queue {step.queue!r}", step=step, at=now)
    step.attempts, step.status, step.call_id = attempt, Step.Status.RUNNING, call_id
    step.started_at, step.finished_at = step.started_at or now, None
    return True


def step_succeeded(step: Step, *, output: Any, worker: dict[str, Any], worker_label: str) -> None:
    """Store the step's output and who produced it, with its ``step_succeeded`` event, in one transaction."""
    step.status, step.output, step.worker, step.error = Step.Status.SUCCEEDED, output, worker, None
    step.finished_at = timezone.now()
    with transaction.atomic(savepoint=False):
        hot_sql.step_succeeded(step, output=output, worker=worker, finished_at=step.finished_at)
        record_event(step.pipeline_id, "step_succeeded", f"step {step.order_no} {step.name!r} succeeded "
                     f"on {worker_label} (attempt {step.attempts})", step=step, at=step.finished_at)


def step_attempt_failed(
    step: Step, *, error: dict[str, Any], worker: dict[str, Any] | None, final: bool
) -> None:
    """Store an attempt's error; with no retry left, the step and its pipeline fail together."""
    step.error, step.worker = error, worker or step.worker
    fields: dict[str, Any] = {"error": error, "worker": step.worker}
    if final:
        step.status, step.finished_at = Step.Status.FAILED, timezone.now()
        fields.update(status=step.status, finished_at=step.finished_at)
    with transaction.atomic(savepoint=False):
        Step.objects.filter(pk=step.pk).update(**fields)
        if final:
            _pipeline_failed(step.pipeline_id, step=step, error=error)


def pipeline_succeeded(pipeline_id: int, *, output: Any) -> None:
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        hot_sql.pipeline_succeeded(pipeline_id, output=output, finished_at=now)
        record_event(pipeline_id, "finished", "succeeded", at=now)


def _pipeline_failed(pipeline_id: int, *, step: Step, error: dict[str, Any]) -> None:
    """Fail the pipeline with the step's error; the steps after it become ``skipped``."""
    Step.objects.filter(pipeline_id=pipeline_id, order_no__gt=step.order_no,
                        status=Step.Status.PENDING).update(status=Step.Status.SKIPPED)
    Pipeline.objects.filter(pk=pipeline_id).update(
        status=Pipeline.Status.FAILED, error={**error, "step": step.name, "order_no": step.order_no},
        finished_at=timezone.now(), lease_expires_at=None,
    )
    record_event(pipeline_id, "failed", f"failed at step {step.order_no} {step.name!r}: "
                 f"{error.get('type')}: {error.get('message')}", step=step, level="error")


def pipeline_cancelled(pipeline_id: int) -> None:
    with transaction.atomic(savepoint=False):
        # A step between two attempts is "running" with nothing in flight: it is cancelled too.
        unfinished = [Step.Status.PENDING, Step.Status.RUNNING]
        Step.objects.filter(pipeline_id=pipeline_id, status__in=unfinished).update(
            status=Step.Status.CANCELLED
        )
        Pipeline.objects.filter(pk=pipeline_id).update(
            status=Pipeline.Status.CANCELLED, finished_at=timezone.now(), lease_expires_at=None
        )
        record_event(pipeline_id, "cancelled", "cancelled before its next step")


def running_calls(*, daemon: str) -> list[Step]:
    """Steps in flight under this daemon's name when it last stopped: the calls to re-attach to."""
    return list(Step.objects.filter(
        status=Step.Status.RUNNING, pipeline__status=Pipeline.Status.RUNNING,
        pipeline__claimed_by=daemon,
    ).exclude(call_id=""))
