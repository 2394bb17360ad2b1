"""One error shape for the whole API: ``{"message": str, "errors": [{"field", "reason"}]}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from pipeline.exceptions import FieldError, InvalidRequest, ShepherdError


def error_body(message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    return {"message": message, "errors": [{"field": e.field, "reason": e.reason} for e in errors or []]}


def _flatten(detail: Any, path: str = "") -> list[FieldError]:
    """DRF's nested ``detail`` as a flat list of (field path, reason)."""
    if isinstance(detail, dict):
        return [e for key, value in detail.items()
                for e in _flatten(value, f"{path}.{key}" if path else str(key))]
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [FieldError(path or "body", str(item)) for item in detail]
        return [e for i, item in enumerate(detail) for e in _flatten(item, f"{path}[{i}]")]
    return [FieldError(path or "body", str(detail))]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, InvalidRequest):
        return Response(error_body(exc.message, exc.errors), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ShepherdError):
        return Response(error_body(exc.message), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("The request is invalid.", _flatten(exc.detail))
    elif isinstance(exc, exceptions.ParseError):
        response.data = error_body("The body is not valid JSON.", [FieldError("body", str(exc.detail))])
    elif isinstance(exc, exceptions.APIException):
        response.data = error_body(str(exc.detail))
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for a URL no route matches: the API's JSON error under /api/ and /transformer/."""
    if request.path.startswith(("/api/", "/transformer/")):
        return JsonResponse(error_body(f"Nothing is at {request.path}; see /api/docs/ for the API."),
                            status=404)
    return page_not_found(request, exception or Http404())
