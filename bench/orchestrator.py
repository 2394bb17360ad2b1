"""Whole-path cost of the orchestrator (daemon -> Prefect mirror -> worker -> database) vs raw pika.

Starts the demo worker (2 processes) and the daemon (``manage.py runscript worker_demon``) as
subprocesses against a fresh SQLite file or a fresh PostgreSQL database and a unique broker
prefix, creates pipelines of no-op steps directly through ``pipeline.services.pipeline_create``
(the API's own write path, without HTTP), and reads every timing back from the database rows the
daemon wrote. Three phases:

* latency: pipelines run one at a time; a raw pika round trip (bench/rpc_roundtrip.py's loop) is
  sampled between them, so both see the same machine noise;
* throughput: N pipelines queued while the daemon is down, then drained with the daemon's pool;
  repeated, with the Prefect mirror's drain lag after each burst when Prefect is on;
* memory: the daemon's peak RSS (VmHWM) over a fixed window with few vs many pipelines queued.

    python bench/orchestrator.py                                  # SQLite, Prefect ephemeral
    python bench/orchestrator.py --database postgres://postgres@127.0.0.1:5432/shepherd_bench
    python bench/orchestrator.py --prefect off --markdown
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import _support
from _support import REPO, RawBaseline, median, ms, percentile

logger = logging.getLogger("bench.orchestrator")

DAEMON_NAME = "bench"
FINAL = ("succeeded", "failed", "cancelled")
PREFECT_URL_LINE = re.compile(r"prefect mirror recording to (\S+)")


# -- configuration and the environment the children share --------------------------------


@dataclass
class Setup:
    """Everything one bench run owns and must clean up: prefix, scratch dir, database."""

    args: argparse.Namespace
    prefix: str
    workdir: Path
    database_url: str
    pg_admin_url: str | None = None  # set when this run created a PostgreSQL database
    pg_name: str | None = None
    journal: str = ""  # SQLite's journal mode, read back after migrating
    #: the machine is shared: the load others put on it is part of every number
    load_start: float = field(default_factory=lambda: os.getloadavg()[0])


def fresh_database(spec: str, workdir: Path) -> tuple[str, str | None, str | None]:
    """(DATABASE_URL, admin URL, name): a new SQLite file, or a new database on the given server."""
    if spec == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}", None, None
    import psycopg

    parts = urlsplit(spec)
    name = f"{(parts.path.strip('/') or 'shepherd_bench')}_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), admin, name


def drop_database(setup: Setup) -> None:
    if setup.pg_admin_url is None:
        return
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(setup.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{setup.pg_name}" WITH (FORCE)')


def configure_django(setup: Setup) -> None:
    """Point this process (and, through os.environ, its children) at the bench's own resources."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "shepherd.settings",
        "DATABASE_URL": setup.database_url,
        "SHEPHERD_AMQP_PREFIX": setup.prefix,
        "SHEPHERD_BROKER_URL": setup.args.broker_url,
        "SHEPHERD_VAR_DIR": str(setup.workdir / "var"),
        "SHEPHERD_SHUTDOWN_GRACE": "2",
        "SHEPHERD_LOG_LEVEL": "WARNING",  # this process creates thousands of pipelines
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    })
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    if setup.args.database == "sqlite":
        setup.journal = journal_mode()


