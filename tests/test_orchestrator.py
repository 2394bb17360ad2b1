"""The orchestrator end to end: API -> daemon -> workers -> database, all real processes."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from datetime import datetime

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.server.api.server import SubprocessASGIServer
from rest_framework.test import APIClient

from pipeline.models import Pipeline, Step
from tests.support.pipelines import calls, final
from tests.support.processes import REPO, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def submit(api: APIClient, *steps: tuple[str, dict], data_url: str = "", name: str = "demo", **step_opts):
    """Submit a demo-project pipeline of ``(step, context)`` pairs; return its id."""
    body = {"pipeline_name": name, "project": "demo", "data_url": data_url,
            "transformers_list": [{"name": n, "order_no": i + 1, "context": c, **step_opts}
                                  for i, (n, c) in enumerate(steps)]}
    response = api.post("/api/pipelines/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_three_step_pipeline_passes_each_output_to_the_next_step(api, procs):
    procs.demo_worker()
    procs.daemon()

    pipeline_id = submit(api, ("append", {"text": "-a"}), ("append", {"text": "-b"}),
                         ("append", {"text": "-c"}), data_url="file:///data/in.csv")
    pipeline = final(api, pipeline_id, procs)

    assert pipeline["status"] == "succeeded", pipeline
    assert [s["output"] for s in pipeline["steps"]] == [
        "file:///data/in.csv-a", "file:///data/in.csv-a-b", "file:///data/in.csv-a-b-c"]
    assert pipeline["output"] == "file:///data/in.csv-a-b-c"
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in pipeline["steps"])
    assert all(s["worker"]["pid"] and s["started_at"] <= s["finished_at"] for s in pipeline["steps"])
    events = [e["event"] for e in api.get(f"/api/pipelines/{pipeline_id}/logs/").json()["results"]]
    assert events[:2] == ["created", "claimed"] and events[-1] == "finished"
    assert events.count("published") == 3 and events.count("step_succeeded") == 3


def test_a_failing_step_fails_the_pipeline_with_the_worker_traceback_and_skips_the_rest(api, procs):
    procs.demo_worker()
    procs.daemon()

    pipeline_id = submit(api, ("append", {"text": "a"}), ("fail", {"message": "bad row 7"}),
                         ("append", {"text": "c"}), retries=0)
    pipeline = final(api, pipeline_id, procs)

    assert pipeline["status"] == "failed"
    assert [s["status"] for s in pipeline["steps"]] == ["succeeded", "failed", "skipped"]
    error = pipeline["steps"][1]["error"]
    assert error["type"] == "ValueError" and error["message"] == "bad row 7"
    assert "def fail" in error["traceback"] or "in fail" in error["traceback"]
    assert pipeline["error"]["step"] == "fail" and pipeline["error"]["message"] == "bad row 7"


def test_a_failed_step_is_retried_as_the_registry_or_request_says(api, procs):
    procs.demo_worker()
    procs.daemon(SHEPHERD_RETRY_BACKOFF="0.1")

    pipeline_id = submit(api, ("fail", {"message": "flaky"}), retries=2)
    pipeline = final(api, pipeline_id, procs)

    assert pipeline["status"] == "failed" and pipeline["steps"][0]["attempts"] == 3
    assert [c["step"] for c in calls(procs)] == ["fail"] * 3


def test_a_step_with_no_worker_fails_the_pipeline_with_the_no_worker_error(api, procs):
    procs.daemon("wait-limit=2")

    pipeline_id = submit(api, ("noop", {}), retries=0)
    pipeline = final(api, pipeline_id, procs, timeout=30)

    assert pipeline["status"] == "failed"
    assert pipeline["steps"][0]["error"]["type"] == "NoWorker"
    assert "no worker is consuming 'noop'" in pipeline["error"]["message"]


def test_twenty_pipelines_run_at_once(api, procs):
    procs.demo_worker("worker-1", concurrency=10)
    procs.demo_worker("worker-2", concurrency=10)
    procs.daemon("concurrency=20")

    ids = [submit(api, ("sleep", {"seconds": 1.5}), ("append", {"text": str(i)})) for i in range(20)]
    pipelines = [final(api, pipeline_id, procs, timeout=90) for pipeline_id in ids]

    assert {p["status"] for p in pipelines} == {"succeeded"}
    starts = [datetime.fromisoformat(p["started_at"]) for p in pipelines]
    ends = [datetime.fromisoformat(p["finished_at"]) for p in pipelines]
    assert max(starts) < min(ends), "the pipelines ran one after another instead of at once"
    assert len(calls(procs)) == 40


def test_a_daemon_killed_mid_run_resumes_every_pipeline_and_runs_no_step_twice(api, procs):
    procs.demo_worker(concurrency=8)
    first = procs.daemon()
    ids = [submit(api, ("append", {"text": f"p{i}"}), ("sleep", {"seconds": 2, "tag": f"p{i}"}),
                  ("append", {"text": f"q{i}"})) for i in range(5)]
    wait_until(lambda: Step.objects.filter(name="sleep", status="running").count() >= 3,
               timeout=30, what="sleep steps to be running")

    first.send_signal(signal.SIGKILL)
    first.wait()
    procs.daemon(label="daemon-restarted")
    pipelines = [final(api, pipeline_id, procs, timeout=90) for pipeline_id in ids]

    assert {p["status"] for p in pipelines} == {"succeeded"}, [p["status"] for p in pipelines]
    assert [p["output"] for p in pipelines] == [f"p{i}q{i}" for i in range(5)]
    runs = Counter(json.dumps(c["context"], sort_keys=True) for c in calls(procs))
    assert len(runs) == 15 and set(runs.values()) == {1}, runs


def test_a_running_pipeline_is_cancelled_before_its_next_step(api, procs):
    procs.demo_worker()
    procs.daemon()
    pipeline_id = submit(api, ("sleep", {"seconds": 2}), ("append", {"text": "never"}))
    wait_until(lambda: Step.objects.filter(pipeline_id=pipeline_id, status="running").exists(),
               timeout=30, what="the first step to start")

    assert api.post(f"/api/pipelines/{pipeline_id}/cancel/").status_code == 202
    pipeline = final(api, pipeline_id, procs)

    assert pipeline["status"] == "cancelled"
    assert [s["status"] for s in pipeline["steps"]] == ["succeeded", "cancelled"]
    assert [c["step"] for c in calls(procs)] == ["sleep"]


def test_a_failed_pipeline_retried_resumes_from_its_first_unfinished_step(api, procs):
    procs.start("append-only", [sys.executable, str(REPO / "tests/support/workers/append_only.py")])
    procs.daemon("wait-limit=2")
    pipeline_id = submit(api, ("append", {"text": "kept"}), ("noop", {}), retries=0)
    assert final(api, pipeline_id, procs)["status"] == "failed"

    procs.demo_worker()
    response = api.post(f"/api/pipelines/{pipeline_id}/retry/")
    pipeline = final(api, pipeline_id, procs)

    assert response.status_code == 202
    assert pipeline["status"] == "succeeded" and pipeline["output"] == "kept"
    assert [c["step"] for c in calls(procs)] == ["append", "noop"]
    assert api.post(f"/api/pipelines/{pipeline_id}/retry/").status_code == 409


def test_sigterm_stops_the_daemon_cleanly_and_another_resumes_the_pipeline(api, procs):
    procs.demo_worker()
    first = procs.daemon(SHEPHERD_SHUTDOWN_GRACE="10")
    pipeline_id = submit(api, ("sleep", {"seconds": 1}), ("sleep", {"seconds": 1}), ("append", {"text": "x"}))
    wait_until(lambda: Step.objects.filter(pipeline_id=pipeline_id, status="running").exists(),
               timeout=30, what="the first step to start")

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert Pipeline.objects.get(pk=pipeline_id).status == "running"
    procs.daemon(label="daemon-2")
    pipeline = final(api, pipeline_id, procs)

    assert pipeline["status"] == "succeeded"
    assert len(calls(procs)) == 3


def test_with_prefect_on_every_pipeline_and_step_is_visible_in_prefect(api, procs):
    procs.env.update(SHEPHERD_PREFECT="true", PREFECT_HOME=os.environ["PREFECT_HOME"])
    procs.demo_worker()
    daemon = procs.daemon()
    pipeline_id = submit(api, ("append", {"text": "a"}), ("noop", {}), name="mirrored")
    assert final(api, pipeline_id, procs)["status"] == "succeeded"
    wait_until(lambda: Pipeline.objects.get(pk=pipeline_id).prefect_flow_run_id, timeout=90,
               what="the flow run to be recorded in Prefect")

    daemon.send_signal(signal.SIGTERM)  # flushes the mirror before it exits
    assert daemon.wait(timeout=120) == 0
    flow_run_id = Pipeline.objects.get(pk=pipeline_id).prefect_flow_run_id
    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    finally:
        SubprocessASGIServer().stop()
    assert flow_run.name == f"pipeline-{pipeline_id}-mirrored"
    assert flow_run.state.type.value == "COMPLETED"
    assert sorted((run.name, run.state.type.value) for run in task_runs) == [
        ("append-1", "COMPLETED"), ("noop-2", "COMPLETED")]


def test_an_attempt_recorded_but_never_published_before_a_crash_is_published_again(api, procs):
    # Given a daemon that died after recording step 1's attempt and before publishing it
    pipeline_id = submit(api, ("append", {"text": "once"}))
    daemon_name = procs.env["SHEPHERD_DAEMON_NAME"]
    Pipeline.objects.filter(pk=pipeline_id).update(status="running", claimed_by=daemon_name)
    Step.objects.filter(pipeline_id=pipeline_id).update(status="running", attempts=1, call_id="step-lost-1")

    # When it starts again (short leases, on every node alike, so the wait for that attempt is short)
    procs.env["SHEPHERD_LEASE_TIMEOUT"] = "2"
    procs.demo_worker()
    procs.daemon()
    pipeline = final(api, pipeline_id, procs)

    # Then the attempt is published again, runs once, and counts as the same attempt
    assert pipeline["status"] == "succeeded" and pipeline["output"] == "once"
    assert pipeline["steps"][0]["attempts"] == 1
    assert [c["step"] for c in calls(procs)] == ["append"]
    events = [e["event"] for e in api.get(f"/api/pipelines/{pipeline_id}/logs/").json()["results"]]
    assert "reattached" in events and "republished" in events
