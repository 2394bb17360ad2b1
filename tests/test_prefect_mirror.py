"""The Prefect mirror: pipelines become flow runs and steps task runs, in a real Prefect server."""

from __future__ import annotations

import pytest
from django.utils import timezone
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.server.api.server import SubprocessASGIServer

from pipeline.models import Pipeline
from pipeline.orchestration.prefect_recorder import PrefectRecorder
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def prefect_server():
    """Prefect with no PREFECT_API_URL starts a temporary local server (under this test run's
    PREFECT_HOME); stop it before pytest closes its output, rather than at interpreter exit."""
    yield
    SubprocessASGIServer().stop()


def test_a_pipeline_and_its_steps_are_recorded_with_their_states(prefect_server):
    pipeline = Pipeline.objects.create(name="mirror", project="demo")
    recorder = PrefectRecorder()
    recorder.start()

    recorder.pipeline_state(pipeline.pk, name=f"pipeline-{pipeline.pk}-mirror", state="running")
    recorder.step_state(pipeline.pk, 101, name="append-1", state="running")
    recorder.step_state(pipeline.pk, 101, name="append-1", state="succeeded")
    recorder.step_state(pipeline.pk, 102, name="fail-2", state="running")
    recorder.step_state(pipeline.pk, 102, name="fail-2", state="failed", message="bad row")
    recorder.pipeline_state(pipeline.pk, name=f"pipeline-{pipeline.pk}-mirror", state="failed",
                            message="step fail failed")
    recorder.close(timeout=120)

    assert recorder.backlog() == 0
    flow_run_id = Pipeline.objects.get(pk=pipeline.pk).prefect_flow_run_id
    assert flow_run_id, "the flow run id is stored so a restarted daemon updates the same run"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        task_runs = client.read_task_runs(flow_run_filter=only_this_run)
    assert flow_run.name == f"pipeline-{pipeline.pk}-mirror"
    assert flow_run.state.type.value == "FAILED"
    states = {run.name: run.state.type.value for run in task_runs}
    assert states == {"append-1": "COMPLETED", "fail-2": "FAILED"}


def test_a_disabled_mirror_records_nothing_and_costs_nothing():
    recorder = PrefectRecorder(enabled=False)
    recorder.start()
    recorder.pipeline_state(1, name="pipeline-1-x", state="running")

    assert recorder.backlog() == 0
    recorder.close(timeout=1)


def test_final_states_a_stopped_daemon_did_not_send_are_sent_when_the_next_one_starts(prefect_server):
    # Given a pipeline whose start reached Prefect, and a daemon that stopped before its end did
    pipeline = Pipeline.objects.create(name="behind", project="demo", status="running")
    step = pipeline.steps.create(name="append", queue="append", order_no=1, timeout=60, retries=0,
                                 status="running")
    first = PrefectRecorder()
    first.start()
    first.pipeline_state(pipeline.pk, name=f"pipeline-{pipeline.pk}-behind", state="running")
    first.step_state(pipeline.pk, step.pk, name="append-1", state="running")
    first.close(timeout=120)
    Pipeline.objects.filter(pk=pipeline.pk).update(status="succeeded", finished_at=timezone.now())
    step.__class__.objects.filter(pk=step.pk).update(status="succeeded")

    # When the next daemon's mirror starts
    second = PrefectRecorder()
    second.start()
    wait_until(lambda: Pipeline.objects.get(pk=pipeline.pk).prefect_state == "succeeded", 120,
               "the final state to reach Prefect")
    second.close(timeout=60)

    # Then the same flow run and task run are completed, not made twice
    flow_run_id = Pipeline.objects.get(pk=pipeline.pk).prefect_flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert flow_run.state.type.value == "COMPLETED"
    assert [(run.name, run.state.type.value) for run in task_runs] == [("append-1", "COMPLETED")]
