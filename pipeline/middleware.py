from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class BodySizeLimitMiddleware:
    """Refuse a body larger than SHEPHERD_MAX_BODY_BYTES with 413 before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.SHEPHERD_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"message": "Content-Length is not a number.",
                 "errors": [{"field": "Content-Length", "reason": "must be an integer"}]},
                status=400,
            )
        if length > limit:
            return JsonResponse(
                {"message": f"The body is {length} bytes; the limit is {limit} (SHEPHERD_MAX_BODY_BYTES).",
                 "errors": [{"field": "body", "reason": f"must be at most {limit} bytes"}]},
                status=413,
            )
        return self.get_response(request)
