"""Deleting artifacts: old ones (``prune_artifacts``) and a pipeline's own (``delete_pipeline``).

Artifacts live in the store SHEPHERD_ARTIFACT_BACKEND selects (shepherd_rpc.artifacts, read from
the same environment variables as the workers), each pipeline's under ``pipelines/<id>/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from pipeline.exceptions import ShepherdError
from pipeline.models import Pipeline
from shepherd_rpc.artifacts import ArtifactStore, store_from_settings


class PipelineNotDeletable(ShepherdError):
    """The pipeline is still queued or running; cancel it and wait for it to finish first."""


@dataclass(frozen=True)
class DeleteResult:
    pipeline_id: int
    artifacts: list[str]


def pipeline_prefix(pipeline_id: int) -> str:
    """The key prefix under which the workers store every artifact of one pipeline."""
    return f"pipelines/{pipeline_id}/"


def prune_artifacts(*, days: float, dry_run: bool = False, store: ArtifactStore | None = None) -> list[str]:
    """Delete (or with ``dry_run`` list) artifacts last written more than ``days`` days ago."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days:g}")
    return (store or store_from_settings()).prune(days, dry_run=dry_run)


def delete_pipeline(*, pipeline_id: int, keep_artifacts: bool = False,
                    store: ArtifactStore | None = None) -> DeleteResult:
    """Delete a finished pipeline row (its steps and events cascade) and, unless told not to, its
    artifacts. Raises Pipeline.DoesNotExist or PipelineNotDeletable (queued or running)."""
    with transaction.atomic():
        pipeline = Pipeline.objects.select_for_update().get(pk=pipeline_id)
        if not pipeline.is_final:
            raise PipelineNotDeletable(f"pipeline {pipeline_id} is {pipeline.status}; cancel it "
                                       f"(POST /api/pipelines/{pipeline_id}/cancel/) and wait until it ends")
        pipeline.delete()
    deleted = [] if keep_artifacts else (store or store_from_settings()).delete(pipeline_prefix(pipeline_id))
    return DeleteResult(pipeline_id, deleted)
