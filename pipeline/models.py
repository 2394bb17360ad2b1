"""Pipelines, their steps, and the events of a run. Data and constraints only; logic is in services."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Pipeline(models.Model):
    class Status(models.TextChoices):
        #: stored, waiting for the orchestrator to claim it
        QUEUED = "queued"
        #: claimed by a daemon, steps running
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    name = models.CharField(max_length=200)
    project = models.CharField(max_length=100, db_index=True)
    data_url = models.CharField(max_length=2000, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: {type, message, traceback, step} of the step that failed the pipeline
    error = models.JSONField(null=True, blank=True)
    #: the last step's output
    output = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    #: digest of the validated body, to tell a client's retry from a reused Idempotency-Key
    request_digest = models.CharField(max_length=64, blank=True, default="")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    #: when the broker confirmed the hand-off message; null means the sweep must publish it
    published_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    #: which daemon runs it, and until when its claim holds without a renewal
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    #: the flow run that mirrors this pipeline in Prefect
    prefect_flow_run_id = models.CharField(max_length=64, blank=True, default="")
    #: the final state last recorded in Prefect; differs from status while the mirror is behind
    prefect_state = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "published_at"])]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk}, {self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class Step(models.Model):
    """One step of a pipeline, run by a worker consuming ``queue``."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"

    pipeline = models.ForeignKey(Pipeline, related_name="steps", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    queue = models.CharField(max_length=200)
    order_no = models.PositiveIntegerField()
    context = models.JSONField(default=dict, blank=True)
    timeout = models.FloatField()
    retries = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    #: {type, message, traceback}
    error = models.JSONField(null=True, blank=True)
    #: {host, pid, version, name} of the worker that ran the last attempt
    worker = models.JSONField(null=True, blank=True)
    #: the RPC correlation id of the attempt in flight, so a restarted daemon can re-attach to it
    call_id = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["pipeline_id", "order_no"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "order_no"], name="step_order_unique_per_pipeline")
        ]

    def __str__(self) -> str:
        return f"{self.order_no}. {self.name} ({self.status})"


class PipelineEvent(models.Model):
    """A line of a pipeline's log: published, picked up, retried, failed, finished."""

    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    pipeline = models.ForeignKey(Pipeline, related_name="events", on_delete=models.CASCADE)
    step = models.ForeignKey(Step, null=True, blank=True, related_name="events", on_delete=models.CASCADE)
    #: when it happened (a worker's pick-up is stored a moment later than it happened)
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    event = models.CharField(max_length=40)
    message = models.TextField()
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
