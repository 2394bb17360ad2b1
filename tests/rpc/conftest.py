"""Fixtures for the RPC tests: a fresh AMQP prefix per test, and the ``rpc`` harness.

Everything talks to the real RabbitMQ. Each test gets its own prefix
(``test-<session uuid>-<n>``) and deletes its queues and exchanges afterwards,
so concurrent sessions on the same broker never see each other's messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import SESSION, Rpc

_counter = itertools.count(1)


@pytest.fixture
def prefix() -> str:
    return f"{SESSION}-{next(_counter)}"


@pytest.fixture
def rpc(prefix: str, tmp_path: Path) -> Iterator[Rpc]:
    """Clients and workers for one test on its own prefix; everything is stopped and deleted after."""
    harness = Rpc(prefix, tmp_path)
    try:
        yield harness
    finally:
        harness.teardown()