def journal_mode() -> str:
    """The fresh SQLite file's journal mode, as the service's settings left it.

    shepherd/settings.py switches every SQLite connection to WAL (an ``init_command``), so the
    rollback journal the first benches measured can no longer be chosen from here.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        return str(cursor.fetchone()[0]).lower()


# -- children ------------------------------------------------------------------------------


def child_env(setup: Setup) -> dict[str, str]:
    """Environment of a daemon: the Prefect mode, and the run's Prefect home.

    Every phase's daemon shares one Prefect home, as one deployment's restarts do: a starting
    daemon sends again the final states the previous one left unsent, naming flow runs it made,
    which only exist in the ephemeral server's database of that same home.
    """
    mode = setup.args.prefect
    env = {"SHEPHERD_LOG_LEVEL": "INFO", "SHEPHERD_PREFECT": "false" if mode == "off" else "true",
           "PREFECT_HOME": str(setup.workdir / "prefect")}
    if mode == "server":
        env["PREFECT_API_URL"] = setup.args.prefect_api_url
    return env


def start_workers(setup: Setup) -> Any:
    from tests.support.processes import Processes

    workers = Processes(setup.workdir)
    for index in range(setup.args.workers):
        workers.demo_worker(label=f"worker{index}", concurrency=setup.args.worker_concurrency,
                            SHEPHERD_LOG_LEVEL="WARNING")
    return workers


def daemon_names(count: int) -> list[str]:
    return [DAEMON_NAME] if count == 1 else [f"{DAEMON_NAME}{k}" for k in range(1, count + 1)]


@contextmanager
def running_daemons(
    setup: Setup, phase: str, count: int = 1
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    """The daemons of one phase with their logs, stopped (SIGTERM, then waited for) when it ends.

    With ``count`` > 1 they share the pool size (each gets ``--concurrency / count``); the first is
    the one profiled.
    """
    from tests.support.processes import Processes

    (setup.workdir / phase).mkdir(parents=True, exist_ok=True)
    procs = Processes(setup.workdir / phase)
    daemons = []
    for index, name in enumerate(daemon_names(count)):
        extra = [f"concurrency={max(1, setup.args.concurrency // count)}", f"name={name}"]
        if setup.args.prefect == "off":
            extra.append("no-prefect")
        label = "daemon" if index == 0 else f"daemon{index + 1}"
        daemons.append((procs.daemon(*extra, label=label, **child_env(setup)),
                        setup.workdir / phase / f"{label}.log"))
    profiler = start_profiler(setup, phase, daemons[0][0].pid)
    try:
        yield daemons
    finally:
        procs.stop_all()
        if profiler is not None:
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                profiler.terminate()


def start_profiler(setup: Setup, phase: str, pid: int) -> subprocess.Popen[bytes] | None:
    """With --profile, sample the daemon of each throughput phase with py-spy until it exits.

    py-spy attaches from outside (ptrace) and sees every thread, which cProfile cannot; it is not a
    dependency of Shepherd (``.venv/bin/pip install py-spy``). Folded stacks go to PATH-<phase>.txt,
    one line per distinct stack with its sample count. --profile-gil keeps only the thread holding
    the GIL (what the one interpreter spends its time on), the mode docs/bench-orchestrator.md
    reads. By default py-spy samples the threads it judges active, which here gives mostly stacks
    without a Python frame; --profile-idle adds the waiting threads (where they wait, not what
    costs CPU).
    """
    if not setup.args.profile or not phase.startswith("throughput"):
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = f"{setup.args.profile}-{phase}.txt"
    extra = [*(["--idle"] if setup.args.profile_idle else []), *(["--gil"] if setup.args.profile_gil else [])]
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--nonblocking", *extra,
                             "--rate", str(setup.args.profile_rate), "--format", "raw", "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- pipelines ------------------------------------------------------------------------------


def create_pipelines(tag: str, count: int, steps: int, first: int = 0) -> float:
    """Create ``count`` pipelines named ``tag-i`` through the service layer; return seconds taken."""
    from pipeline.services import pipeline_create
    from pipeline.validation import validate_pipeline

    request = validate_pipeline({
        "pipeline_name": tag, "project": "demo",
        "transformers_list": [{"name": "noop", "order_no": k + 1} for k in range(steps)],
    })
    started = time.perf_counter()
    for index in range(first, first + count):
        pipeline_create(request=dataclasses.replace(request, name=f"{tag}-{index}"))
    return time.perf_counter() - started


def tagged(tag: str) -> Any:
    from pipeline.models import Pipeline

    return Pipeline.objects.filter(name__startswith=f"{tag}-")


def wait_final(tag: str, count: int, timeout: float, daemon: subprocess.Popen[bytes],
               poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while tagged(tag).filter(status__in=FINAL).count() < count:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tag}: pipelines not final after {timeout:g} s")
        time.sleep(poll)


def check_recorded_once(tag: str, pipelines: int, steps: int) -> str:
    """'ok' if every pipeline succeeded and every step ran once and was stored once, else what is wrong."""
    from pipeline.models import PipelineEvent, Step

    problems = []
    if (n := tagged(tag).filter(status="succeeded").count()) != pipelines:
        problems.append(f"{pipelines - n} pipeline(s) not succeeded")
    rows = Step.objects.filter(pipeline__name__startswith=f"{tag}-")
    if (n := rows.count()) != pipelines * steps:
        problems.append(f"{n} step rows for {pipelines * steps}")
    if (n := rows.exclude(status="succeeded", attempts=1).count()):
        problems.append(f"{n} step(s) not succeeded on attempt 1")
    events = PipelineEvent.objects.filter(pipeline__name__startswith=f"{tag}-", event="step_succeeded")
    if (n := events.count()) != pipelines * steps:
        problems.append(f"{n} step_succeeded events for {pipelines * steps}")
    return "ok" if not problems else "; ".join(problems)


# -- Prefect: did every run reach it, and how late ---------------------------------------------


def prefect_url(setup: Setup, log: Path, timeout: float = 60) -> str:
    """The API the daemon's mirror writes to (the ephemeral server's URL is only in its log)."""
    if setup.args.prefect == "server":
        return setup.args.prefect_api_url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and (match := PREFECT_URL_LINE.search(log.read_text(errors="replace"))):
            return match.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"the daemon's Prefect mirror did not start within {timeout:g} s")


def prefect_counts(api: str, tag: str) -> tuple[int, int]:
    """(completed flow runs, completed task runs) of this tag's pipelines, from Prefect's REST API."""
    import httpx

    flows = {"name": {"like_": f"-{tag}-"}}
    completed = {"type": {"any_": ["COMPLETED"]}}
    with httpx.Client(base_url=api, timeout=30) as http:
        n_flows = http.post("/flow_runs/count", json={"flow_runs": {**flows, "state": completed}})
        n_tasks = http.post("/task_runs/count", json={"flow_runs": flows, "task_runs": {"state": completed}})
    n_flows.raise_for_status()
    n_tasks.raise_for_status()
    return int(n_flows.json()), int(n_tasks.json())


def prefect_drain(api: str, tag: str, pipelines: int, steps: int, last_finished: float,
                  timeout: float) -> tuple[float | None, tuple[int, int]]:
    """Seconds from the last pipeline finishing (database) to every run shown completed in Prefect."""
    deadline = time.monotonic() + timeout
    counts = (0, 0)
    while time.monotonic() < deadline:
        try:
            counts = prefect_counts(api, tag)
        except Exception as exc:  # the server may be busy under the burst; keep asking
            logger.warning("prefect count failed: %s", exc)
        if counts == (pipelines, pipelines * steps):
            return max(0.0, time.time() - last_finished), counts
        time.sleep(0.25)
    return None, counts


# -- phases ------------------------------------------------------------------------------------


@dataclass
class Latency:
    per_step: list[float] = field(default_factory=list)  # pipeline start or previous step end -> step end
    step_span: list[float] = field(default_factory=list)  # step started_at -> finished_at
    pipeline: list[float] = field(default_factory=list)  # created_at -> finished_at
    raw: list[float] = field(default_factory=list)
    check: str = ""
    #: per step, where the whole-path time went (see step_segments)
    segments: dict[str, list[float]] = field(default_factory=dict)
    drops: int = 0


def step_times(tag: str) -> tuple[list[float], list[float], list[float]]:
    """Per-step whole-path times, per-step spans and pipeline latencies, from the stored rows."""
    from pipeline.models import Step

    per_step, spans, pipelines = [], [], []
    for pipeline in tagged(tag).order_by("pk"):
        previous = pipeline.started_at
        for step in Step.objects.filter(pipeline=pipeline).order_by("order_no"):
            per_step.append((step.finished_at - previous).total_seconds())
            spans.append((step.finished_at - step.started_at).total_seconds())
            previous = step.finished_at
        pipelines.append((pipeline.finished_at - pipeline.created_at).total_seconds())
    return per_step, spans, pipelines


SEGMENTS = ("DB before publish", "publish -> claim", "claim -> result stored")


def step_segments(tag: str) -> dict[str, list[float]]:
    """Split each step's whole-path time at its 'published' and 'picked_up' events.

    * DB before publish: previous step stored (or pipeline claimed) -> 'published' event stamped:
      the previous step's event insert, the cancel check, the step's start UPDATE;
    * publish -> claim: the event's INSERT, the publish with confirm, the broker, the worker's claim
      (stamped when the daemon's RPC thread hears it);
    * claim -> result stored: grant, the handler, the reply with confirm, the step's UPDATE.
    """
    from pipeline.models import PipelineEvent, Step

    events = {(e.step_id, e.event): e.created_at for e in PipelineEvent.objects.filter(
        pipeline__name__startswith=f"{tag}-", event__in=("published", "picked_up"))}
    segments: dict[str, list[float]] = {name: [] for name in SEGMENTS}
    for pipeline in tagged(tag).order_by("pk"):
        previous = pipeline.started_at
        for step in Step.objects.filter(pipeline=pipeline).order_by("order_no"):
            published, claimed = events.get((step.pk, "published")), events.get((step.pk, "picked_up"))
            if published is not None and claimed is not None:
                for name, (a, b) in zip(SEGMENTS, ((previous, published), (published, claimed),
                                                   (claimed, step.finished_at)), strict=True):
                    segments[name].append((b - a).total_seconds())
            previous = step.finished_at
    return segments


def latency_phase(setup: Setup, raw: RawBaseline) -> Latency:
    """One pipeline at a time, each followed by as many raw round trips as it has steps."""
    args, tag = setup.args, "lat"
    with running_daemons(setup, "latency") as [(daemon, log)]:
        for index in range(args.warmup + args.latency_runs):
            name, counted = ("warm", index) if index < args.warmup else (tag, index - args.warmup)
            create_pipelines(name, 1, args.steps, first=counted)
            wait_final(name, counted + 1, args.timeout, daemon, poll=0.02)
            raw.sample(args.steps, keep=name == tag)
    result = Latency(raw=list(raw.samples), drops=broker_drops(log))
    result.per_step, result.step_span, result.pipeline = step_times(tag)
    result.check = check_recorded_once(tag, args.latency_runs, args.steps)
    result.segments = step_segments(tag)
    return result


@dataclass
class Burst:
    pipelines: int
    steps: int
    create_s: float
    window_s: float
    check: str
    drain_s: float | None = None
    prefect_seen: tuple[int, int] | None = None
    drops: int = 0
    daemon_cpu_s: float | None = None  # user + system CPU of the daemon over the burst
    workers_cpu_s: float | None = None  # of all worker processes together
    broker_cpu_s: float | None = None  # of RabbitMQ (shared with anything else using it)
    segments: dict[str, list[float]] = field(default_factory=dict)  # see step_segments

    @property
    def steps_per_s(self) -> float:
        return self.pipelines * self.steps / self.window_s


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """RabbitMQ's Erlang VM on this machine, if it runs here."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "beam.smp":
                return int(entry.name)
        except OSError:
            continue
    return None


def others_cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(cpu_seconds(pid) for pid in group) for role, group in pids.items()}


