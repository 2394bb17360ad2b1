from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class WritesNeedToken(BasePermission):
    """Writes always need an authenticated user; reads only if SHEPHERD_READS_NEED_TOKEN is on."""

    message = "Authentication required: send 'Authorization: Token <key>' (see manage.py issue_token)."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if request.method in SAFE_METHODS and not settings.SHEPHERD_READS_NEED_TOKEN:
            return True
        return bool(request.user and request.user.is_authenticated)
