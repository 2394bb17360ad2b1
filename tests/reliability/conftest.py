"""Fixtures for the reliability suite: a daemon and two demo workers under load, and an API client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from tests.factories import token_for
from tests.support.load import Cluster
from tests.support.processes import Processes


@pytest.fixture
def procs(tmp_path, request) -> Iterator[Processes]:
    group = Processes(tmp_path)
    yield group
    group.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(group.logs())


@pytest.fixture
def cluster(procs: Processes, request) -> Cluster:
    """One daemon (named after the test, so a restart resumes its own pipelines) and two workers."""
    return Cluster(procs, workers=2, concurrency=8, daemon_name=f"rel-{request.node.name[:40]}")


@pytest.fixture
def token() -> str:
    return token_for("load")


@pytest.fixture
def api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client