def cpu_when_serving(pid: int, log: Path, timeout: float = 60) -> float:
    """The daemon's CPU once it logs that it serves: start-up (imports, Prefect) is left out.

    It may already have claimed a few pipelines by then, so CPU per step is slightly low.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and " serving " in log.read_text(errors="replace"):
            break
        time.sleep(0.05)
    return cpu_seconds(pid)


def broker_drops(log: Path) -> int:
    """Connections the daemon lost during a phase: other people's fault tests force-close them all."""
    return log.read_text(errors="replace").count("lost its") if log.exists() else 0


def burst_window(tag: str) -> tuple[float, float]:
    """(first claim -> last finish in seconds, last finish as epoch seconds), from the database."""
    from django.db.models import Max, Min

    span = tagged(tag).aggregate(first=Min("started_at"), last=Max("finished_at"))
    return (span["last"] - span["first"]).total_seconds(), span["last"].timestamp()


def throughput_phase(setup: Setup, run: int, worker_pids: list[int]) -> Burst:
    """Queue N pipelines while the daemon is down, start it, and time the drain from the rows."""
    # unique across runs: a Prefect server outlives this run and is searched by name
    args, tag = setup.args, f"tp{run}x{setup.prefix.rsplit('-', 1)[-1]}"
    create_s = create_pipelines(tag, args.pipelines, args.steps)
    pids = {"workers": worker_pids, "broker": [pid] if (pid := broker_pid()) else []}
    with running_daemons(setup, f"throughput{run}", args.daemons) as daemons:
        daemon, log = daemons[0]
        cpu_start = sum(cpu_when_serving(process.pid, path) for process, path in daemons)
        others_start = others_cpu(pids)
        wait_final(tag, args.pipelines, args.timeout, daemon)
        cpu = sum(cpu_seconds(process.pid) for process, _ in daemons) - cpu_start
        others = {role: used - others_start[role] for role, used in others_cpu(pids).items()}
        window, last = burst_window(tag)
        burst = Burst(args.pipelines, args.steps, create_s, window, check_recorded_once(tag, args.pipelines,
                                                                                         args.steps))
        burst.segments = step_segments(tag)
        if args.prefect != "off":
            burst.drain_s, burst.prefect_seen = prefect_drain(
                prefect_url(setup, log), tag, args.pipelines, args.steps, last, args.drain_timeout)
    burst.drops, burst.daemon_cpu_s = sum(broker_drops(path) for _, path in daemons), cpu
    burst.workers_cpu_s, burst.broker_cpu_s = others["workers"], others["broker"] if pids["broker"] else None
    logger.info("burst %d: %.0f steps/s, %s, prefect drain %s", run, burst.steps_per_s, burst.check,
                burst.drain_s)
    return burst


