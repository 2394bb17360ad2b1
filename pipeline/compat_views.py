"""The original service's endpoints, kept for existing clients.

They take the same body as before and answer in the old shapes (``{"result": ..., "Success":
true}``), with the same validation, authentication and hand-off as /api/pipelines/.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipeline import selectors
from pipeline.exceptions import FieldError, InvalidRequest
from pipeline.models import Step
from pipeline.serializers import PipelineSummarySerializer, StepSerializer
from pipeline.views import submit_pipeline

#: the old endpoints were never paginated; cap what one answer holds
MAX_ROWS = 500


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit():
        raise InvalidRequest([FieldError(name, "must be a positive integer")])
    return int(raw)


class PipeCreateApi(APIView):
    def post(self, request: Request) -> Response:
        pipeline, _ = submit_pipeline(request)
        return Response({"result": pipeline.pk, "Success": True})


class PipeListApi(APIView):
    def get(self, request: Request) -> Response:
        rows = selectors.pipeline_list()[:MAX_ROWS]
        return Response({"result": PipelineSummarySerializer(rows, many=True).data, "Success": True})


class PipelineFilterApi(APIView):
    """Pipelines by ``id``, ``status`` or ``project``."""

    def get(self, request: Request) -> Response:
        pipeline_id = _int_param(request, "id")
        rows = selectors.pipeline_list(
            status=request.query_params.get("status"), project=request.query_params.get("project")
        )
        if pipeline_id is not None:
            rows = rows.filter(pk=pipeline_id)
        data = PipelineSummarySerializer(rows[:MAX_ROWS], many=True).data
        return Response({"result": data, "Success": True})


class TransListApi(APIView):
    """Steps (the old "transformers"), of one pipeline with ``pipeline_id``, else the latest."""

    def get(self, request: Request) -> Response:
        pipeline_id = _int_param(request, "pipeline_id")
        rows = Step.objects.order_by("-pipeline_id", "order_no")
        if pipeline_id is not None:
            rows = rows.filter(pipeline_id=pipeline_id)
        return Response({"result": StepSerializer(rows[:MAX_ROWS], many=True).data, "Success": True})
