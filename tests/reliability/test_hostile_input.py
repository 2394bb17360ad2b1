"""Hostile bodies and callers at the API: every one gets a 4xx with a clear message or a correct
201, never a 500, and nothing it carries is executed or reaches a step queue.

Plain bad bodies, non-JSON bodies, the 413 limit and missing tokens on POST /api/pipelines/ are
pinned in tests/test_api.py; this file adds the sizes, depths, encodings and fragments an attacker
would try.
"""

from __future__ import annotations

import json

import pika.exceptions
import pytest
from django.db import connection
from rest_framework.test import APIClient

from pipeline.models import Pipeline, Step
from shepherd_rpc import protocol
from tests.conftest import open_channel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def body_with(name: str = "hostile", context: object | None = None, **step: object) -> dict:
    return {"pipeline_name": name, "project": "demo", "data_url": "",
            "transformers_list": [{"name": "noop", "order_no": 1, "context": context or {}, **step}]}


def post_raw(api: APIClient, raw: bytes):
    return api.generic("POST", "/api/pipelines/", raw, content_type="application/json")


def assert_refused_clearly(response, status: int = 400) -> dict:
    """A JSON answer in the API's error shape, with a message and reasons a person can act on."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["message"], body
    assert isinstance(body["errors"], list)
    assert Pipeline.objects.count() == 0
    return body


def test_a_ten_megabyte_body_is_a_413_and_stores_nothing(api):
    body = body_with(context={"blob": "x" * (10 * 1024 * 1024)})

    response = post_raw(api, json.dumps(body).encode())

    assert_refused_clearly(response, 413)
    assert "SHEPHERD_MAX_BODY_BYTES" in response.json()["message"]


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")], ids=["lists", "objects"])
def test_ten_thousand_nested_levels_in_a_context_are_a_400_not_a_recursion_error(api, opener, closer):
    nested = opener * 10_000 + "1" + closer * 10_000
    raw = ('{"pipeline_name": "deep", "project": "demo", "data_url": "", "transformers_list": '
           '[{"name": "noop", "order_no": 1, "context": {"deep": ' + nested + "}}]}").encode()

    body = assert_refused_clearly(post_raw(api, raw))

    assert body["errors"][0]["field"] == "body"


@pytest.mark.parametrize("change, field", [
    ({"project": ["demo"]}, "project"),
    ({"project": {"$ne": None}}, "project"),
    ({"data_url": 12}, "data_url"),
    ({"transformers_list": [{"name": ["noop"], "order_no": 1, "context": {}}]}, "transformers_list[0].name"),
    ({"transformers_list": [{"name": "noop", "order_no": True, "context": {}}]},
     "transformers_list[0].order_no"),
    ({"transformers_list": [{"name": "noop", "order_no": 10**30, "context": {}}]},
     "transformers_list[0].order_no"),
    ({"transformers_list": [{"name": "noop", "order_no": 1, "context": None}]},
     "transformers_list[0].context"),
    ({"transformers_list": [{"name": "noop", "order_no": 1, "context": [1]}]},
     "transformers_list[0].context"),
    ({"transformers_list": [{"name": "noop", "order_no": 1, "retries": 10**20}]},
     "transformers_list[0].retries"),
    ({"transformers_list": [{"name": "noop", "order_no": 1, "timeout": "60"}]},
     "transformers_list[0].timeout"),
    ({"transformers_list": [{"name": "sleep", "order_no": 1, "context": {"seconds": "1"}}]},
     "transformers_list[0].context.seconds"),
], ids=["project-list", "project-operator", "url-number", "name-list", "order-bool", "order-huge",
        "context-null", "context-list", "retries-huge", "timeout-string", "context-wrong-type"])
def test_a_value_of_the_wrong_type_is_a_400_naming_the_field(api, change, field):
    body = {**body_with(), **change}

    errors = assert_refused_clearly(api.post("/api/pipelines/", body, format="json"))["errors"]

    assert field in {e["field"] for e in errors}, errors
    assert all(e["reason"] for e in errors)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_numbers_are_refused_not_stored(api, literal):
    raw = json.dumps(body_with(timeout=1)).replace('"timeout": 1', f'"timeout": {literal}').encode()

    response = post_raw(api, raw)

    assert_refused_clearly(response)


@pytest.mark.parametrize("raw_name", [rb'"bad \ud800 half"', rb'"bad \udfff"',
                                      b'"bad \xed\xa0\x80 bytes"'],
                         ids=["escaped-high", "escaped-low", "raw-utf8-surrogate"])
def test_a_lone_surrogate_in_a_name_is_a_400_not_a_500(api, raw_name):
    raw = b'{"pipeline_name": ' + raw_name + b', "project": "demo", "data_url": "", ' \
          b'"transformers_list": [{"name": "noop", "order_no": 1, "context": {}}]}'

    assert_refused_clearly(post_raw(api, raw))


def test_a_nul_character_in_a_name_or_context_is_refused_naming_the_field(api):
    """PostgreSQL's text and jsonb cannot hold NUL, so it is refused on every database alike."""
    response = api.post("/api/pipelines/", body_with("nul\x00name", {"tag": "a\x00b"}), format="json")

    errors = assert_refused_clearly(response)["errors"]
    assert {e["field"] for e in errors} == {"pipeline_name", "transformers_list[0].context.tag"}


