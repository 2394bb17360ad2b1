"""Start Shepherd's daemon and workers as real processes for a test, and stop them after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.db import connection

from tests.support.waiting import wait_until  # noqa: F401 - re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
DEMO_WORKER = REPO / "projects" / "demo" / "workers" / "demo_worker.py"


def database_url() -> str:
    """The URL of the database this test uses (the test database), for child processes."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


class Processes:
    """Child processes of one test; their output goes to files shown when the test fails."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url(),
            "SHEPHERD_PREFECT": "false",
            "PREFECT_HOME": str(workdir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, label: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{label}.log"
        handle = open(log, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, cwd=REPO, env={**self.env, **env}, stdout=handle,
                                   stderr=subprocess.STDOUT)
        self.children.append((label, process, log))
        return process

    def daemon(self, *extra: str, label: str = "daemon", **env: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "manage.py", "runscript", "worker_demon", "--script-args", *extra]
        return self.start(label, args, **env)

    def demo_worker(self, label: str = "worker", concurrency: int = 4, **env: str) -> subprocess.Popen[bytes]:
        return self.start(label, [sys.executable, str(DEMO_WORKER), "--concurrency", str(concurrency)], **env)

    def logs(self) -> str:
        return "\n".join(f"----- {label} -----\n{log.read_text(errors='replace')[-6000:]}"
                         for label, _, log in self.children)

    def stop_all(self) -> None:
        for _, process, _ in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, _ in self.children:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
