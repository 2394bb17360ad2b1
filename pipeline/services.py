"""Writes to pipelines and steps. Views, the daemon and commands all change state through here."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from pipeline import handoff, hot_sql
from pipeline.exceptions import IdempotencyConflict, InvalidTransition
from pipeline.models import Pipeline, PipelineEvent, Step
from pipeline.validation import PipelineRequest

logger = logging.getLogger(__name__)


#: logged at DEBUG (see record_event)
ROUTINE_STEP_EVENTS = frozenset({"published", "picked_up", "step_succeeded"})


def record_event(
    pipeline: Pipeline | int,
    event: str,
    message: str,
    *,
    step: Step | None = None,
    level: str = PipelineEvent.Level.INFO,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append a line to the pipeline's log (served at /api/pipelines/{id}/logs/) and to the log.

    The routine lines of every step (published, picked up, succeeded) go to the process log at
    DEBUG: at INFO a daemon logs what happens to pipelines, and each pipeline's API log keeps
    every line. Logging three lines per step cost 8% of the daemon's time under load.
    """
    pipeline_id = pipeline if isinstance(pipeline, int) else pipeline.pk
    hot_sql.insert_event(pipeline_id=pipeline_id, step_id=step.pk if step is not None else None,
                         at=at or timezone.now(), level=level, event=event, message=message, data=data)
    log_level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[level]
    if event in ROUTINE_STEP_EVENTS and log_level == logging.INFO:
        log_level = logging.DEBUG
    logger.log(log_level, "pipeline %s: %s", pipeline_id, message,
               extra={"pipeline_id": pipeline_id, "event": event})


def _digest(request: PipelineRequest) -> str:
    canonical = json.dumps(asdict(request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def pipeline_create(
    *,
    request: PipelineRequest,
    owner: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
) -> tuple[Pipeline, bool]:
    """Store a validated pipeline and hand it to the broker once the row has committed.

    Returns ``(pipeline, created)``. With an ``idempotency_key`` already used for the same body,
    the earlier pipeline comes back with ``created=False``; for a different body,
    :class:`IdempotencyConflict`.
    """
    digest = _digest(request)
    if idempotency_key:
        existing = _existing_for_key(idempotency_key, digest)
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            pipeline = _insert(request, owner, idempotency_key or None, digest)
            transaction.on_commit(lambda: handoff.publish_pipeline(pipeline.pk))
    except IntegrityError:
        # Two retries with one key raced; the other one stored it.
        existing = _existing_for_key(idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return pipeline, True


def _existing_for_key(key: str, digest: str) -> Pipeline | None:
    existing = Pipeline.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.request_digest != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for pipeline #{existing.pk} with a different "
            "body; send a new key for a new pipeline"
        )
    return existing


def _insert(
    request: PipelineRequest, owner: AbstractBaseUser | None, key: str | None, digest: str
) -> Pipeline:
    pipeline = Pipeline.objects.create(
        name=request.name,
        project=request.project,
        data_url=request.data_url,
        owner=owner if owner is not None and owner.is_authenticated else None,
        idempotency_key=key,
        request_digest=digest,
    )
    Step.objects.bulk_create(
        Step(
            pipeline=pipeline,
            name=step.name,
            queue=step.queue,
            order_no=step.order_no,
            context=step.context,
            timeout=step.timeout,
            retries=step.retries,
        )
        for step in request.steps
    )
    record_event(pipeline, "created", f"created with {len(request.steps)} steps")
    return pipeline


def pipeline_cancel(*, pipeline_id: int) -> Pipeline:
    """Cancel a queued pipeline at once, or ask the daemon to stop a running one before its next step."""
    with transaction.atomic():
        pipeline = Pipeline.objects.select_for_update().get(pk=pipeline_id)
        if pipeline.is_final:
            raise InvalidTransition(
                f"pipeline #{pipeline.pk} is already {pipeline.status}; only queued or running "
                "pipelines can be cancelled"
            )
        if pipeline.status == Pipeline.Status.QUEUED:
            now = timezone.now()
            pipeline.status = Pipeline.Status.CANCELLED
            pipeline.finished_at = now
            pipeline.steps.filter(status=Step.Status.PENDING).update(status=Step.Status.CANCELLED)
            record_event(pipeline, "cancelled", "cancelled before it started")
        else:
            record_event(pipeline, "cancel_requested", "cancel requested; stops before its next step")
        pipeline.cancel_requested = True
        pipeline.save(update_fields=["status", "finished_at", "cancel_requested"])
    return pipeline


def pipeline_retry(*, pipeline_id: int) -> Pipeline:
    """Queue a failed or cancelled pipeline again, from its first unfinished step.

    Steps that succeeded keep their outputs and do not run again; the others start over with a
    fresh retry budget.
    """
    with transaction.atomic():
        pipeline = Pipeline.objects.select_for_update().get(pk=pipeline_id)
        if pipeline.status not in (Pipeline.Status.FAILED, Pipeline.Status.CANCELLED):
            raise InvalidTransition(
                f"pipeline #{pipeline.pk} is {pipeline.status}; only failed or cancelled pipelines "
                "can be retried"
            )
        pipeline.steps.exclude(status=Step.Status.SUCCEEDED).update(
            status=Step.Status.PENDING, attempts=0, error=None, output=None, call_id="",
            started_at=None, finished_at=None,
        )
        pipeline.status = Pipeline.Status.QUEUED
        pipeline.cancel_requested = False
        pipeline.error = pipeline.finished_at = pipeline.published_at = None
        pipeline.claimed_by, pipeline.lease_expires_at = "", None
        pipeline.save()
        first = pipeline.steps.exclude(status=Step.Status.SUCCEEDED).order_by("order_no").first()
        where = f"step {first.order_no} {first.name!r}" if first else "its end"
        record_event(pipeline, "retried", f"queued again; resumes at {where}")
        transaction.on_commit(lambda: handoff.publish_pipeline(pipeline.pk))
    return pipeline
