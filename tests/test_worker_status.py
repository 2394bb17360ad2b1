"""Which steps have workers: GET /api/workers/ and manage.py worker_status, on the real broker."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def by_step(rows: list[dict]) -> dict[str, dict]:
    return {row["step"]: row for row in rows}


def test_the_steps_a_running_worker_serves_show_it_and_the_others_show_none(procs):
    api = APIClient()
    procs.demo_worker()

    rows = wait_until(lambda: (r := by_step(api.get("/api/workers/").json()))["noop"]["consumers"] and r,
                      timeout=30, what="the demo worker to consume its queues")

    assert {rows[s]["consumers"] for s in ("noop", "append", "sleep", "fail")} == {1}
    assert rows["skip_column"] == {"project": "generic_transformations", "step": "skip_column",
                                   "queue": "skip_column", "consumers": 0, "waiting": 0}


def test_the_command_flags_steps_with_no_worker(capsys):
    call_command("worker_status")

    out = capsys.readouterr().out
    assert "skip_column" in out and "<- no worker" in out


def test_an_unreachable_broker_is_a_503(settings):
    settings.SHEPHERD_BROKER_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
    settings.SHEPHERD_PUBLISH_TIMEOUT = 0.5

    response = APIClient().get("/api/workers/")

    assert response.status_code == 503 and "SHEPHERD_BROKER_URL" in response.json()["message"]
