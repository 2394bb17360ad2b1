"""Round-trip latency of one step call: RpcClient + Worker versus a raw pika request/reply loop.

The baseline is the fair minimum for the same guarantees: a durable queue,
persistent messages, publisher confirms on both sides, and an ack after the
reply is confirmed. Both sides JSON-decode and re-encode the payload. The
difference left is the claim/grant hop and the library's threading.

    python bench/rpc_roundtrip.py                     # 300 x 100 B, 50 x 1 MB, writes docs/bench-rpc.md
    python bench/rpc_roundtrip.py --small 50 --large 10 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shepherd_rpc import RpcClient, Worker, protocol  # noqa: E402
from shepherd_rpc.settings import load_settings  # noqa: E402

SIZES = {"100 B": 100, "1 MB": 1_000_000}


def raw_queue(prefix: str) -> str:
    return f"{prefix}.raw.requests"


# -- the two servers (run as subprocesses of this script) ---------------------------


def serve_worker(url: str, prefix: str) -> None:
    worker = Worker(name="bench", url=url, prefix=prefix)

    @worker.step("echo")
    def echo(context: dict, input: object) -> object:
        return input

    worker.run(["--log-level", "WARNING"])


def serve_raw(url: str, prefix: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare(raw_queue(prefix), durable=True)
    channel.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body: bytes) -> None:  # noqa: ANN001 - pika callback
        reply = json.dumps({"output": json.loads(body)["input"]}).encode()
        ch.basic_publish("", props.reply_to, reply,
                         pika.BasicProperties(correlation_id=props.correlation_id, delivery_mode=2))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(raw_queue(prefix), on_request)
    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    channel.start_consuming()
    conn.close()


# -- the two clients ------------------------------------------------------------------


class RawClient:
    """Publish with confirms, wait for the reply on a durable reply queue, ack it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.conn.channel()
        self.channel.confirm_delivery()
        self.request_queue = raw_queue(prefix)
        self.reply_queue = f"{prefix}.raw.replies"
        self.channel.queue_declare(self.request_queue, durable=True)
        self.channel.queue_declare(self.reply_queue, durable=True)
        self.channel.basic_consume(self.reply_queue, self._on_reply)
        self.answer: bytes | None = None
        self.waiting_for = ""

    def _on_reply(self, ch, method, props, body: bytes) -> None:  # noqa: ANN001 - pika callback
        if props.correlation_id == self.waiting_for:
            self.answer = body
        ch.basic_ack(method.delivery_tag)

    def call(self, payload: object) -> object:
        self.waiting_for, self.answer = str(uuid.uuid4()), None
        body = json.dumps({"input": payload}).encode()
        self.channel.basic_publish("", self.request_queue, body, pika.BasicProperties(
            correlation_id=self.waiting_for, reply_to=self.reply_queue, delivery_mode=2))
        while self.answer is None:
            self.conn.process_data_events(time_limit=None)
        return json.loads(self.answer)["output"]

    def close(self) -> None:
        self.channel.queue_delete(self.reply_queue)
        self.channel.queue_delete(self.request_queue)
        self.conn.close()


def measure(args: argparse.Namespace) -> list[dict[str, object]]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    servers = [subprocess.Popen([sys.executable, __file__, mode, "--prefix", prefix,
                                 "--broker-url", args.broker_url], env=env)
               for mode in ("--serve-worker", "--serve-raw")]
    rpc = RpcClient(args.broker_url, prefix=prefix, name="bench").start()
    raw = RawClient(args.broker_url, prefix)
    rows = []
    try:
        deadline = time.monotonic() + 30
        while rpc.consumers("echo") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)

        def rpc_call(payload: object) -> object:
            return rpc.call("echo", context={}, input=payload, timeout=60, wait_limit=30).output

        for label, size in SIZES.items():
            payload = "x" * (size - len('{"input":""}'))
            n = args.small if size < 1000 else args.large
            for _ in range(5):  # warm up connections, JIT-free but cache-warm
                rpc_call(payload), raw.call(payload)
            timings: dict[str, list[float]] = {"raw": [], "rpc": []}
            for _ in range(n):  # interleaved so machine noise hits both alike
                for name, fn in (("raw", raw.call), ("rpc", rpc_call)):
                    t0 = time.perf_counter()
                    assert fn(payload) == payload
                    timings[name].append(time.perf_counter() - t0)
            rows.append({"size": label, "n": n, **{f"{k}_{s}": v for k in timings
                                                    for s, v in stats(timings[k]).items()}})
    finally:
        rpc.close()
        raw.close()
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        cleanup(args.broker_url, prefix)
    return rows


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": statistics.median(ordered) * 1000,
            "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000}


def cleanup(url: str, prefix: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    for name in (protocol.step_queue(prefix, "echo"), protocol.dead_letter_queue(prefix),
                 protocol.reply_queue(prefix, "bench")):
        channel.queue_delete(name)
    for name in (protocol.steps_exchange(prefix), protocol.dead_letter_exchange(prefix)):
        channel.exchange_delete(name)
    conn.close()


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| payload | n | raw pika median | raw p99 | RpcClient median | RpcClient p99 | median ratio "
             "| p99 ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['n']} | {r['raw_median']:.2f} ms | {r['raw_p99']:.2f} ms | "
            f"{r['rpc_median']:.2f} ms | {r['rpc_p99']:.2f} ms | {r['rpc_median'] / r['raw_median']:.2f}x | "
            f"{r['rpc_p99'] / r['raw_p99']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-url", default=load_settings().broker_url)
    parser.add_argument("--small", type=int, default=300, help="iterations with a 100 B payload")
    parser.add_argument("--large", type=int, default=50, help="iterations with a 1 MB payload")
    parser.add_argument("--output", default=str(REPO / "docs" / "bench-rpc.md"))
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_worker:
        return serve_worker(args.broker_url, args.prefix)
    if args.serve_raw:
        return serve_raw(args.broker_url, args.prefix)

    result = table(measure(args))
    print(result)
    if not args.no_write:
        command = "python bench/rpc_roundtrip.py " + " ".join(sys.argv[1:])
        Path(args.output).write_text(report(result, command.strip()))
        print(f"written to {args.output}")


def report(result: str, command: str) -> str:
    return f"""# RPC round trip: RpcClient + Worker vs raw pika

Produced by `{command}` on {time.strftime('%Y-%m-%d')}
({platform.python_implementation()} {platform.python_version()}, pika {pika.__version__},
RabbitMQ on 127.0.0.1, {os.cpu_count()} shared cores). Times are per call, client side.

{result}

What is compared:

- **raw pika**: one client thread publishes a persistent request with publisher confirms to a durable
  queue; the server (a subprocess, prefetch 1) JSON-decodes it, publishes a persistent reply with
  confirms to the client's durable reply queue, then acks. The client acks the reply.
- **RpcClient**: `RpcClient.call("echo", ...)` against a `Worker` subprocess with an echo step,
  through the full protocol (docs/protocol.md).

The protocol costs one extra hop per call: after the request arrives, the worker sends a *claim*
to the client's reply queue and waits for the client's *grant* on its control queue before it runs
the handler. Those two transient messages (no persistence, no confirms) are what buys
"nothing run twice" under redelivery; they are most visible on small payloads, where the broker
round trips dominate. The client also hands each call to its I/O thread and resolves a future,
and both sides validate the envelope.

Runs on a shared, noisy machine: compare the ratios, not the absolute numbers, and expect p99 to
move between runs.
"""


if __name__ == "__main__":
    main()