@pytest.mark.parametrize("text", [
    "\u202eevil\u202c.csv",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd\u200e",  # RTL/LTR marks around Hebrew
    "e\u0301\u0301\u0301 \ufeff zero\u200bwidth",  # stacked combining marks, BOM, zero-width space
    "\U0001f600\U0001f4a9 astral",  # characters outside the BMP
])
def test_odd_but_valid_unicode_is_stored_and_echoed_verbatim(api, text):
    response = api.post("/api/pipelines/", body_with(text, {"tag": text}), format="json")

    assert response.status_code == 201, response.content[:500]
    detail = api.get(f"/api/pipelines/{response.json()['id']}/").json()
    assert detail["name"] == text and detail["steps"][0]["context"] == {"tag": text}


@pytest.mark.parametrize("fragment", [
    "x'); DROP TABLE pipeline_pipeline; --",
    "1 OR 1=1; DELETE FROM pipeline_step",
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }} ${7*7} %(name)s",
])
def test_sql_html_and_template_fragments_are_stored_verbatim_and_echoed_as_json(api, fragment):
    response = api.post("/api/pipelines/", body_with(fragment, {"tag": fragment}), format="json")

    assert response.status_code == 201, response.content[:500]
    pipeline_id = response.json()["id"]
    for answer in (response, api.get(f"/api/pipelines/{pipeline_id}/"), api.get("/api/pipelines/")):
        assert answer["Content-Type"].startswith("application/json")
    stored = Pipeline.objects.get(pk=pipeline_id)
    assert stored.name == fragment and stored.steps.get().context == {"tag": fragment}
    assert Step.objects.count() == 1
    assert {"pipeline_pipeline", "pipeline_step"} <= set(connection.introspection.table_names())


@pytest.mark.parametrize("header", [None, "Token wrong-key", "Token ", "Basic YWxpY2U6YWxpY2U="])
@pytest.mark.parametrize("path", ["/api/pipelines/{id}/cancel/", "/api/pipelines/{id}/retry/",
                                  "/transformer/pipe_create"])
def test_writes_other_than_create_need_a_valid_token_too(api, header, path):
    pipeline_id = api.post("/api/pipelines/", body_with(), format="json").json()["id"]
    anonymous = APIClient()
    if header:
        anonymous.credentials(HTTP_AUTHORIZATION=header)

    response = anonymous.post(path.format(id=pipeline_id), body_with("sneaky"), format="json")

    assert response.status_code == 401, response.content[:300]
    assert response.json()["message"]
    assert Pipeline.objects.get().status == "queued" and Pipeline.objects.count() == 1


def step_queue_depth(step: str) -> int | None:
    """Messages waiting in the step's queue, or None if the broker has no such queue."""
    connection_, channel = open_channel()
    try:
        name = protocol.step_queue(protocol_prefix(), step)
        return channel.queue_declare(name, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if connection_.is_open:
            connection_.close()


def protocol_prefix() -> str:
    from django.conf import settings

    return settings.SHEPHERD_AMQP_PREFIX


@pytest.mark.parametrize("step", ["rm_rf", "noop.evil", "../noop", "noop\x00", "#"])
def test_a_step_that_is_not_registered_is_refused_and_never_reaches_a_queue(api, step):
    body = body_with()
    body["transformers_list"][0]["name"] = step

    errors = assert_refused_clearly(api.post("/api/pipelines/", body, format="json"))["errors"]

    assert any(e["field"] == "transformers_list[0].name" for e in errors), errors
    assert step_queue_depth(step) in (None, 0)


def test_a_non_numeric_pipeline_id_is_a_json_404_in_the_api_error_shape(api):
    """Schemathesis found that /api/pipelines/abc/ (no route matches) answered Django's HTML page."""
    for path in ("/api/pipelines/abc/", "/api/pipelines/-1/", "/api/pipelines/abc/logs/"):
        response = api.get(path)

        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json"), (path, response["Content-Type"])
        assert response.json()["message"]
