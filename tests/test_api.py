"""The pipelines API: submission, validation, auth, idempotency, reads, cancel and the hand-off."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from pipeline.handoff import decode_handoff, pipelines_queue, republish_lapsed, sweep_unpublished
from pipeline.models import Pipeline, PipelineEvent, Step
from tests.conftest import BROKER_URL, open_channel
from tests.factories import sentinel_body, token_for

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for()}")
    return api


@pytest.fixture
def drain_handoffs():
    """Empties the hand-off queue, then returns a function that reads the pipeline ids in it.

    Each read opens its own connection, so a test may cut every connection in between.
    """

    def read(purge: bool = False) -> list[int]:
        connection, channel = open_channel()
        try:
            channel.queue_declare(pipelines_queue(), durable=True)
            if purge:
                channel.queue_purge(pipelines_queue())
            ids = []
            while (message := channel.basic_get(pipelines_queue(), auto_ack=True))[0] is not None:
                ids.append(decode_handoff(message[2]))
            return ids
        finally:
            connection.close()

    read(purge=True)
    return read


def post(client: APIClient, body, **headers):
    return client.post("/api/pipelines/", body, format="json", **headers)


def test_sample_body_is_stored_queued_and_handed_to_the_broker(client, drain_handoffs):
    response = post(client, sentinel_body())

    assert response.status_code == 201
    body = response.json()
    assert response["Location"].endswith(f"/api/pipelines/{body['id']}/")
    assert body["status"] == "queued"
    assert [(s["name"], s["order_no"], s["status"]) for s in body["steps"]] == [
        ("sentinel", 1, "pending"), ("sentinel_upload_to_s3", 2, "pending")]
    assert body["project"] == "ids_drr"
    detail = client.get(f"/api/pipelines/{body['id']}/").json()
    assert detail["steps"][0]["context"] == {"date_start": "2023-05-01", "date_end": "2023-06-01"}
    assert drain_handoffs() == [body["id"]]
    assert Pipeline.objects.get(pk=body["id"]).published_at is not None


def test_steps_run_in_order_no_order_whatever_their_order_in_the_list(client, drain_handoffs):
    body = sentinel_body()
    body["transformers_list"].reverse()

    steps = post(client, body).json()["steps"]

    assert [s["name"] for s in steps] == ["sentinel", "sentinel_upload_to_s3"]


def test_timeout_and_retries_come_from_the_registry_unless_the_request_overrides_them(client, drain_handoffs):
    body = sentinel_body()
    body["transformers_list"][1].update(timeout=60, retries=0)

    steps = post(client, body).json()["steps"]

    assert (steps[0]["timeout"], steps[0]["retries"]) == (3 * 3600, 2)
    assert (steps[1]["timeout"], steps[1]["retries"]) == (60, 0)


def _steps(*items):
    return {"transformers_list": list(items)}


def _sentinel(order_no=1, **context):
    return {"name": "sentinel", "order_no": order_no,
            "context": {"date_start": "2023-05-01", "date_end": "2023-06-01", **context}}


BAD_BODIES = [
    ({"project": "no-such-project"}, "project", "unknown project"),
    ({"project": None}, "project", "is required"),
    (_steps({"name": "resize", "order_no": 1, "context": {}}), "transformers_list[0].name", "has no step"),
    (_steps({"name": "sentinel_upload_to_s3", "context": {}}), "transformers_list[0].order_no", "required"),
    (_steps(_sentinel(1), {"name": "sentinel_upload_to_s3", "order_no": 1}),
     "transformers_list[1].order_no", "duplicates"),
    (_steps({**_sentinel(), "order_no": "1"}), "transformers_list[0].order_no", "integer"),
    (_steps({**_sentinel(), "order_no": 1.5}), "transformers_list[0].order_no", "integer"),
    (_steps({**_sentinel(), "order_no": 0}), "transformers_list[0].order_no", "positive"),
    (_steps({**_sentinel(), "order_no": -3}), "transformers_list[0].order_no", "positive"),
    (_steps({**_sentinel(), "context": "2023-05-01"}), "transformers_list[0].context", "JSON object"),
    (_steps({"name": "sentinel", "order_no": 1, "context": {"date_end": "2023-06-01"}}),
     "transformers_list[0].context.date_start", "required"),
    (_steps(_sentinel(date_start="2023-07-01")), "transformers_list[0].context.date_start", "after"),
    (_steps(_sentinel(date_start="2023-02-30")), "transformers_list[0].context.date_start", "calendar"),
    (_steps(_sentinel(date_end=20230601)), "transformers_list[0].context.date_end", "string"),
    (_steps({"name": "collect_imd_data", "order_no": 1, "context": {"year": 23}}),
     "transformers_list[0].context.year", "must be"),
    (_steps({"name": "bhuvan_transformer", "order_no": 1, "context": {"year": 2023}}),
     "transformers_list[0].context.month", "required"),
    (_steps({**_sentinel(), "timeout": -1}), "transformers_list[0].timeout", "between"),
    (_steps({**_sentinel(), "retries": "many"}), "transformers_list[0].retries", "integer"),
    (_steps("sentinel"), "transformers_list[0]", "object"),
    ({"transformers_list": []}, "transformers_list", "at least one"),
    ({"transformers_list": None}, "transformers_list", "required"),
    ({"transformers_list": {"name": "sentinel"}}, "transformers_list", "list"),
    ({"pipeline_name": None}, "pipeline_name", "required"),
    ({"pipeline_name": "   "}, "pipeline_name", "blank"),
    ({"pipeline_name": "x" * 201}, "pipeline_name", "at most 200"),
    ({"pipeline_name": 42}, "pipeline_name", "string"),
    ({"data_url": "ftp://example.org/data.csv"}, "data_url", "http"),
    ({"data_url": "just-a-path.csv"}, "data_url", "http"),
    ({"data_url": "https://"}, "data_url", "http"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_BODIES)
def test_a_bad_body_is_a_400_naming_the_field_and_stores_nothing(client, change, field, reason):
    body = sentinel_body(**change)
    body = {k: v for k, v in body.items() if v is not None}

    response = post(client, body)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors
    assert Pipeline.objects.count() == Step.objects.count() == 0


def test_generic_transformation_contexts_accept_what_existing_clients_send(client, drain_handoffs):
    body = {
        "pipeline_name": "csv", "project": "generic_transformations", "data_url": "file:///data/in.csv",
        "transformers_list": [
            {"name": "skip_column", "order_no": 1, "context": {"columns": "id"}},
            {"name": "merge_columns", "order_no": 2, "context": {
                "columns": ["a", "b"], "output_column": "ab", "separator": "-", "drop_flag": "True"}},
            {"name": "anonymize", "order_no": 3,
             "context": {"to_replace": "secret", "replace_val": "***", "column": "note"}},
            {"name": "rename_column", "order_no": 4, "context": {"rename_dict": {"ab": "joined"}}},
            {"name": "split_column", "order_no": 5,
             "context": {"column": "joined", "new_cols": ["x", "y"], "sep": "-"}},
            {"name": "aggregate", "order_no": 6,
             "context": {"index": "x", "columns": "y", "values": "amount,count"}},
        ],
    }

    assert post(client, body).status_code == 201


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2", "\u0000".encode(), b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_400_on_the_body(client, raw):
    response = client.generic("POST", "/api/pipelines/", raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"
    assert Pipeline.objects.count() == 0


def test_an_empty_body_is_a_400_naming_the_required_fields(client):
    response = client.generic("POST", "/api/pipelines/", b"", content_type="application/json")

    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"pipeline_name", "project", "transformers_list"}


def test_a_json_array_body_is_a_400(client):
    response = post(client, [sentinel_body()])

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "body", "reason": "must be a JSON object"}]


def test_a_body_over_the_limit_is_refused_with_413(client, settings):
    settings.SHEPHERD_MAX_BODY_BYTES = 1000
    body = sentinel_body(pipeline_name="big")
    body["transformers_list"][1]["context"] = {"prefix": "x" * 2000}

    response = post(client, body)

    assert response.status_code == 413
    assert "SHEPHERD_MAX_BODY_BYTES" in response.json()["message"]
    assert Pipeline.objects.count() == 0


@pytest.mark.parametrize("header", [None, "Token wrong-key", "Bearer abc"])
def test_writes_need_a_valid_token(header):
    api = APIClient()
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)

    response = post(api, sentinel_body())

    assert response.status_code == 401
    assert response.json()["message"]
    assert Pipeline.objects.count() == 0


def test_reads_are_open_unless_the_setting_says_otherwise(settings):
    anonymous = APIClient()
    assert anonymous.get("/api/pipelines/").status_code == 200

    settings.SHEPHERD_READS_NEED_TOKEN = True

    assert anonymous.get("/api/pipelines/").status_code == 401
    assert anonymous.get("/transformer/pipe_list").status_code == 401
    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token_for()}")
    assert anonymous.get("/api/pipelines/").status_code == 200


def test_an_idempotency_key_makes_a_retry_return_the_same_pipeline(client, drain_handoffs):
    first = post(client, sentinel_body(), HTTP_IDEMPOTENCY_KEY="order-17")
    retry = post(client, sentinel_body(), HTTP_IDEMPOTENCY_KEY="order-17")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json()["id"] == retry.json()["id"]
    assert Pipeline.objects.count() == 1
    assert drain_handoffs() == [first.json()["id"]]


def test_an_idempotency_key_reused_for_another_body_is_a_409(client, drain_handoffs):
    post(client, sentinel_body(), HTTP_IDEMPOTENCY_KEY="order-18")

    response = post(client, sentinel_body(pipeline_name="other"), HTTP_IDEMPOTENCY_KEY="order-18")

    assert response.status_code == 409
    assert "different body" in response.json()["message"]
    assert Pipeline.objects.count() == 1


def test_the_list_is_newest_first_filtered_and_paginated(client, drain_handoffs):
    ids = [post(client, sentinel_body(pipeline_name=f"p{i}")).json()["id"] for i in range(3)]
    Pipeline.objects.filter(pk=ids[0]).update(status="failed")

    page = client.get("/api/pipelines/?page_size=2").json()
    failed = client.get("/api/pipelines/?status=failed").json()
    by_project = client.get("/api/pipelines/?project=ids-drr").json()
    other = client.get("/api/pipelines/?project=generic_transformations").json()

    assert page["count"] == 3 and [p["id"] for p in page["results"]] == [ids[2], ids[1]]
    assert page["next"] is not None
    assert [p["id"] for p in failed["results"]] == [ids[0]]
    assert by_project["count"] == 3 and other["count"] == 0


def test_an_unknown_status_filter_is_a_400(client):
    response = client.get("/api/pipelines/?status=done")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "status"


def test_an_unknown_pipeline_is_a_404_with_a_message(client):
    for path in ("/api/pipelines/999/", "/api/pipelines/999/logs/"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["message"]
    assert client.post("/api/pipelines/999/cancel/").status_code == 404


def test_cancelling_a_queued_pipeline_cancels_it_and_its_steps(client, drain_handoffs):
    pipeline_id = post(client, sentinel_body()).json()["id"]

    response = client.post(f"/api/pipelines/{pipeline_id}/cancel/")
    again = client.post(f"/api/pipelines/{pipeline_id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert {s["status"] for s in response.json()["steps"]} == {"cancelled"}
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]


def test_cancelling_a_running_pipeline_asks_the_daemon_to_stop_it(client, drain_handoffs):
    pipeline_id = post(client, sentinel_body()).json()["id"]
    Pipeline.objects.filter(pk=pipeline_id).update(status="running")

    response = client.post(f"/api/pipelines/{pipeline_id}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True


def test_the_logs_show_the_pipeline_events(client, drain_handoffs):
    pipeline_id = post(client, sentinel_body()).json()["id"]

    events = client.get(f"/api/pipelines/{pipeline_id}/logs/").json()["results"]

    assert [e["event"] for e in events] == ["created"]


def test_projects_list_their_steps_and_context_schemas(client):
    projects = {p["name"]: p for p in client.get("/api/projects/").json()}

    assert {"generic_transformations", "ids_drr"} <= set(projects)
    sentinel = next(s for s in projects["ids_drr"]["steps"] if s["name"] == "sentinel")
    assert sentinel["context_schema"]["required"] == ["date_start", "date_end"]
    assert sentinel["queue"] == "sentinel" and sentinel["retries"] == 2


def test_health_reports_database_and_broker(settings):
    api = APIClient()
    assert api.get("/api/health/").json() == {"database": "ok", "broker": "ok", "status": "ok"}

    settings.SHEPHERD_BROKER_URL = UNREACHABLE_BROKER
    response = api.get("/api/health/")

    assert response.status_code == 503 and response.json()["broker"] == "unreachable"


def test_the_openapi_schema_and_its_docs_page_are_served():
    api = APIClient()
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert schema.status_code == 200
    assert "/api/pipelines/" in json.loads(schema.content)["paths"]
    assert api.get("/api/docs/").status_code == 200


def test_with_the_broker_down_a_post_succeeds_and_the_sweep_publishes_it_once(
    client, settings, drain_handoffs
):
    settings.SHEPHERD_BROKER_URL = UNREACHABLE_BROKER
    settings.SHEPHERD_PUBLISH_TIMEOUT = 0.5

    response = post(client, sentinel_body())

    assert response.status_code == 201 and response.json()["status"] == "queued"
    pipeline_id = response.json()["id"]
    assert Pipeline.objects.get(pk=pipeline_id).published_at is None
    assert sweep_unpublished() == 0  # the broker is still down

    settings.SHEPHERD_BROKER_URL = BROKER_URL
    # Past the grace period in which the sweep leaves a pipeline to the request that stored it.
    Pipeline.objects.filter(pk=pipeline_id).update(created_at=timezone.now() - timedelta(minutes=1))
    assert sweep_unpublished() == 1
    assert sweep_unpublished() == 0
    assert drain_handoffs() == [pipeline_id]
    assert Pipeline.objects.get(pk=pipeline_id).published_at is not None


class TestCompatibilityEndpoints:
    def test_pipe_create_answers_in_the_old_shape(self, client, drain_handoffs):
        response = client.post("/transformer/pipe_create", sentinel_body(), format="json")

        assert response.status_code == 200
        body = response.json()
        assert body["Success"] is True and Pipeline.objects.filter(pk=body["result"]).exists()
        assert drain_handoffs() == [body["result"]]

    def test_pipe_create_validates_like_the_api(self, client):
        response = client.post("/transformer/pipe_create", sentinel_body(project="nope"), format="json")

        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "project"

    def test_pipe_create_needs_a_token(self):
        assert APIClient().post("/transformer/pipe_create", sentinel_body(), format="json").status_code == 401

    def test_lists_and_filter(self, client, drain_handoffs):
        pipeline_id = client.post("/transformer/pipe_create", sentinel_body(), format="json").json()["result"]

        pipes = client.get("/transformer/pipe_list").json()
        steps = client.get(f"/transformer/trans_list?pipeline_id={pipeline_id}").json()
        filtered = client.get(f"/transformer/pipeline_filter?id={pipeline_id}").json()
        bad = client.get("/transformer/pipeline_filter?id=abc")

        assert pipes["Success"] and [p["id"] for p in pipes["result"]] == [pipeline_id]
        assert [s["name"] for s in steps["result"]] == ["sentinel", "sentinel_upload_to_s3"]
        assert [p["id"] for p in filtered["result"]] == [pipeline_id]
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "id"


def test_every_change_is_logged_as_an_event(client, drain_handoffs):
    pipeline_id = post(client, sentinel_body()).json()["id"]
    client.post(f"/api/pipelines/{pipeline_id}/cancel/")

    assert list(PipelineEvent.objects.filter(pipeline_id=pipeline_id).values_list("event", flat=True)) == [
        "created", "cancelled"]


def test_a_hand_off_connection_the_broker_dropped_is_replaced_and_nothing_is_lost(client, drain_handoffs):
    first = post(client, sentinel_body()).json()["id"]
    # The API thread's cached connection is cut by the broker (a restart, an operator, a network blip)
    subprocess.run(["rabbitmqctl", "close_all_connections", "hand-off test"], check=True,
                   capture_output=True, timeout=60)

    second = post(client, sentinel_body(pipeline_name="after the drop")).json()["id"]

    assert sorted(drain_handoffs()) == [first, second]
    assert Pipeline.objects.filter(published_at__isnull=True).count() == 0


def test_the_sweep_hands_off_again_a_running_pipeline_whose_daemon_stopped_renewing_it(
    client, drain_handoffs
):
    orphan = post(client, sentinel_body()).json()["id"]
    alive = post(client, sentinel_body(pipeline_name="alive")).json()["id"]
    drain_handoffs()
    now = timezone.now()
    Pipeline.objects.filter(pk=orphan).update(status="running", lease_expires_at=now - timedelta(minutes=5))
    Pipeline.objects.filter(pk=alive).update(status="running", lease_expires_at=now + timedelta(minutes=5))

    assert republish_lapsed() == 1
    assert drain_handoffs() == [orphan]
