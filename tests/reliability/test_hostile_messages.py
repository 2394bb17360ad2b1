"""Raw messages published straight to a step queue the demo worker serves never crash it, never
run a handler they should not, and the worker keeps answering real requests afterwards.

Already pinned in tests/rpc/test_calls.py
(test_a_poison_message_is_dead_lettered_and_the_worker_keeps_answering): bodies that are not
JSON, an unknown protocol version, and a body over SHEPHERD_MAX_MESSAGE_BYTES. Here: the cases an
attacker with publish rights on the broker would try next, against the real demo worker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
from django.conf import settings

from shepherd_rpc import RpcClient, protocol
from tests.conftest import BROKER_URL, open_channel
from tests.support.load import recorded_runs
from tests.support.processes import Processes, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(procs: Processes):
    procs.env["DEMO_WORKER_LOG"] = str(procs.workdir / "calls.jsonl")
    process = procs.demo_worker(concurrency=2)
    wait_until(lambda: "serving" in (procs.workdir / "worker.log").read_text(errors="replace")
               or process.poll() is not None, timeout=30, what="the demo worker to connect")
    assert process.poll() is None, procs.logs()
    return process


@pytest.fixture
def client() -> Iterator[RpcClient]:
    with RpcClient(BROKER_URL, prefix=settings.SHEPHERD_AMQP_PREFIX, name=f"probe-{uuid.uuid4().hex[:6]}",
                   lease_timeout=5) as rpc:
        yield rpc


def request(step: str, *, context: object = None, input: object = None, call_id: str | None = None) -> dict:
    return {"v": protocol.VERSION, "type": "request", "call_id": call_id or f"forged-{uuid.uuid4().hex}",
            "step": step, "attempt": 1, "pipeline_id": 0, "step_id": 0, "context": context or {},
            "input": input, "deadline": time.time() + 30}


def publish_raw(body: bytes, reply_to: str, routing_key: str = "noop") -> None:
    connection, channel = open_channel()
    try:
        channel.basic_publish(protocol.steps_exchange(settings.SHEPHERD_AMQP_PREFIX), routing_key, body,
                              pika.BasicProperties(reply_to=reply_to, delivery_mode=2))
    finally:
        connection.close()


def dead_letter_with(marker: bytes) -> bool:
    """Whether a message containing ``marker`` is in the dead-letter queue (reads it off)."""
    connection, channel = open_channel()
    try:
        queue = protocol.dead_letter_queue(settings.SHEPHERD_AMQP_PREFIX)
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return False
            if marker in body:
                return True
    finally:
        connection.close()


def log_of(procs: Processes) -> str:
    return (procs.workdir / "worker.log").read_text(errors="replace")


def assert_still_answers(client: RpcClient, worker, procs: Processes) -> None:
    assert worker.poll() is None, procs.logs()
    result = client.call("noop", context={"tag": "after"}, input="alive", timeout=20, wait_limit=20)
    assert result.output == "alive"


def test_a_forged_step_name_on_a_served_queue_is_dead_lettered_and_never_run(worker, client, procs):
    body = json.dumps(request("fail", context={"tag": "forged"}) | {"step": "rm_rf"}).encode()

    publish_raw(body, protocol.reply_queue(settings.SHEPHERD_AMQP_PREFIX, client.name))

    wait_until(lambda: dead_letter_with(b'"rm_rf"'), timeout=20,
               what="the forged request to be dead-lettered")
    assert "step 'rm_rf' is not served by worker" in log_of(procs)
    assert_still_answers(client, worker, procs)
    assert "forged" not in json.dumps(list(recorded_runs(procs.workdir / "calls.jsonl")))


@pytest.mark.parametrize("context", [[1, 2], "rm -rf /", 42, None], ids=["list", "string", "number", "null"])
def test_a_request_whose_context_is_not_an_object_is_dead_lettered(worker, client, procs, context):
    body = json.dumps(request("noop") | {"context": context, "input": "marker-" + uuid.uuid4().hex}).encode()
    marker = json.loads(body)["input"].encode()

    publish_raw(body, protocol.reply_queue(settings.SHEPHERD_AMQP_PREFIX, client.name))

    wait_until(lambda: dead_letter_with(marker), timeout=20, what="the bad request to be dead-lettered")
    assert "dead-lettering a request" in log_of(procs)
    assert_still_answers(client, worker, procs)


def test_a_request_with_a_huge_input_for_an_unknown_call_is_refused_and_never_run(worker, client, procs):
    """8 MB of input, under the worker's size limit: it is claimed, the client knows no such call
    and refuses it, and the worker drops it without running the handler."""
    call_id = f"forged-{uuid.uuid4().hex}"
    body = json.dumps(request("noop", context={"tag": call_id}, input="x" * (8 * 1024 * 1024),
                              call_id=call_id)).encode()

    publish_raw(body, protocol.reply_queue(settings.SHEPHERD_AMQP_PREFIX, client.name))

    wait_until(lambda: call_id in log_of(procs), timeout=30, what="the worker to log the refused call")
    assert_still_answers(client, worker, procs)
    assert call_id not in {tag for tag in recorded_runs(procs.workdir / "calls.jsonl")}


def test_a_request_with_a_wrong_protocol_version_for_a_served_step_is_dead_lettered(worker, client, procs):
    body = json.dumps(request("noop") | {"v": 2, "input": "v2-" + uuid.uuid4().hex}).encode()
    marker = json.loads(body)["input"].encode()

    publish_raw(body, protocol.reply_queue(settings.SHEPHERD_AMQP_PREFIX, client.name))

    wait_until(lambda: dead_letter_with(marker), timeout=20, what="the v2 request to be dead-lettered")
    assert "unsupported protocol version 2" in log_of(procs)
    assert_still_answers(client, worker, procs)
