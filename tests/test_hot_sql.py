"""The daemon's fixed SQL reads and writes exactly what the ORM would, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from pipeline import hot_sql
from pipeline.models import Pipeline, PipelineEvent, Step

pytestmark = pytest.mark.django_db

AWKWARD = {"text": "naïve — ✓ 'quoted' \"double\" %s %(x)s", "nested": [1, 2.5, None, True, {"k": []}]}


@pytest.fixture
def pipeline() -> Pipeline:
    pipeline = Pipeline.objects.create(name="p", project="demo", data_url="s3://in/x.csv", output=AWKWARD)
    Step.objects.bulk_create(
        Step(pipeline=pipeline, name=f"s{n}", queue="noop", order_no=n, context={"n": n, **AWKWARD},
             timeout=5, retries=1) for n in (3, 1, 2)
    )
    return pipeline


def fields(instance) -> dict:
    return {**model_to_dict(instance), "id": instance.pk}


def test_the_run_reads_build_the_same_instances_as_the_orm(pipeline):
    Step.objects.filter(pipeline=pipeline, order_no=1).update(
        status="succeeded", started_at=timezone.now(), output=AWKWARD, worker={"name": "w"})

    steps = hot_sql.steps_in_order(pipeline.pk)

    assert [fields(s) for s in steps] == [fields(s) for s in Step.objects.filter(pipeline=pipeline)
                                          .order_by("order_no")]
    assert [s.order_no for s in steps] == [1, 2, 3]
    assert steps[0].started_at.tzinfo is not None
    assert fields(hot_sql.pipeline(pipeline.pk)) == fields(Pipeline.objects.get(pk=pipeline.pk))


def test_reading_a_pipeline_that_is_gone_raises_does_not_exist():
    with pytest.raises(Pipeline.DoesNotExist):
        hot_sql.pipeline(987654)


def test_a_step_result_reads_back_through_the_orm_unchanged(pipeline):
    step = Step.objects.get(pipeline=pipeline, order_no=1)
    finished = timezone.now()

    hot_sql.step_succeeded(step, output=AWKWARD, worker={"host": "h", "pid": 1}, finished_at=finished)

    stored = Step.objects.get(pk=step.pk)
    assert (stored.status, stored.output, stored.worker, stored.error, stored.finished_at) == (
        "succeeded", AWKWARD, {"host": "h", "pid": 1}, None, finished)


def test_an_attempt_starts_only_while_no_cancel_is_requested(pipeline):
    step = Step.objects.get(pipeline=pipeline, order_no=1)
    now = timezone.now()

    assert hot_sql.start_attempt(step, attempt=1, call_id="c-1", started_at=now)
    stored = Step.objects.get(pk=step.pk)
    assert (stored.status, stored.attempts, stored.call_id, stored.started_at) == ("running", 1, "c-1", now)

    Pipeline.objects.filter(pk=pipeline.pk).update(cancel_requested=True)
    assert not hot_sql.start_attempt(step, attempt=2, call_id="c-2", started_at=now)
    assert Step.objects.get(pk=step.pk).call_id == "c-1"


def test_only_a_queued_uncancelled_pipeline_is_claimed(pipeline):
    now = timezone.now()
    until = now + timedelta(seconds=30)

    assert hot_sql.claim_queued(pipeline.pk, daemon="d1", until=until, now=now)
    assert not hot_sql.claim_queued(pipeline.pk, daemon="d2", until=until, now=now)
    stored = Pipeline.objects.get(pk=pipeline.pk)
    assert (stored.status, stored.claimed_by, stored.lease_expires_at, stored.started_at) == (
        "running", "d1", until, now)

    other = Pipeline.objects.create(name="q", project="demo", cancel_requested=True)
    assert not hot_sql.claim_queued(other.pk, daemon="d1", until=until, now=now)


def test_a_claim_keeps_the_first_start_time(pipeline):
    first = timezone.now() - timedelta(hours=1)
    Pipeline.objects.filter(pk=pipeline.pk).update(started_at=first)

    hot_sql.claim_queued(pipeline.pk, daemon="d1", until=timezone.now(), now=timezone.now())

    assert Pipeline.objects.get(pk=pipeline.pk).started_at == first


def test_a_finished_pipeline_keeps_its_output(pipeline):
    finished = timezone.now()

    hot_sql.pipeline_succeeded(pipeline.pk, output=[AWKWARD], finished_at=finished)

    stored = Pipeline.objects.get(pk=pipeline.pk)
    assert (stored.status, stored.output, stored.finished_at, stored.lease_expires_at) == (
        "succeeded", [AWKWARD], finished, None)


def test_an_event_reads_back_as_written(pipeline):
    step = Step.objects.get(pipeline=pipeline, order_no=2)
    at = timezone.now()

    hot_sql.insert_event(pipeline_id=pipeline.pk, step_id=step.pk, at=at, level="warning", event="one",
                         message=AWKWARD["text"], data=AWKWARD)
    hot_sql.insert_event(pipeline_id=pipeline.pk, step_id=None, at=at + timedelta(milliseconds=1),
                         level="info", event="two", message="m", data=None)

    events = list(PipelineEvent.objects.filter(pipeline=pipeline).values_list(
        "created_at", "level", "event", "message", "data", "step_id"))
    assert events == [
        (at, "warning", "one", AWKWARD["text"], AWKWARD, step.pk),
        (at + timedelta(milliseconds=1), "info", "two", "m", None, None),
    ]
