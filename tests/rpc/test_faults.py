"""Delivery guarantees under faults: competing workers, kill -9, long steps, dropped connections."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from concurrent.futures import Future

import pytest

from shepherd_rpc import RpcError, StepResult, protocol

from .harness import Rpc, count_done, open_connection, wait_until


def test_two_workers_share_a_step_and_answer_each_request_once(rpc: Rpc) -> None:
    workers = [rpc.worker("w1"), rpc.worker("w2")]
    client = rpc.client()
    tokens = [f"tok-{i}" for i in range(50)]

    futures = [client.submit("echo", context={}, input={"token": t, "sleep": 0.02}, timeout=30, wait_limit=30)
               for t in tokens]
    outputs = [f.result(timeout=60).output["token"] for f in futures]

    assert outputs == tokens
    assert count_done(workers) == {t: 1 for t in tokens}
    assert all(w.done_tokens() for w in workers), "both workers should have served requests"


def test_a_worker_killed_mid_step_is_replaced_and_the_step_completes_once(rpc: Rpc) -> None:
    # Given two workers of a slow step and a short lease
    workers = {w.pid: w for w in (rpc.worker("w1", lease_timeout=3), rpc.worker("w2", lease_timeout=3))}
    client = rpc.client(lease_timeout=3)
    claimed: list[int] = []
    first_claim = threading.Event()

    def on_event(kind: str, payload: dict) -> None:
        if kind == "claimed":
            claimed.append(payload["pid"])
            first_claim.set()

    # When the worker running it is killed with SIGKILL mid-step
    future = client.submit("slow", context={}, input={"token": "k1", "seconds": 3}, timeout=60, wait_limit=30,
                           on_event=on_event)
    assert first_claim.wait(30), "no worker claimed the request"
    victim = workers[claimed[0]]
    wait_until(lambda: ("start", "k1") in victim.runs(), 20, "the handler to start")
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait(10)

    # Then the other worker gets the redelivered request, and the step completes exactly once
    result = future.result(timeout=60)
    survivor = next(w for pid, w in workers.items() if pid != victim.pid)
    assert result.worker["pid"] == survivor.pid
    assert claimed == [victim.pid, survivor.pid]
    assert victim.runs() == [("start", "k1")]
    assert survivor.runs() == [("start", "k1"), ("done", "k1")]


def test_a_step_longer_than_three_heartbeat_intervals_completes(rpc: Rpc) -> None:
    worker = rpc.worker(heartbeat=2)
    client = rpc.client()

    result = client.call("slow", context={}, input={"token": "hb", "seconds": 7}, timeout=60, wait_limit=30)

    assert result.output == {"token": "hb", "slept": 7}
    assert worker.runs() == [("start", "hb"), ("done", "hb")]
    assert "lost its broker connection" not in worker.log(), "heartbeats stopped during the step"


def test_forced_connection_drops_mid_run_lose_nothing_and_run_nothing_twice(rpc: Rpc) -> None:
    # Given two workers, a client, and 20 calls in flight
    workers = [rpc.worker(name, lease_timeout=5, concurrency=2) for name in ("w1", "w2")]
    client = rpc.client(lease_timeout=5)
    claimed = threading.Semaphore(0)
    tokens = [f"drop-{i}" for i in range(20)]
    futures: list[Future[StepResult]] = [
        client.submit("echo", context={}, input={"token": t, "sleep": 0.4}, timeout=60, wait_limit=60,
                      on_event=lambda kind, _p: claimed.release() if kind == "claimed" else None)
        for t in tokens
    ]
    assert claimed.acquire(timeout=30), "nothing was claimed"

    # When the broker drops every connection
    subprocess.run(["rabbitmqctl", "close_all_connections", "shepherd_rpc fault test"], check=True,
                   capture_output=True, timeout=60)

    # Then client and workers reconnect and every call completes exactly once
    outputs = [f.result(timeout=75).output["token"] for f in futures]
    assert outputs == tokens
    assert count_done(workers) == {t: 1 for t in tokens}
    assert all("lost its broker connection" in w.log() for w in workers), "the drop did not reach the workers"
    assert client.call("echo", context={}, input="after", timeout=30, wait_limit=30).output == "after"


def test_a_restarted_client_resumes_a_call_and_gets_its_reply(rpc: Rpc) -> None:
    # Given a call claimed by a worker, and the client that sent it goes away
    worker = rpc.worker(lease_timeout=3)
    first = rpc.client("daemon", lease_timeout=3)
    claimed = threading.Event()
    call_id = str(uuid.uuid4())
    future = first.submit("slow", context={}, input={"token": "r1", "seconds": 2}, timeout=30, wait_limit=30,
                          call_id=call_id,
                          on_event=lambda kind, _p: claimed.set() if kind == "claimed" else None)
    assert claimed.wait(30)
    first.close()
    with pytest.raises(RpcError, match="closed while the call was pending"):
        future.result(timeout=5)

    # When a new client with the same name resumes the call before it starts consuming
    second = rpc.client("daemon", lease_timeout=3, start=False)
    resumed = second.resume(call_id, timeout=30, wait_limit=30)
    second.start()

    # Then it gets the reply the worker sent, and the step ran once
    result = resumed.result(timeout=30)
    assert result.output == {"token": "r1", "slept": 2} and result.call_id == call_id
    assert worker.runs() == [("start", "r1"), ("done", "r1")]


def test_a_reply_not_settled_before_the_client_died_reaches_the_restarted_client(rpc: Rpc) -> None:
    # Given a client that settles replies only once it has recorded them, and a finished call
    worker = rpc.worker()
    first = rpc.client("settling", settle_replies=True)
    call_id = str(uuid.uuid4())
    assert first.call("echo", context={}, input={"token": "s1"}, timeout=30, wait_limit=30,
                      call_id=call_id).output == {"token": "s1"}

    # When it goes away before settling (it died before recording the result)
    first.close()

    # Then the same client name, restarted, gets the reply again without running the step again
    second = rpc.client("settling", settle_replies=True, start=False)
    resumed = second.resume(call_id, timeout=30, wait_limit=30)
    second.start()
    assert resumed.result(timeout=30).output == {"token": "s1"}
    second.settle(call_id)
    assert count_done([worker]) == {"s1": 1}


def test_a_worker_whose_queue_is_deleted_declares_it_again_and_keeps_serving(rpc: Rpc) -> None:
    # Given a worker consuming its step's queue
    worker = rpc.worker("w1")

    # When an operator deletes the queue under it
    conn = open_connection()
    conn.channel().queue_delete(protocol.step_queue(rpc.prefix, "echo"))
    conn.close()

    # Then the worker notices the broker cancelled its consumer, consumes again, and answers
    wait_until(lambda: worker.log().count("connected; serving") >= 2, 30, "the worker to consume again")
    assert "the broker cancelled its consumer" in worker.log()
    client = rpc.client("after-delete")
    assert client.call("echo", context={}, input={"token": "back"}, timeout=30, wait_limit=30).output == {
        "token": "back"}


def test_a_request_the_broker_refused_to_route_is_published_again_once_the_topology_is_back(rpc: Rpc) -> None:
    # Given a client that has already called the step, so it holds its queue as declared
    worker = rpc.worker("w1")
    client = rpc.client()
    assert client.call("echo", context={}, input={"token": "before"}, timeout=30, wait_limit=30)

    # When an operator deletes the steps exchange, and the next request is published to it
    conn = open_connection()
    conn.channel().exchange_delete(protocol.steps_exchange(rpc.prefix))
    conn.close()
    result = client.call("echo", context={}, input={"token": "after"}, timeout=30, wait_limit=30)

    # Then the broker's closing of the publishing channel makes the client reconnect, declare the
    # exchange and binding again and publish the unconfirmed request once more: it runs once
    assert result.output == {"token": "after"}
    assert count_done([worker]) == {"before": 1, "after": 1}
