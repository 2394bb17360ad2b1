"""The API alone under gunicorn: POST /api/pipelines/ requests/s and latency percentiles.

No daemon runs, so this measures validation, the database write and the broker hand-off only.

    .venv/bin/python bench/api_load.py                   # 2000 POSTs from 8 clients, SQLite
    .venv/bin/python bench/api_load.py --requests 5000 --clients 16 --database-url postgres://...
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from reliability import setup_django, start_gunicorn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shepherd-api-load-"))
    setup_django(args.database_url, workdir)
    from django.conf import settings

    from bench._support import delete_amqp
    from pipeline.handoff import pipelines_queue
    from tests.factories import token_for
    from tests.support.load import http_poster, noop_body, percentile, submit_concurrently
    from tests.support.processes import Processes

    procs = Processes(workdir)
    procs.env["DJANGO_SETTINGS_MODULE"] = "shepherd.settings"
    try:
        base = start_gunicorn(procs)
        bodies = [noop_body("api", i) for i in range(args.requests)]
        started = time.monotonic()
        result = submit_concurrently(http_poster(base, token_for("bench")), bodies, args.clients)
        seconds = time.monotonic() - started
    finally:
        procs.stop_all()
        delete_amqp(settings.SHEPHERD_BROKER_URL, queues=[pipelines_queue()])
    print(f"{args.requests} POSTs from {args.clients} clients in {seconds:.1f} s: "
          f"{args.requests / seconds:.1f} requests/s; statuses {dict(result.statuses)}; "
          f"p50 {percentile(result.seconds, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(result.seconds, 0.99) * 1000:.0f} ms, max {max(result.seconds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
