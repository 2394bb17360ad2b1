"""Helpers for end-to-end pipeline tests: a real S3-compatible server (moto), submitting a pipeline
through the API, and waiting for it to finish."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.processes import Processes, wait_until

FINAL = {"succeeded", "failed", "cancelled"}
#: dummy credentials moto accepts; boto3 reads them from the environment
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's standalone S3 server as a child process; ``env(bucket)`` configures a client of it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        handle = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                         "-p", str(self.port)], stdout=handle, stderr=subprocess.STDOUT)
        wait_until(self._up, timeout=30, what=f"moto server on {self.url} (log {self.log})")
        return self

    def _up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"moto server exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(self.url, timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def env(self, bucket: str, **more: str) -> dict[str, str]:
        return {**S3_CREDENTIALS, "SHEPHERD_S3_ENDPOINT_URL": self.url, "SHEPHERD_S3_BUCKET": bucket,
                "SHEPHERD_S3_REGION": "us-east-1", **more}

    def new_bucket(self) -> str:
        import boto3

        name = f"shepherd-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=name)
        return name


def submit(api: Any, body: dict[str, Any]) -> int:
    response = api.post("/api/pipelines/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def calls(procs: Processes) -> list[dict[str, Any]]:
    """The calls the demo worker noted (DEMO_WORKER_LOG), in order."""
    path = procs.workdir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def final(api: Any, pipeline_id: int, procs: Processes, timeout: float = 60) -> dict[str, Any]:
    """The pipeline once it is final; on a timeout, the processes' logs are printed."""
    def done() -> dict[str, Any] | None:
        body = api.get(f"/api/pipelines/{pipeline_id}/").json()
        return body if body["status"] in FINAL else None

    try:
        return wait_until(done, timeout=timeout, what=f"pipeline {pipeline_id} to finish")
    except AssertionError:
        print(procs.logs())
        raise
