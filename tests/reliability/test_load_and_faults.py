"""Eight clients submit pipelines of three no-op steps to a daemon and two workers, with and
without one fault at a time; every pipeline must end final and no step may run twice.

Sizes are bounded for CI; bench/reliability.py runs the same scenarios bigger.
"""

from __future__ import annotations

import pytest

from tests.support.load import (
    Cluster,
    Outcome,
    close_all_broker_connections,
    django_client_poster,
    kill_a_worker,
    kill_and_restart_the_daemon,
    restart_the_broker,
    run_scenario,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PIPELINES = 60
CLIENTS = 8


def assert_nothing_lost_and_nothing_ran_twice(outcome: Outcome) -> None:
    print(outcome.summary())
    assert outcome.submitted.statuses == {201: outcome.pipelines}, outcome.submitted.statuses
    assert outcome.lost == 0, outcome.summary()
    assert outcome.ran_twice == {}, outcome.ran_twice
    assert outcome.never_ran == set() or outcome.statuses["failed"], outcome.never_ran


def test_sixty_pipelines_from_eight_clients_all_succeed_and_each_step_runs_once(cluster: Cluster, token):
    outcome = run_scenario(cluster, django_client_poster(token), run="load", pipelines=PIPELINES,
                           clients=CLIENTS)

    assert_nothing_lost_and_nothing_ran_twice(outcome)
    assert outcome.statuses == {"succeeded": PIPELINES}
    assert outcome.attempts_over_one == 0
    assert sum(outcome.runs.values()) == PIPELINES * 3


def test_killing_a_worker_under_load_loses_nothing_and_runs_nothing_twice(cluster: Cluster, token):
    outcome = run_scenario(cluster, django_client_poster(token), run="kill-worker", pipelines=PIPELINES,
                           clients=CLIENTS, fault=kill_a_worker)

    assert_nothing_lost_and_nothing_ran_twice(outcome)
    assert outcome.statuses == {"succeeded": PIPELINES}, outcome.errors
    # Only the steps the killed worker held when it died run again, each once on the survivor.
    assert outcome.rerun_after_a_kill <= cluster.concurrency, outcome.summary()


def test_closing_every_broker_connection_under_load_loses_nothing_and_runs_nothing_twice(
        cluster: Cluster, token):
    outcome = run_scenario(cluster, django_client_poster(token), run="close-conns", pipelines=PIPELINES,
                           clients=CLIENTS, fault=close_all_broker_connections)

    assert_nothing_lost_and_nothing_ran_twice(outcome)
    assert outcome.statuses == {"succeeded": PIPELINES}, outcome.errors


def test_killing_the_daemon_under_load_and_restarting_it_still_succeeds_every_pipeline(
        cluster: Cluster, token):
    outcome = run_scenario(cluster, django_client_poster(token), run="kill-daemon", pipelines=PIPELINES,
                           clients=CLIENTS, fault=kill_and_restart_the_daemon)

    assert_nothing_lost_and_nothing_ran_twice(outcome)
    assert outcome.statuses == {"succeeded": PIPELINES}, outcome.errors


def test_restarting_rabbitmq_under_load_loses_nothing_and_runs_nothing_twice(cluster: Cluster, token):
    """Stops the whole broker for ~2 s: every other user of this RabbitMQ notices. One short test."""
    outcome = run_scenario(cluster, django_client_poster(token), run="broker-restart", pipelines=40,
                           clients=CLIENTS, fault=restart_the_broker)

    assert_nothing_lost_and_nothing_ran_twice(outcome)
    assert outcome.statuses == {"succeeded": 40}, outcome.errors
