"""Request bodies and users for the API tests."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

SENTINEL_BODY: dict[str, Any] = {
    "pipeline_name": "sentinel_pipeline",
    "data_url": "",
    "project": "ids-drr",
    "transformers_list": [
        {"name": "sentinel", "order_no": 1,
         "context": {"date_start": "2023-05-01", "date_end": "2023-06-01"}},
        {"name": "sentinel_upload_to_s3", "order_no": 2, "context": {}},
    ],
}


def sentinel_body(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(SENTINEL_BODY)
    body.update(overrides)
    return body


def token_for(username: str = "alice") -> str:
    user, _ = get_user_model().objects.get_or_create(username=username)
    return Token.objects.get_or_create(user=user)[0].key
