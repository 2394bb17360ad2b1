"""What running pipelines *inside* Prefect would cost, measured in-process against the RPC call.

The orchestrator keeps Prefect off the critical path (a background mirror). The naive design
would make each pipeline a real Prefect ``@flow`` and each step a tracked ``@task`` around one
RPC call. This measures, in one process and one run, round-robin so noise hits all alike:

* raw pika: bench/rpc_roundtrip.py's request/reply loop, S round trips;
* rpc: S ``RpcClient.call("echo")`` against an rpc_roundtrip echo worker, no Prefect;
* flow + plain calls: the same S calls inside one sync ``@flow``;
* flow + task per step: one sync ``@flow`` whose S steps are ``@task``s each making one call;
* empty sync flow / empty async flow: the fixed cost of a flow run alone.

Prefect talks to the server at PREFECT_API_URL when set, else to its own temporary (ephemeral)
server under a fresh PREFECT_HOME.

    python bench/prefect_options.py                  # 30 rounds of 5-step pipelines
    python bench/prefect_options.py --rounds 10 --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _support
from _support import REPO, RawBaseline, median, ms, percentile

logger = logging.getLogger("bench.prefect_options")

Variant = Callable[[], None]


def build_variants(rpc: Any, raw: RawBaseline, steps: int) -> dict[str, Variant]:
    """One callable per design, each running one S-step 'pipeline' (or one empty flow)."""
    from prefect import flow, task

    def call() -> None:
        rpc.call("echo", context={}, input="x" * 50, timeout=60, wait_limit=30)

    @task(name="step")
    def step_task() -> None:
        call()

    @flow(name="bench-plain")
    def flow_plain() -> None:
        for _ in range(steps):
            call()

    @flow(name="bench-tasks")
    def flow_tasks() -> None:
        for _ in range(steps):
            step_task()

    @flow(name="bench-empty-sync")
    def empty_sync() -> None:
        return None

    @flow(name="bench-empty-async")
    async def empty_async() -> None:
        return None

    def rpc_steps() -> None:
        for _ in range(steps):
            call()

    return {
        "raw pika": lambda: raw.sample(steps, keep=False) and None,
        "rpc (no Prefect)": rpc_steps,
        "@flow + plain calls": flow_plain,
        "@flow + @task per step": flow_tasks,
        "empty sync @flow": empty_sync,
        "empty async @flow": lambda: asyncio.run(empty_async()),
    }


def measure(variants: dict[str, Variant], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Round-robin: each round runs every variant once, so slow spells of the machine are shared."""
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(warmup + rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            if index >= warmup:
                timings[name].append(time.perf_counter() - started)
        logger.info("round %d/%d done", index + 1, warmup + rounds)
    return timings


def table(timings: dict[str, list[float]], steps: int) -> str:
    rpc = median(timings["rpc (no Prefect)"])
    lines = [f"| design | per pipeline p50 ({steps} steps or one empty flow) | p99 | per step p50 "
             "| extra vs rpc, per pipeline p50 | ratio vs rpc |", "|---|---:|---:|---:|---:|---:|"]
    for name, samples in timings.items():
        p50 = median(samples)
        per_step = ms(p50 / steps) if "empty" not in name else "-"
        lines.append(f"| {name} | {ms(p50)} | {ms(percentile(samples, .99))} | {per_step} "
                     f"| {ms(p50 - rpc)} | {p50 / rpc:.2f}x |")
    return "\n".join(lines)


def wait_for_worker(rpc: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while rpc.consumers("echo") < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the echo worker did not start")
        time.sleep(0.1)


def run(args: argparse.Namespace, prefix: str) -> str:
    from shepherd_rpc import RpcClient

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen([sys.executable, str(REPO / "bench" / "rpc_roundtrip.py"), "--serve-worker",
                               "--prefix", prefix, "--broker-url", args.broker_url], env=env)
    raw = RawBaseline(args.broker_url, prefix, env)
    rpc = RpcClient(args.broker_url, prefix=prefix, name="bench").start()
    try:
        wait_for_worker(rpc)
        timings = measure(build_variants(rpc, raw, args.steps), args.rounds, args.warmup)
    finally:
        rpc.close()
        raw.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        _support.rpc_roundtrip.cleanup(args.broker_url, prefix)
    return table(timings, args.steps)


def prefect_mode() -> str:
    url = os.environ.get("PREFECT_API_URL")
    return f"server at {url}" if url else "ephemeral (no PREFECT_API_URL)"


def report(result: str, args: argparse.Namespace) -> str:
    import prefect

    return (f"`{_support.command_line()}` ({time.strftime('%Y-%m-%d %H:%M')}; Prefect {prefect.__version__}, "
            f"{prefect_mode()}; {args.rounds} rounds after {args.warmup} warm-up, round-robin; "
            f"code {_support.code_version()}):\n\n{result}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--steps", type=int, default=5, help="steps (RPC calls) per pipeline")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="rounds not counted (server start, caches)")
    parser.add_argument("--broker-url", default=os.environ.get("SHEPHERD_BROKER_URL",
                                                               "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--markdown", action="store_true",
                        help=f"write the table into {_support.DOC.relative_to(REPO)}")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="shepherd-bench-prefect-"))
    os.environ.setdefault("PREFECT_HOME", str(home))  # before prefect is imported
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        result = report(run(args, f"bench-prefect-{uuid.uuid4().hex[:8]}"), args)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(result)
    if args.markdown:
        mode = "server" if os.environ.get("PREFECT_API_URL") else "ephemeral"
        _support.write_section(f"prefect-options-{mode}", result)


if __name__ == "__main__":
    main()
