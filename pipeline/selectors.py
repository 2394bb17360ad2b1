"""Reads of pipelines and their logs."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from pipeline.exceptions import FieldError, InvalidRequest
from pipeline.models import Pipeline, PipelineEvent, Step
from pipeline.registry import normalize_project_name


def pipeline_list(*, status: str | None = None, project: str | None = None) -> QuerySet[Pipeline]:
    """Pipelines, newest first, with their steps; unknown filter values are a 400, not an empty page."""
    queryset = Pipeline.objects.prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("order_no"))
    ).order_by("-created_at", "-id")
    if status:
        if status not in Pipeline.Status.values:
            choices = ", ".join(Pipeline.Status.values)
            raise InvalidRequest([FieldError("status", f"must be one of: {choices}")])
        queryset = queryset.filter(status=status)
    if project:
        queryset = queryset.filter(project=normalize_project_name(project))
    return queryset


def pipeline_get(pipeline_id: int) -> Pipeline:
    return Pipeline.objects.prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("order_no"))
    ).get(pk=pipeline_id)


def pipeline_events(pipeline_id: int) -> QuerySet[PipelineEvent]:
    events = PipelineEvent.objects.filter(pipeline_id=pipeline_id).select_related("step")
    return events.order_by("created_at", "id")