@dataclass
class Memory:
    queued: int
    window_s: float
    finished: int
    hwm_kib: int
    rss_kib: int


def memory_phase(setup: Setup, queued: int) -> Memory:
    """Peak RSS of the daemon over a fixed window of work with ``queued`` pipelines waiting."""
    args, tag = setup.args, f"mem{queued}"
    create_pipelines(tag, queued, args.steps)
    with running_daemons(setup, tag) as [(daemon, _)]:
        time.sleep(args.memory_window)
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}; see its log")
        hwm = _support.proc_status_kib(daemon.pid, "VmHWM")
        rss = _support.proc_status_kib(daemon.pid, "VmRSS")
        finished = tagged(tag).filter(status__in=FINAL).count()
    abandon_unfinished(setup)
    return Memory(queued, args.memory_window, finished, hwm, rss)


def abandon_unfinished(setup: Setup) -> None:
    """Drop what a memory window left, so the next phase starts from an empty hand-off queue."""
    from pipeline import handoff
    from pipeline.models import Pipeline

    _support.purge_queue(setup.args.broker_url, handoff.pipelines_queue())
    Pipeline.objects.exclude(status__in=FINAL).update(status="cancelled", lease_expires_at=None)


# -- the report -----------------------------------------------------------------------------


def describe(setup: Setup) -> str:
    args = setup.args
    database = f"SQLite ({setup.journal} journal)" if args.database == "sqlite" else "PostgreSQL"
    prefect = {"off": "off", "ephemeral": "on, ephemeral (no PREFECT_API_URL)",
               "server": "on, `prefect server` at PREFECT_API_URL"}[args.prefect]
    return (f"database {database}; Prefect mirror {prefect}; daemon concurrency {args.concurrency}"
            f"{f' over {args.daemons} daemons in the throughput phase' if args.daemons > 1 else ''}; "
            f"{args.workers} worker processes x concurrency {args.worker_concurrency}; "
            f"{args.steps} noop steps per pipeline")


