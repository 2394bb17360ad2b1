"""The REST API. Views parse and authorize, call a service or selector, and serialize."""

from __future__ import annotations

import pika.exceptions
from django.db import connection
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipeline import handoff, selectors, services
from pipeline.api_errors import error_body
from pipeline.exceptions import FieldError, InvalidRequest
from pipeline.models import Pipeline
from pipeline.registry import all_projects
from pipeline.serializers import (
    ErrorSerializer,
    PipelineEventSerializer,
    PipelineSerializer,
    PipelineSubmitSerializer,
    PipelineSummarySerializer,
    ProjectSerializer,
    WorkerStatusSerializer,
)
from pipeline.validation import validate_pipeline
from pipeline.worker_status import step_queues_status

IDEMPOTENCY_HEADER = "Idempotency-Key"


def submit_pipeline(request: Request) -> tuple[Pipeline, bool]:
    """Validate and store the body of a pipeline submission (shared with the compatibility API)."""
    key = request.headers.get(IDEMPOTENCY_HEADER) or None
    if key is not None and len(key) > 255:
        raise InvalidRequest([FieldError(IDEMPOTENCY_HEADER, "must be at most 255 characters")])
    return services.pipeline_create(
        request=validate_pipeline(request.data), owner=request.user, idempotency_key=key
    )


class PipelineListCreateApi(generics.GenericAPIView):
    serializer_class = PipelineSummarySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Pipeline.Status.values),
            OpenApiParameter("project", str),
        ],
        responses={200: PipelineSummarySerializer(many=True), 400: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.pipeline_list(
            status=request.query_params.get("status"), project=request.query_params.get("project")
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(PipelineSummarySerializer(page, many=True,
                                                                     context={"request": request}).data)

    @extend_schema(
        request=PipelineSubmitSerializer,
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER)],
        responses={201: PipelineSerializer, 200: PipelineSerializer, 400: ErrorSerializer,
                   401: ErrorSerializer, 409: ErrorSerializer, 413: ErrorSerializer},
        description="Store a pipeline and queue it. A repeated Idempotency-Key returns the same "
        "pipeline with 200 instead of storing a second one.",
    )
    def post(self, request: Request) -> Response:
        pipeline, created = submit_pipeline(request)
        data = PipelineSerializer(selectors.pipeline_get(pipeline.pk), context={"request": request}).data
        response = Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        response["Location"] = data["url"]
        return response


class PipelineDetailApi(APIView):
    @extend_schema(responses={200: PipelineSerializer, 404: ErrorSerializer})
    def get(self, request: Request, pipeline_id: int) -> Response:
        # An unknown id raises Pipeline.DoesNotExist, which the exception handler answers with 404.
        return Response(PipelineSerializer(selectors.pipeline_get(pipeline_id),
                                           context={"request": request}).data)


class PipelineCancelApi(APIView):
    @extend_schema(
        request=None,
        responses={200: PipelineSerializer, 202: PipelineSerializer, 404: ErrorSerializer,
                   409: ErrorSerializer},
        description="Cancel a queued pipeline (200), or ask a running one to stop before its next "
        "step (202). A finished pipeline answers 409.",
    )
    def post(self, request: Request, pipeline_id: int) -> Response:
        pipeline = services.pipeline_cancel(pipeline_id=pipeline_id)
        code = status.HTTP_200_OK if pipeline.is_final else status.HTTP_202_ACCEPTED
        data = PipelineSerializer(selectors.pipeline_get(pipeline_id), context={"request": request}).data
        return Response(data, status=code)


class PipelineRetryApi(APIView):
    @extend_schema(
        request=None,
        responses={202: PipelineSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
        description="Queue a failed or cancelled pipeline again from its first unfinished step; "
        "steps that succeeded keep their outputs.",
    )
    def post(self, request: Request, pipeline_id: int) -> Response:
        services.pipeline_retry(pipeline_id=pipeline_id)
        data = PipelineSerializer(selectors.pipeline_get(pipeline_id), context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class PipelineLogsApi(generics.GenericAPIView):
    serializer_class = PipelineEventSerializer

    @extend_schema(responses={200: PipelineEventSerializer(many=True), 404: ErrorSerializer})
    def get(self, request: Request, pipeline_id: int) -> Response:
        if not Pipeline.objects.filter(pk=pipeline_id).exists():
            raise Http404
        page = self.paginate_queryset(selectors.pipeline_events(pipeline_id))
        return self.get_paginated_response(PipelineEventSerializer(page, many=True).data)


class ProjectListApi(APIView):
    @extend_schema(responses={200: ProjectSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ProjectSerializer(all_projects().values(), many=True).data)


class WorkerStatusApi(APIView):
    """Each registered step with the workers consuming its queue now: a step with 0 cannot run."""

    @extend_schema(responses={200: WorkerStatusSerializer(many=True), 503: ErrorSerializer})
    def get(self, request: Request) -> Response:
        try:
            rows = step_queues_status()
        except (pika.exceptions.AMQPError, OSError):
            return Response(error_body("The broker is not reachable; check SHEPHERD_BROKER_URL."),
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(WorkerStatusSerializer(rows, many=True).data)


class HealthApi(APIView):
    """Whether the database and the broker can be reached: 200 if both, else 503."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        checks = {"database": _database_ok(), "broker": handoff.broker_reachable()}
        body = {name: "ok" if ok else "unreachable" for name, ok in checks.items()}
        healthy = all(checks.values())
        body["status"] = "ok" if healthy else "degraded"
        return Response(body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # any driver error means "unreachable" here
        return False
