"""``manage.py delete_pipeline ID [--keep-artifacts]``: delete a finished pipeline and its artifacts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.artifacts import PipelineNotDeletable, delete_pipeline
from pipeline.models import Pipeline


class Command(BaseCommand):
    help = "Delete a finished pipeline (steps and events too) and the artifacts stored under pipelines/<id>/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pipeline_id", type=int)
        parser.add_argument("--keep-artifacts", action="store_true", help="delete the row only")

    def handle(self, *args: Any, **options: Any) -> None:
        pipeline_id = options["pipeline_id"]
        try:
            result = delete_pipeline(pipeline_id=pipeline_id, keep_artifacts=options["keep_artifacts"])
        except Pipeline.DoesNotExist:
            raise CommandError(f"no pipeline with id {pipeline_id}") from None
        except PipelineNotDeletable as exc:
            raise CommandError(exc.message) from exc
        kept = " (artifacts kept)" if options["keep_artifacts"] else ""
        self.stdout.write(f"deleted pipeline {pipeline_id} and {len(result.artifacts)} artifact(s){kept}")