def latency_table(lat: Latency) -> str:
    whole, raw = median(lat.per_step), median(lat.raw)
    return "\n".join([
        "| pipelines x steps | raw pika p50 | raw p99 | whole path per step p50 | p99 "
        "| overhead p50 (whole - raw) | ratio p50 | step span p50 | pipeline latency p50 | recorded "
        "| broker drops |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        f"| {len(lat.pipeline)} x {len(lat.per_step) // max(1, len(lat.pipeline))} | {ms(raw)} "
        f"| {ms(percentile(lat.raw, .99))} | {ms(whole)} | {ms(percentile(lat.per_step, .99))} "
        f"| {ms(whole - raw)} | {whole / raw:.1f}x | {ms(median(lat.step_span))} "
        f"| {ms(median(lat.pipeline))} | {lat.check} | {lat.drops} |",
        "",
        "Where a step's whole-path time goes (p50 and p99 of each segment, from the step's "
        "'published' and 'picked_up' events; the p50s need not add up to the whole):",
        "",
        "| segment | p50 | p99 |",
        "|---|---:|---:|",
        *[f"| {name} | {ms(median(values))} | {ms(percentile(values, .99))} |"
          for name, values in lat.segments.items()],
    ])


def throughput_table(bursts: list[Burst], prefect: bool) -> str:
    lines = ["| run | pipelines x steps | create (not timed) | drain window | pipelines/s | steps/s "
             "| daemon CPU per step | workers CPU per step | broker CPU per step | recorded "
             "| Prefect drain lag after burst | broker drops |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for run, b in enumerate(bursts, 1):
        lag = "-" if not prefect else (f"{b.drain_s:.1f} s" if b.drain_s is not None
                                       else f"not drained ({b.prefect_seen})")
        lines.append(f"| {run} | {b.pipelines} x {b.steps} | {b.create_s:.1f} s | {b.window_s:.2f} s "
                     f"| {b.pipelines / b.window_s:.1f} | {b.steps_per_s:.0f} "
                     f"| {per_step(b, b.daemon_cpu_s)} | {per_step(b, b.workers_cpu_s)} "
                     f"| {per_step(b, b.broker_cpu_s)} | {b.check} | {lag} "
                     f"| {b.drops} |")
    rates = [b.steps_per_s for b in bursts]
    lags = [b.drain_s for b in bursts if b.drain_s is not None]
    lines.append(f"| median | | | | | {median(rates):.0f} (min {min(rates):.0f}) | | | | | "
                 f"{f'{median(lags):.1f} s' if lags else '-'} | |")
    lines += ["", "Where a step's time goes under load (p50 / p99 of each segment, as in the latency table):",
              "", f"| run | {' | '.join(SEGMENTS)} |", f"|---|{'---:|' * len(SEGMENTS)}"]
    for run, b in enumerate(bursts, 1):
        cells = [f"{ms(median(b.segments[name]))} / {ms(percentile(b.segments[name], .99))}"
                 if b.segments.get(name) else "-" for name in SEGMENTS]
        lines.append(f"| {run} | {' | '.join(cells)} |")
    return "\n".join(lines)


def per_step(burst: Burst, cpu_s: float | None) -> str:
    return "-" if cpu_s is None else ms(cpu_s / (burst.pipelines * burst.steps))


def memory_table(rows: list[Memory]) -> str:
    lines = ["| pipelines queued | window | finished in window | daemon VmHWM (peak RSS) | VmRSS at end |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {m.queued} | {m.window_s:g} s | {m.finished} | {m.hwm_kib / 1024:.1f} MiB "
              f"| {m.rss_kib / 1024:.1f} MiB |" for m in rows]
    return "\n".join(lines)


def report(setup: Setup, lat: Latency | None, bursts: list[Burst], memory: list[Memory]) -> str:
    parts = [f"`{_support.command_line()}` ({time.strftime('%Y-%m-%d %H:%M')}): {describe(setup)}; "
             f"1-min load average {setup.load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
             f"code {_support.code_version()}."]
    if lat is not None:
        parts += ["", "Latency, one pipeline at a time:", "", latency_table(lat)]
    if bursts:
        parts += ["", f"Throughput, {setup.args.pipelines} pipelines queued then drained:", "",
                  throughput_table(bursts, setup.args.prefect != "off")]
    if memory:
        parts += ["", "Daemon memory:", "", memory_table(memory)]
    return "\n".join(parts)


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--pipelines", type=int, default=300, help="pipelines per throughput burst")
    parser.add_argument("--steps", type=int, default=5, help="noop steps per pipeline")
    parser.add_argument("--concurrency", type=int, default=50, help="daemon pool size (pipelines at once)")
    parser.add_argument("--daemons", type=int, default=1,
                        help="daemon processes in the throughput phase, sharing --concurrency")
    parser.add_argument("--workers", type=int, default=2, help="demo worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=25, help="concurrency of each worker")
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a fresh file) or a postgres:// URL (a fresh database is made "
                             "next to the named one and dropped at the end)")
    parser.add_argument("--prefect", choices=("off", "ephemeral", "server"), default="ephemeral",
                        help="mirror off; on with no server (Prefect's temporary one); or on with "
                             "--prefect-api-url")
    parser.add_argument("--prefect-api-url", help="PREFECT_API_URL for --prefect server")
    parser.add_argument("--latency-runs", type=int, default=40, help="sequential pipelines (0 = skip)")
    parser.add_argument("--warmup", type=int, default=3, help="sequential pipelines not counted")
    parser.add_argument("--repeat", type=int, default=3, help="throughput bursts (0 = skip)")
    parser.add_argument("--memory", default="100,2000", help="queue sizes for the RSS phase ('' = skip)")
    parser.add_argument("--memory-window", type=float, default=20.0, help="seconds the daemon runs per size")
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds to wait for a phase")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="max seconds to wait for Prefect to show every run")
    parser.add_argument("--broker-url", default=os.environ.get("SHEPHERD_BROKER_URL",
                                                               "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    parser.add_argument("--profile", metavar="PATH",
                        help="sample each throughput daemon with py-spy (folded stacks to PATH-<phase>.txt)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--profile-idle", action="store_true", help="py-spy samples idle threads too")
    parser.add_argument("--profile-gil", action="store_true", help="py-spy samples only the GIL holder")
    parser.add_argument("--markdown", action="store_true",
                        help=f"write the tables into {_support.DOC.relative_to(REPO)}")
    args = parser.parse_args()
    if args.prefect == "server" and not args.prefect_api_url:
        parser.error("--prefect server needs --prefect-api-url")
    return args


def section_name(args: argparse.Namespace) -> str:
    database = "postgres" if args.database != "sqlite" else "sqlite"
    return f"orchestrator-{database}-prefect-{args.prefect}"


def cleanup_broker(setup: Setup) -> None:
    from projects.demo.steps import STEPS
    from shepherd_rpc import protocol as p

    prefix = setup.prefix
    _support.delete_amqp(
        setup.args.broker_url,
        # the demo worker declares a queue for each of its steps, not only noop's
        queues=[p.pipelines_queue(prefix), p.dead_letter_queue(prefix),
                *(p.reply_queue(prefix, name) for name in {DAEMON_NAME, *daemon_names(setup.args.daemons)}),
                *(p.step_queue(prefix, spec.queue) for spec in STEPS)],
        exchanges=[p.steps_exchange(prefix), p.dead_letter_exchange(prefix)],
    )


def run(setup: Setup) -> str:
    args = setup.args
    raw = RawBaseline(args.broker_url, setup.prefix, {**os.environ, "PYTHONPATH": str(REPO)})
    workers = start_workers(setup)
    try:
        lat = latency_phase(setup, raw) if args.latency_runs else None
        worker_pids = [process.pid for _, process, _ in workers.children]
        bursts = [throughput_phase(setup, run, worker_pids) for run in range(1, args.repeat + 1)]
        memory = [memory_phase(setup, int(n)) for n in args.memory.split(",") if n.strip()]
    finally:
        workers.stop_all()
        raw.close()
    return report(setup, lat, bursts, memory)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shepherd-bench-"))
    database_url, admin, name = fresh_database(args.database, workdir)
    setup = Setup(args, f"bench-orch-{uuid.uuid4().hex[:8]}", workdir, database_url, admin, name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanup below
    try:
        configure_django(setup)
        result = run(setup)
    finally:
        cleanup_broker(setup)
        drop_database(setup)
        if args.keep:
            logger.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(result)
    if args.markdown:
        _support.write_section(section_name(args), result)


if __name__ == "__main__":
    main()
