"""Shepherd under load and faults, at full size: the numbers behind docs/reliability.md.

Each scenario starts a fresh daemon and two demo workers, submits pipelines of three no-op steps
from 8 concurrent HTTP clients to gunicorn, optionally injects one fault mid-load, waits until
every pipeline is final and checks that nothing was lost and no step ran twice (the demo worker's
call log, one line per handled call, each step tagged uniquely).

    .venv/bin/python bench/reliability.py                      # all scenarios, 1000 pipelines each
    .venv/bin/python bench/reliability.py --pipelines 200 --only load kill-worker
    .venv/bin/python bench/reliability.py --markdown           # also runs the CI suite; rewrites the doc

The database is a fresh SQLite file unless --database-url (or DATABASE_URL) names a PostgreSQL
server; a new database is not created there, so point it at an empty one. broker-restart stops
RabbitMQ for every user of this machine for a few seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def setup_django(database_url: str | None, workdir: Path) -> None:
    """Point Django at a fresh database and a prefix of its own, then migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "shepherd.settings"
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["SHEPHERD_AMQP_PREFIX"] = f"bench-rel-{uuid.uuid4().hex[:8]}"
    os.environ["SHEPHERD_VAR_DIR"] = str(workdir)
    os.environ.setdefault("SHEPHERD_LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(procs, workers: int = 2, threads: int = 4) -> str:
    """gunicorn on a free port with the bench's database and prefix; returns its base URL."""
    import urllib.request

    from tests.support.processes import wait_until

    port = free_port()
    gunicorn = str(REPO / ".venv" / "bin" / "gunicorn")
    procs.start("gunicorn", [gunicorn, "shepherd.wsgi", "-b", f"127.0.0.1:{port}",
                             "-w", str(workers), "--threads", str(threads)],
                DJANGO_SETTINGS_MODULE="shepherd.settings")
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/projects/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(up, timeout=60, what="gunicorn to answer", interval=0.2)
    return base


@dataclass
class Row:
    scenario: str
    pipelines: int
    outcome: object  # tests.support.load.Outcome


def scenarios() -> dict[str, Callable | None]:
    from tests.support import load

    return {"load": None, "kill-worker": load.kill_a_worker,
            "close-connections": load.close_all_broker_connections,
            "kill-daemon": load.kill_and_restart_the_daemon, "broker-restart": load.restart_the_broker}


def run_one(name: str, fault: Callable | None, pipelines: int, clients: int, workdir: Path) -> Row:
    from tests.factories import token_for
    from tests.support.load import Cluster, http_poster, run_scenario
    from tests.support.processes import Processes

    procs = Processes(workdir / name)
    procs.workdir.mkdir(parents=True, exist_ok=True)
    procs.env["DJANGO_SETTINGS_MODULE"] = "shepherd.settings"
    try:
        base = start_gunicorn(procs)
        cluster = Cluster(procs, workers=2, concurrency=8, daemon_name=f"bench-{name}")
        outcome = run_scenario(cluster, http_poster(base, token_for("bench")), run=f"bench-{name}",
                               pipelines=pipelines, clients=clients, fault=fault,
                               timeout=max(300, pipelines))
    finally:
        procs.stop_all()
    print(outcome.summary(), flush=True)
    return Row(name, pipelines, outcome)


def verdict(outcome) -> str:
    if outcome.ran_twice:
        return f"**no**: {len(outcome.ran_twice)} step(s) ran twice"
    if outcome.lost:
        return f"**no**: {outcome.lost} pipeline(s) lost"
    if outcome.statuses.get("failed"):
        return f"**no**: {outcome.statuses['failed']} failed"
    return "yes"


def results_table(rows: list[Row]) -> str:
    from tests.support.load import percentile

    lines = ["| scenario | fault | pipelines | final states | steps run twice | rerun after a kill "
             "| steps never run | steps/s | p50 / p99 latency | held |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        o = row.outcome
        states = ", ".join(f"{n} {s}" for s, n in sorted(o.statuses.items()))
        lines.append(f"| {row.scenario} | {o.fault} | {row.pipelines} | {states} | {len(o.ran_twice)} "
                     f"| {o.rerun_after_a_kill} | {len(o.never_ran)} | {o.steps_per_second:.1f} "
                     f"| {percentile(o.latencies, 0.5):.2f} s / {percentile(o.latencies, 0.99):.2f} s "
                     f"| {verdict(o)} |")
    errors = {e: n for row in rows for e, n in row.outcome.errors.items()}
    if errors:
        lines += ["", "Errors of the pipelines that failed:", ""]
        lines += [f"- {n} x `{e[:200]}`" for e, n in errors.items()]
    return "\n".join(lines)


def run_ci_suite() -> str:
    """Run tests/reliability as CI does and return its per-test outcomes and summary line."""
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".venv" / "bin" / "pytest"), "tests/reliability", "-q", "-rA",
                           "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    outcomes = [line for line in done.stdout.splitlines()
                if re.match(r"^(PASSED|FAILED|XFAIL|XPASS|ERROR|SKIPPED) ", line)]
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(no output)"
    loads = [line for line in done.stdout.splitlines()
             if re.match(r"^(load|kill-worker|close-conns|kill-daemon|broker-restart): ", line)]
    body = [f"`pytest tests/reliability` ({seconds:.0f} s wall): **{summary.strip('= ')}**", ""]
    body += ["```"] + [o[:220] for o in outcomes] + ["```"]
    if loads:
        body += ["", "The load scenarios at CI size:", "", "```"] + loads + ["```"]
    return "\n".join(body)


def machine() -> str:
    cores = os.cpu_count()
    rabbit = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True,
                            check=False).stdout.strip()
    return (f"{cores} cores (shared), Python {sys.version.split()[0]}, RabbitMQ {rabbit or '?'}, "
            f"database {os.environ['DATABASE_URL'].split(':')[0]}")


def write_doc(rows: list[Row], ci: str, command: str) -> None:
    text = DOC.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    generated = (f"{start}\nGenerated by `{command}` on {time.strftime('%Y-%m-%d')}; {machine()}.\n\n"
                 f"### Full size (bench)\n\n{results_table(rows)}\n\n### CI size\n\n{ci}\n{end}")
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: generated, text, flags=re.S)
    DOC.write_text(text)


def delete_bench_queues() -> None:
    """Delete every queue under this run's prefix, so the bench leaves nothing on the broker."""
    import pika

    prefix = os.environ["SHEPHERD_AMQP_PREFIX"] + "."
    names = subprocess.run(["rabbitmqctl", "list_queues", "--quiet", "--no-table-headers", "name"],
                           capture_output=True, text=True, timeout=60, check=False).stdout.split()
    connection = pika.BlockingConnection(pika.URLParameters(os.environ.get(
        "SHEPHERD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")))
    try:
        channel = connection.channel()
        for name in (n for n in names if n.startswith(prefix)):
            channel.queue_delete(name)
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--only", nargs="*", help="scenario names: " + ", ".join(
        ["load", "kill-worker", "close-connections", "kill-daemon", "broker-restart"]))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--markdown", action="store_true", help=f"run the CI suite too and rewrite {DOC}")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shepherd-reliability-"))
    setup_django(args.database_url, workdir)
    chosen = {k: v for k, v in scenarios().items() if not args.only or k in args.only}
    try:
        rows = [run_one(name, fault, args.pipelines, args.clients, workdir) for name, fault in chosen.items()]
    finally:
        delete_bench_queues()
    print(results_table(rows))
    if args.markdown:
        ci = run_ci_suite()
        print(ci)
        write_doc(rows, ci, "python bench/reliability.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
