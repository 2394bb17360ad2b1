"""Output serializers, and input serializers that document the request body in the OpenAPI schema.

Validation of a submitted pipeline is done by :mod:`pipeline.validation` against the project
registry; the input serializers here describe the same body for /api/schema/.
"""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from pipeline.models import Pipeline, PipelineEvent, Step


class StepSubmitSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A step registered by the project (see /api/projects/).")
    order_no = serializers.IntegerField(min_value=1, help_text="Steps run in ascending order_no.")
    context = serializers.JSONField(required=False, help_text="The step's inputs; see its schema.")
    timeout = serializers.FloatField(required=False, help_text="Seconds; overrides the registry's.")
    retries = serializers.IntegerField(required=False, min_value=0, help_text="Overrides the registry's.")


class PipelineSubmitSerializer(serializers.Serializer):
    pipeline_name = serializers.CharField(max_length=200)
    project = serializers.CharField(help_text="A registered project; '-' and '_' are the same.")
    data_url = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="http(s)://, file:// or s3:// URL; the first step's input.",
    )
    transformers_list = StepSubmitSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = [
            "id", "name", "order_no", "queue", "context", "status", "attempts", "timeout", "retries",
            "started_at", "finished_at", "output", "error", "worker",
        ]


class StepSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = ["id", "name", "order_no", "status", "attempts"]


class PipelineSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    steps = StepSerializer(many=True, read_only=True)

    class Meta:
        model = Pipeline
        fields = [
            "id", "url", "name", "project", "data_url", "status", "cancel_requested", "created_at",
            "started_at", "finished_at", "error", "output", "steps",
        ]

    def get_url(self, pipeline: Pipeline) -> str:
        path = reverse("pipeline-detail", args=[pipeline.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class PipelineSummarySerializer(PipelineSerializer):
    steps = StepSummarySerializer(many=True, read_only=True)

    class Meta(PipelineSerializer.Meta):
        fields = [f for f in PipelineSerializer.Meta.fields if f != "output"]


class PipelineEventSerializer(serializers.ModelSerializer):
    step = serializers.SerializerMethodField()

    class Meta:
        model = PipelineEvent
        fields = ["id", "created_at", "level", "event", "step", "message", "data"]

    def get_step(self, event: PipelineEvent) -> str | None:
        return event.step.name if event.step_id else None


class StepSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    description = serializers.CharField()
    timeout = serializers.FloatField()
    retries = serializers.IntegerField()
    context_schema = serializers.JSONField(source="schema")


class ProjectSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    steps = serializers.SerializerMethodField()

    def get_steps(self, project) -> list[dict]:  # type: ignore[no-untyped-def]
        return StepSpecSerializer(project.steps.values(), many=True).data


class WorkerStatusSerializer(serializers.Serializer):
    project = serializers.CharField()
    step = serializers.CharField()
    queue = serializers.CharField()
    consumers = serializers.IntegerField(help_text="Workers consuming the step's queue now.")
    waiting = serializers.IntegerField(help_text="Requests waiting for a worker.")
