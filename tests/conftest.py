"""Shared fixtures. Tests talk to the real RabbitMQ (and PostgreSQL when DATABASE_URL says so).

The test run's own AMQP prefix and state directory come from shepherd/test_settings.py.
"""

from __future__ import annotations

import os
import subprocess

import pika
import pika.exceptions
import pytest
from rest_framework.test import APIClient

from tests.factories import token_for
from tests.support.processes import Processes

BROKER_URL = os.environ.get("SHEPHERD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PREFIX = os.environ.get("SHEPHERD_AMQP_PREFIX", "")
HOW_TO_START = (
    "RabbitMQ is not reachable at {url}: start it with `rabbitmq-server -detached` "
    "(or set SHEPHERD_BROKER_URL). These tests need the real broker and do not skip."
)


def open_channel() -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    except pika.exceptions.AMQPConnectionError as exc:
        pytest.fail(HOW_TO_START.format(url=BROKER_URL) + f" ({exc!r})")
    return connection, connection.channel()


@pytest.fixture
def amqp_channel():
    """A plain channel on the real broker, for looking at queues from the outside."""
    connection, channel = open_channel()
    yield channel
    if connection.is_open:
        connection.close()


def _session_queues() -> list[str]:
    if not PREFIX.startswith("test-"):
        return []
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "--quiet", "--no-table-headers", "name"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout
    return [name.strip() for name in out.splitlines() if name.strip().startswith(f"{PREFIX}.")]


@pytest.fixture(scope="session", autouse=True)
def _delete_session_queues():
    yield
    try:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    except pika.exceptions.AMQPError:
        return
    channel = connection.channel()
    for name in _session_queues():
        channel.queue_delete(name)
    connection.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can print logs of a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def procs(tmp_path, request):
    """The daemon and workers of one test, as processes; their logs are printed if it fails.

    The demo worker notes each call it handles in ``calls.jsonl`` (see tests.support.pipelines.calls).
    """
    group = Processes(tmp_path)
    group.env["DEMO_WORKER_LOG"] = str(tmp_path / "calls.jsonl")
    group.env["SHEPHERD_DAEMON_NAME"] = f"test-{request.node.name[:40]}"
    for name in ("SHEPHERD_ARTIFACT_BACKEND", "SHEPHERD_ARTIFACT_DIR", "SHEPHERD_S3_PREFIX"):
        group.env.pop(name, None)
    yield group
    group.stop_all()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(group.logs())


@pytest.fixture
def api() -> APIClient:
    """An API client with a token, allowed to write."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for()}")
    return client
