"""Every event goes to the pipeline's log; the process log keeps the routine step lines at DEBUG."""

from __future__ import annotations

import logging

import pytest

from pipeline.models import Pipeline, PipelineEvent
from pipeline.services import record_event

pytestmark = pytest.mark.django_db


def test_routine_step_lines_are_stored_but_logged_at_debug_and_the_rest_at_their_level(caplog):
    pipeline = Pipeline.objects.create(name="p", project="demo")

    with caplog.at_level(logging.DEBUG, logger="pipeline.services"):
        record_event(pipeline, "published", "step 1 published")
        record_event(pipeline, "claimed", "picked up by daemon 'd'")
        record_event(pipeline, "retrying", "step 1 failed; retrying", level="warning")

    assert list(PipelineEvent.objects.filter(pipeline=pipeline).values_list("event", "level")) == [
        ("published", "info"), ("claimed", "info"), ("retrying", "warning")]
    assert [(r.levelname, r.event) for r in caplog.records] == [
        ("DEBUG", "published"), ("INFO", "claimed"), ("WARNING", "retrying")]
