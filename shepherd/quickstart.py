"""`bin/quickstart`: run the API, the daemon and the example workers, and send a sample pipeline.

Everything runs as separate processes, as it would across servers: gunicorn serving the API,
`manage.py runscript worker_demon`, and each example worker script. Output of each goes to
var/log/<name>.log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FINAL = {"succeeded", "failed", "cancelled"}
WORKERS = {
    "csv-worker": ["projects/generic_transformations/workers/all_steps.py", "--concurrency", "2"],
    "demo-worker": ["projects/demo/workers/demo_worker.py"],
}
SAMPLE = REPO / "samples" / "csv_pipeline.json"

logger = logging.getLogger("quickstart")


def _request(url: str, *, token: str = "", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Services:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.children[name] = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        logger.info("started %-14s pid %-7d log var/log/%s.log", name, self.children[name].pid, name)

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise SystemExit(f"{name} exited with code {child.returncode}; see var/log/{name}.log")

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in self.children.items():
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", name)
                child.kill()


def _wait_healthy(base: str, services: Services, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.check_alive()
        try:
            if _request(f"{base}/api/health/")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the API at {base} did not become healthy in {timeout:g} s; see var/log/api.log")


def _follow(base: str, pipeline_id: int, services: Services, timeout: float = 120) -> dict:
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        services.check_alive()
        events = _request(f"{base}/api/pipelines/{pipeline_id}/logs/?page_size=500")[1].get("results", [])
        for event in events[seen:]:
            logger.info("  [%s] %s", event["event"], event["message"])
        seen = len(events)
        pipeline = _request(f"{base}/api/pipelines/{pipeline_id}/")[1]
        if pipeline.get("status") in FINAL and seen and events[-1]["event"] in ("finished", "failed",
                                                                                  "cancelled"):
            return pipeline
        time.sleep(0.3)
    raise SystemExit(f"pipeline {pipeline_id} did not finish in {timeout:g} s; see var/log/")


def _show_file_output(output: object) -> None:
    """Print the first lines of a step output stored as a local file."""
    url = output.get("url", "") if isinstance(output, dict) else ""
    if url.startswith("file://"):
        path = Path(urllib.request.url2pathname(url.removeprefix("file://")))
        lines = path.read_text(encoding="utf-8").splitlines()
        logger.info("%s:\n  %s", path, "\n  ".join(lines[:15]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port of the API (default 8000)")
    parser.add_argument("--once", action="store_true", help="stop everything after the sample pipeline")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.chdir(REPO)
    log_dir = REPO / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{options.port}"

    token = subprocess.run([PYTHON, "manage.py", "issue_token", "quickstart"], check=True,
                           capture_output=True, text=True).stdout.strip()
    services = Services(log_dir)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        services.start("api", [str(Path(PYTHON).parent / "gunicorn"), "shepherd.wsgi", "--bind",
                               f"127.0.0.1:{options.port}", "--workers", "2", "--threads", "4"])
        services.start("daemon", [PYTHON, "manage.py", "runscript", "worker_demon"])
        for name, script in WORKERS.items():
            services.start(name, [PYTHON, *script])
        _wait_healthy(base, services)

        body = json.loads(SAMPLE.read_text())
        if "://" not in body["data_url"]:  # the sample names a file in this checkout
            body["data_url"] = (REPO / body["data_url"]).resolve().as_uri()
        code, created = _request(f"{base}/api/pipelines/", token=token, body=body)
        if code != 201:
            raise SystemExit(f"submitting the sample pipeline failed ({code}): {created}")
        logger.info("submitted %s as pipeline %s:", SAMPLE.relative_to(REPO), created["id"])
        pipeline = _follow(base, created["id"], services)
        logger.info("pipeline %s %s; output: %s", pipeline["id"], pipeline["status"],
                    json.dumps(pipeline["output"])[:500])
        _show_file_output(pipeline["output"])
        if options.once:
            return 0 if pipeline["status"] == "succeeded" else 1
        logger.info("\nShepherd is running: API %s/api/ (docs %s/api/docs/), token %s\n"
                    "Try: curl -H 'Authorization: Token %s' -H 'Content-Type: application/json' "
                    "-d @%s %s/api/pipelines/\nCtrl-C stops everything.",
                    base, base, token, token, SAMPLE.relative_to(REPO), base)
        while True:
            services.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        logger.info("stopping")
        services.stop()


if __name__ == "__main__":
    sys.exit(main())
