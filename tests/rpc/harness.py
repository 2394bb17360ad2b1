"""Helpers for the RPC tests: worker subprocesses, clients, clean-up, and bounded waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from shepherd_rpc import RpcClient, protocol
from tests.support.waiting import wait_until  # noqa: F401 - shared with the rpc tests

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
BROKER_URL = os.environ.get("SHEPHERD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SESSION = f"test-{uuid.uuid4().hex[:8]}"

#: Step queues the test workers serve; deleted after each test.
TEST_STEPS = ("echo", "slow", "boom")


def open_connection() -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    except pika.exceptions.AMQPConnectionError as e:
        pytest.fail(f"RabbitMQ is not reachable at {BROKER_URL}: start it (`rabbitmq-server -detached`) "
                    f"or set SHEPHERD_BROKER_URL; these tests need the real broker ({e!r})")


def _delete_names(prefix: str, client_names: list[str]) -> None:
    conn = open_connection()
    try:
        ch = conn.channel()
        queues = [protocol.step_queue(prefix, s) for s in TEST_STEPS]
        queues.append(protocol.dead_letter_queue(prefix))
        queues += [protocol.reply_queue(prefix, n) for n in client_names]
        for name in queues:
            ch.queue_delete(name)
        for name in (protocol.steps_exchange(prefix), protocol.dead_letter_exchange(prefix)):
            ch.exchange_delete(name)
    finally:
        conn.close()


@dataclass
class WorkerProcess:
    """A worker subprocess running tests/rpc/workers/steps_worker.py."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    run_log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def runs(self) -> list[tuple[str, str]]:
        """(event, token) lines the handlers recorded: event is "start" or "done"."""
        if not self.run_log.exists():
            return []
        return [tuple(line.split()[:2]) for line in self.run_log.read_text().splitlines() if line.strip()]

    def done_tokens(self) -> list[str]:
        return [token for event, token in self.runs() if event == "done"]

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def count_done(workers: list[WorkerProcess]) -> Counter[str]:
    """How many times each token's handler ran to completion, across workers."""
    return Counter(token for w in workers for token in w.done_tokens())


class Rpc:
    def __init__(self, prefix: str, tmp_path: Path) -> None:
        self.prefix = prefix
        self.tmp_path = tmp_path
        self.clients: list[RpcClient] = []
        self.workers: list[WorkerProcess] = []

    def client(self, name: str = "tests", *, lease_timeout: float = 15.0, start: bool = True,
               **kwargs: Any) -> RpcClient:
        client = RpcClient(BROKER_URL, prefix=self.prefix, name=name, lease_timeout=lease_timeout, **kwargs)
        self.clients.append(client)
        return client.start() if start else client

    def worker(self, name: str = "w1", *, lease_timeout: float = 15.0, concurrency: int = 1,
               heartbeat: int | None = None, wait_ready: bool = True,
               env: dict[str, str] | None = None) -> WorkerProcess:
        env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO), "SHEPHERD_BROKER_URL": BROKER_URL,
               "SHEPHERD_AMQP_PREFIX": self.prefix, "SHEPHERD_LEASE_TIMEOUT": str(lease_timeout),
               "RPC_TEST_WORKER_NAME": name, "RPC_TEST_RUN_LOG": str(self.tmp_path / f"{name}.runs")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        if heartbeat is not None:
            env["SHEPHERD_HEARTBEAT"] = str(heartbeat)
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(WORKERS / "steps_worker.py"), "--concurrency", str(concurrency)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp_path,
            )
        w = WorkerProcess(name, proc, log_path, self.tmp_path / f"{name}.runs")
        self.workers.append(w)
        if wait_ready:
            wait_until(lambda: "connected; serving" in w.log() or proc.poll() is not None, 30,
                       f"worker {name} to connect")
            assert proc.poll() is None, f"worker {name} exited early:\n{w.log()}"
        return w

    def teardown(self) -> None:
        for client in self.clients:
            client.close()
        for w in self.workers:
            w.stop()
        _delete_names(self.prefix, [c.name for c in self.clients])
