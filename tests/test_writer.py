"""The daemon's writer: many writes in one transaction, each caller answered for its own write alone."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import transaction

from pipeline.models import Pipeline
from pipeline.orchestration.writer import Writer

pytestmark = pytest.mark.django_db(transaction=True)


def create(name: str) -> int:
    return Pipeline.objects.create(name=name, project="demo").pk


def create_then_fail(name: str) -> None:
    Pipeline.objects.create(name=name, project="demo")
    raise ValueError(f"{name} cannot be stored")


ran: list[str] = []
committed_after: list[int] = []


def note_commit(name: str) -> None:
    """Counts, when its transaction commits, how many such writes had run by then."""
    ran.append(name)
    transaction.on_commit(lambda: committed_after.append(len(ran)))


def calls_in_threads(writer: Writer, jobs: list[tuple]) -> list[object]:
    """Each job from its own thread, all queued before the writer starts, so they form one batch."""
    answers: list[object] = [None] * len(jobs)

    def call(index: int, fn, arg) -> None:
        try:
            answers[index] = writer.run(fn, arg)
        except Exception as exc:  # noqa: BLE001 - the answer under test
            answers[index] = exc

    threads = [threading.Thread(target=call, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    while writer.backlog < len(jobs):
        time.sleep(0.01)
    writer.start()
    for thread in threads:
        thread.join(10)
    writer.close()
    return answers


def test_every_caller_gets_the_result_of_its_own_write():
    answers = calls_in_threads(Writer(), [(create, "a"), (create, "b"), (create, "c")])

    assert sorted(Pipeline.objects.get(pk=pk).name for pk in answers) == ["a", "b", "c"]


def test_writes_queued_together_share_one_transaction():
    ran.clear()
    committed_after.clear()

    calls_in_threads(Writer(), [(note_commit, "x"), (note_commit, "y"), (note_commit, "z")])

    assert committed_after == [3, 3, 3]


def test_a_failing_write_fails_its_caller_alone_and_stores_nothing_of_its_own():
    answers = calls_in_threads(Writer(), [(create, "kept-1"), (create_then_fail, "lost"), (create, "kept-2")])

    assert isinstance(answers[1], ValueError) and "lost cannot be stored" in str(answers[1])
    assert sorted(Pipeline.objects.values_list("name", flat=True)) == ["kept-1", "kept-2"]


def test_a_write_nobody_waits_for_is_made_before_close_returns_and_its_failure_is_logged(caplog):
    writer = Writer().start()
    writer.run_later(create_then_fail, "later-lost")
    writer.run_later(create, "later-kept")

    with caplog.at_level(logging.ERROR, logger="pipeline.orchestration.writer"):
        writer.close()

    assert list(Pipeline.objects.values_list("name", flat=True)) == ["later-kept"]
    assert "create_then_fail" in caplog.text and "later-lost cannot be stored" in caplog.text


def test_a_closed_writer_refuses_new_writes_instead_of_leaving_them_waiting():
    writer = Writer().start()
    writer.close()

    with pytest.raises(RuntimeError, match="writer is closed"):
        writer.run(create, "too-late")
