"""Load and fault scenarios shared by tests/reliability and bench/reliability.py.

A scenario submits pipelines of no-op steps from several concurrent clients to a running daemon
and demo workers (started through :class:`~tests.support.processes.Processes`), optionally
injects one fault while they run, waits until every pipeline is final and then checks the two
promises that matter: nothing was lost, and no step ran twice. Each step carries a unique context
tag (``p17-s2``) so the demo worker's call log (``DEMO_WORKER_LOG``) shows every run of it.

The helpers only read the database and the call log; they never assert on timings, because the
tests share two noisy cores with other runs. The numbers (steps/s, latency percentiles) are for
the bench to print.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections

from pipeline.models import Pipeline, Step
from tests.support.processes import Processes, wait_until

#: a function that submits one pipeline body and returns (HTTP status, pipeline id or None)
Poster = Callable[[dict], tuple[int, int | None]]
#: a fault: given the running processes, break something and (if needed) repair it
Fault = Callable[["Cluster"], str]

FINAL = {"succeeded", "failed", "cancelled"}

#: short timers so a fault heals within seconds, not the production minutes
FAST_RECOVERY_ENV = {
    "SHEPHERD_LEASE_TIMEOUT": "5",
    "SHEPHERD_SWEEP_INTERVAL": "3",
    "SHEPHERD_PIPELINE_LEASE": "10",
    "SHEPHERD_RETRY_BACKOFF": "0.5",
    "SHEPHERD_LOG_LEVEL": "INFO",
}


def step_tag(pipeline_no: int, step_no: int) -> str:
    return f"p{pipeline_no}-s{step_no}"


def noop_body(run: str, pipeline_no: int, steps: int = 3) -> dict:
    """A pipeline of ``steps`` no-op steps, each tagged uniquely within the run."""
    return {
        "pipeline_name": f"{run}-{pipeline_no}",
        "project": "demo",
        "data_url": "",
        "transformers_list": [
            {"name": "noop", "order_no": s, "context": {"tag": f"{run}:{step_tag(pipeline_no, s)}"}}
            for s in range(1, steps + 1)
        ],
    }


def django_client_poster(token: str) -> Poster:
    """Submit through Django's test client (in-process; one client per thread)."""
    from rest_framework.test import APIClient

    local = threading.local()

    def post(body: dict) -> tuple[int, int | None]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        response = client.post("/api/pipelines/", body, format="json")
        return response.status_code, response.json().get("id") if response.status_code == 201 else None

    return post


def http_poster(base_url: str, token: str, timeout: float = 30) -> Poster:
    """Submit over real HTTP (for gunicorn in the bench)."""
    import urllib.error
    import urllib.request

    def post(body: dict) -> tuple[int, int | None]:
        request = urllib.request.Request(
            f"{base_url}/api/pipelines/", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read()).get("id")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    return post


@dataclass
class Submission:
    statuses: Counter[int] = field(default_factory=Counter)
    ids: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def submit_concurrently(post: Poster, bodies: list[dict], clients: int = 8) -> Submission:
    """POST every body from ``clients`` threads at once; collect statuses, ids and request times."""
    result = Submission()
    lock = threading.Lock()

    def one(body: dict) -> None:
        started = time.perf_counter()
        status, pipeline_id = post(body)
        with lock:
            result.statuses[status] += 1
            result.seconds.append(time.perf_counter() - started)
            if pipeline_id is not None:
                result.ids.append(pipeline_id)

    def run_chunk(chunk: list[dict]) -> None:
        try:
            for body in chunk:
                one(body)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(run_chunk, bodies[i::clients]) for i in range(clients)]:
            future.result()
    return result


def recorded_runs(call_log: Path, *, excluding_pids: frozenset[int] = frozenset()) -> Counter[str]:
    """How many times the demo workers ran each tagged step, leaving out the given processes."""
    if not call_log.exists():
        return Counter()
    runs: Counter[str] = Counter()
    for line in call_log.read_text().splitlines():
        call = json.loads(line)
        tag = call.get("context", {}).get("tag")
        if tag and call.get("pid") not in excluding_pids:
            runs[tag] += 1
    return runs


def unfinished(ids: Iterable[int]) -> int:
    return Pipeline.objects.filter(pk__in=list(ids)).exclude(status__in=FINAL).count()


