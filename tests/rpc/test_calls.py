"""Step calls through RpcClient and a worker subprocess on the real broker."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest

from shepherd_rpc import BrokerUnavailable, NoWorker, RpcClient, StepFailed, StepTimeout, protocol

from .harness import Rpc, open_connection, wait_until


def test_a_call_returns_the_handler_output_and_reports_its_events(rpc: Rpc) -> None:
    # Given a worker and a client
    worker = rpc.worker()
    client = rpc.client()
    events: list[str] = []

    # When a step is called
    result = client.call("echo", context={"project": "p"}, input={"rows": [1, 2]}, timeout=10, wait_limit=10,
                         pipeline_id=7, step_id=3, on_event=lambda kind, payload: events.append(kind))

    # Then the output and the worker come back, and every stage was reported in order
    assert result.output == {"rows": [1, 2]}
    assert result.worker["pid"] == worker.pid and result.worker["name"] == "w1"
    assert events == ["published", "claimed", "replied"]
    assert client.consumers("echo") == 1
    assert client.consumers("no_such_step") == 0


def test_a_handler_exception_arrives_as_step_failed_with_its_traceback(rpc: Rpc) -> None:
    rpc.worker()
    client = rpc.client()

    with pytest.raises(StepFailed) as excinfo:
        client.call("boom", context={}, input=42, timeout=10, wait_limit=10)

    failure = excinfo.value
    assert failure.error_type == "ValueError"
    assert failure.message == "boom: cannot handle 42"
    assert "in boom" in failure.traceback and 'raise ValueError(f"boom' in failure.traceback
    assert failure.worker["name"] == "w1"
    # and the worker keeps serving
    again = client.call("echo", context={}, input="still here", timeout=10, wait_limit=10)
    assert again.output == "still here"


def test_no_worker_fails_within_the_wait_limit_and_a_late_worker_never_runs_it(rpc: Rpc) -> None:
    client = rpc.client()
    call_id = str(uuid.uuid4())

    # When nobody consumes the step
    with pytest.raises(NoWorker, match="no worker is consuming 'echo' \\(waited 2 s\\)"):
        client.call("echo", context={}, input={"token": "late"}, timeout=30, wait_limit=2, call_id=call_id)

    # Then a worker started afterwards gets the request, is refused, and drops it without running it
    worker = rpc.worker()
    wait_until(lambda: f"call {call_id} (pipeline None, attempt 1): the client refused" in worker.log(), 20,
               "the late worker to be refused")
    assert worker.done_tokens() == []
    assert client.call("echo", context={}, input="next", timeout=10, wait_limit=10).output == "next"


def test_a_timed_out_call_raises_and_its_late_reply_is_dropped(
    rpc: Rpc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="shepherd_rpc.client")
    rpc.worker()
    client = rpc.client()
    call_id = str(uuid.uuid4())

    with pytest.raises(StepTimeout, match="no reply within 1 s"):
        client.call("slow", context={}, input={"token": "t1", "seconds": 2.5}, timeout=1, wait_limit=10,
                    call_id=call_id)

    # The reply that comes after the timeout is dropped, not handed to anyone else
    wait_until(lambda: f"dropped reply for ended call {call_id}" in caplog.text, 20, "the late reply")
    result = client.call("echo", context={}, input={"mine": 1}, timeout=10, wait_limit=10)
    assert result.output == {"mine": 1}
    assert result.call_id != call_id


def _oversize_request() -> bytes:
    request = protocol.Request(str(uuid.uuid4()), "echo", 1, None, None, {}, "x" * 4096, time.time() + 60)
    return protocol.encode(request)


@pytest.mark.parametrize("poison, complaint, env", [
    (b"\x00\x01 not a shepherd envelope " + uuid.uuid4().hex.encode(), "message body is not JSON", {}),
    (b'{"v": 9, "type": "request"}', "unsupported protocol version 9", {}),
    (_oversize_request(), "exceeds SHEPHERD_MAX_MESSAGE_BYTES=2048", {"SHEPHERD_MAX_MESSAGE_BYTES": "2048"}),
], ids=["not-json", "unknown-version", "oversize"])
def test_a_poison_message_is_dead_lettered_and_the_worker_keeps_answering(
    rpc: Rpc, poison: bytes, complaint: str, env: dict[str, str]
) -> None:
    worker = rpc.worker(env=env)
    client = rpc.client()

    conn = open_connection()
    try:
        channel = conn.channel()
        channel.basic_publish(protocol.steps_exchange(rpc.prefix), "echo", poison,
                              pika.BasicProperties(reply_to=protocol.reply_queue(rpc.prefix, "tests")))

        def poison_in_dead_letters() -> bool:
            method, _props, body = channel.basic_get(protocol.dead_letter_queue(rpc.prefix), auto_ack=True)
            return method is not None and body == poison

        wait_until(poison_in_dead_letters, 20, "the poison message in the dead-letter queue")
    finally:
        conn.close()

    assert any("dead-lettering a request" in line and complaint in line for line in worker.log().splitlines())
    assert client.call("echo", context={}, input="alive", timeout=10, wait_limit=10).output == "alive"


def test_many_calls_in_flight_from_many_threads_each_get_their_own_answer(rpc: Rpc) -> None:
    rpc.worker(concurrency=4)
    client = rpc.client()
    seen_threads: set[str] = set()

    def one_call(i: int) -> object:
        seen_threads.add(threading.current_thread().name)
        payload = {"i": i, "pad": "x" * (i * 37)}
        return client.call("echo", context={"i": i}, input=payload, timeout=30, wait_limit=30).output

    with ThreadPoolExecutor(30) as pool:
        outputs = list(pool.map(one_call, range(150)))

    assert outputs == [{"i": i, "pad": "x" * (i * 37)} for i in range(150)]
    assert len(seen_threads) > 1


def test_sigterm_lets_the_step_in_flight_finish_then_the_worker_exits_zero(rpc: Rpc) -> None:
    worker = rpc.worker()
    client = rpc.client()
    future = client.submit("slow", context={}, input={"token": "term", "seconds": 2}, timeout=30,
                           wait_limit=30)
    wait_until(lambda: ("start", "term") in worker.runs(), 20, "the handler to start")

    worker.proc.send_signal(signal.SIGTERM)

    assert future.result(timeout=30).output == {"token": "term", "slept": 2}
    assert worker.proc.wait(30) == 0
    assert worker.runs() == [("start", "term"), ("done", "term")]


def test_an_unreachable_broker_fails_start_with_broker_unavailable_not_a_pika_error() -> None:
    client = RpcClient("amqp://guest:guest@127.0.0.1:1/%2F", prefix="unused", connect_timeout=1)

    with pytest.raises(BrokerUnavailable, match="cannot connect to the broker at amqp://127.0.0.1:1/") as e:
        client.start()

    assert "SHEPHERD_BROKER_URL" in str(e.value)
    assert e.value.__cause__ is not None