def percentile(samples: Iterable[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Outcome:
    """What a scenario ended with: the facts the tests assert and the numbers the bench prints."""

    run: str
    pipelines: int
    steps_per_pipeline: int
    submitted: Submission
    statuses: Counter[str]
    errors: Counter[str]
    attempts_over_one: int
    #: every run the demo workers noted
    runs: Counter[str]
    #: runs on workers that were not killed: a step a killed worker had started (or even finished
    #: without getting its reply out) is run again elsewhere, by design; none may run twice here
    survivor_runs: Counter[str]
    fault: str
    seconds: float
    latencies: list[float]

    @property
    def expected_tags(self) -> set[str]:
        return {f"{self.run}:{step_tag(p, s)}" for p in range(self.pipelines)
                for s in range(1, self.steps_per_pipeline + 1)}

    @property
    def lost(self) -> int:
        """Pipelines submitted with a 201 that are not final, or submissions that were not a 201."""
        return self.pipelines - sum(self.statuses[s] for s in FINAL)

    @property
    def ran_twice(self) -> dict[str, int]:
        return {tag: n for tag, n in self.survivor_runs.items() if n > 1}

    @property
    def rerun_after_a_kill(self) -> int:
        """Steps a killed worker had taken and a surviving one ran again."""
        return sum(1 for tag in self.runs if self.runs[tag] > self.survivor_runs[tag] > 0)

    @property
    def never_ran(self) -> set[str]:
        return self.expected_tags - set(self.runs)

    @property
    def steps_per_second(self) -> float:
        done = sum(self.runs.values())
        return done / self.seconds if self.seconds else float("nan")

    def summary(self) -> str:
        return (f"{self.run}: {self.pipelines} pipelines x {self.steps_per_pipeline} steps, "
                f"fault: {self.fault}; final {dict(self.statuses)}, http {dict(self.submitted.statuses)}, "
                f"errors {dict(self.errors)}, "
                f"ran twice {len(self.ran_twice)}, rerun after a kill {self.rerun_after_a_kill}, "
                f"never ran {len(self.never_ran)}, "
                f"attempts>1 {self.attempts_over_one}, {self.steps_per_second:.1f} steps/s, "
                f"p50 {percentile(self.latencies, 0.5):.2f} s, p99 {percentile(self.latencies, 0.99):.2f} s")


class Cluster:
    """The daemon and workers of one scenario, and the handles a fault needs to break them."""

    def __init__(self, procs: Processes, *, workers: int = 2, concurrency: int = 8,
                 daemon_name: str = "reliability") -> None:
        self.procs = procs
        self.daemon_name = daemon_name
        self.concurrency = concurrency
        procs.env.update(FAST_RECOVERY_ENV)
        procs.env["SHEPHERD_DAEMON_NAME"] = daemon_name
        self.call_log = procs.workdir / "calls.jsonl"
        procs.env["DEMO_WORKER_LOG"] = str(self.call_log)
        self.workers = [procs.demo_worker(f"worker-{i + 1}", concurrency=concurrency) for i in range(workers)]
        self.killed_workers: set[int] = set()
        self.daemon = self.start_daemon("daemon")

    def start_daemon(self, label: str) -> subprocess.Popen[bytes]:
        self.daemon = self.procs.daemon(f"concurrency={self.concurrency * 2}", f"name={self.daemon_name}",
                                        "wait-limit=20", label=label)
        return self.daemon


def run_scenario(cluster: Cluster, post: Poster, *, run: str, pipelines: int, steps: int = 3,
                 clients: int = 8, fault: Fault | None = None, fault_after: float = 0.3,
                 timeout: float = 180) -> Outcome:
    """Submit ``pipelines`` from ``clients`` threads; once ``fault_after`` of them have succeeded
    (so the fault lands mid-load), inject ``fault``; wait until all are final; gather the facts."""
    bodies = [noop_body(run, p, steps) for p in range(pipelines)]
    started = time.monotonic()
    fault_note: list[str] = ["none"]
    fault_error: list[BaseException] = []

    def inject() -> None:
        try:
            threshold = max(1, int(pipelines * fault_after))
            wait_until(lambda: Pipeline.objects.filter(name__startswith=f"{run}-",
                                                       status="succeeded").count() >= threshold,
                       timeout=timeout, interval=0.05,
                       what=f"{threshold} pipelines to succeed before the fault")
            fault_note[0] = fault(cluster)
        except BaseException as exc:  # surfaced below, after the load finishes
            fault_error.append(exc)
        finally:
            connections.close_all()

    injector = threading.Thread(target=inject, name="fault") if fault else None
    if injector:
        injector.start()
    submitted = submit_concurrently(post, bodies, clients)
    if injector:
        injector.join(timeout)
        if fault_error:
            raise fault_error[0]
    wait_until(lambda: unfinished(submitted.ids) == 0, timeout=timeout,
               what=f"{len(submitted.ids)} pipelines of {run} to reach a final state", interval=0.25)
    seconds = time.monotonic() - started
    rows = list(Pipeline.objects.filter(pk__in=submitted.ids)
                .values("status", "error", "created_at", "finished_at"))
    errors = Counter(f"{(r['error'] or {}).get('type')}: {(r['error'] or {}).get('message')}"
                     for r in rows if r["status"] != "succeeded")
    return Outcome(
        run=run, pipelines=pipelines, steps_per_pipeline=steps, submitted=submitted,
        statuses=Counter(r["status"] for r in rows), errors=errors,
        attempts_over_one=Step.objects.filter(pipeline_id__in=submitted.ids, attempts__gt=1).count(),
        runs=recorded_runs(cluster.call_log),
        survivor_runs=recorded_runs(cluster.call_log, excluding_pids=frozenset(cluster.killed_workers)),
        fault=fault_note[0], seconds=seconds,
        latencies=[(r["finished_at"] - r["created_at"]).total_seconds() for r in rows if r["finished_at"]],
    )


# -- faults ------------------------------------------------------------------------------


def kill_a_worker(cluster: Cluster) -> str:
    """kill -9 one of the two workers; the other one carries on alone."""
    victim = cluster.workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    cluster.killed_workers.add(victim.pid)
    return f"kill -9 worker pid {victim.pid}"


def close_all_broker_connections(cluster: Cluster) -> str:
    """Have RabbitMQ drop every client connection at once (daemon, workers, the API's hand-off)."""
    rabbitmqctl("close_all_connections", "reliability test: forced close")
    return "rabbitmqctl close_all_connections"


def kill_and_restart_the_daemon(cluster: Cluster) -> str:
    """kill -9 the daemon, then start it again under the same name."""
    old = cluster.daemon
    old.send_signal(signal.SIGKILL)
    old.wait()
    cluster.start_daemon("daemon-restarted")
    return f"kill -9 daemon pid {old.pid}, restarted"


def restart_the_broker(cluster: Cluster, down_for: float = 2.0) -> str:
    """rabbitmqctl stop_app, wait ``down_for`` seconds, start_app. The broker always comes back."""
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_for)  # keep the broker down for a moment, not an assertion
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    return f"rabbitmqctl stop_app, {down_for:g} s down, start_app"


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout
