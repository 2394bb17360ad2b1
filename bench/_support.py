"""Helpers shared by bench/orchestrator.py and bench/prefect_options.py.

The raw pika baseline is the one bench/rpc_roundtrip.py defines (same server, same client), so
every ratio in these benches is against the same fair minimum, measured in the same run.
"""

from __future__ import annotations

import logging
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pika
import pika.exceptions

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DOC = REPO / "docs" / "bench-orchestrator.md"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import rpc_roundtrip  # noqa: E402  (the bench next door: its raw server and client)

logger = logging.getLogger("bench")


# -- statistics -------------------------------------------------------------------------


def percentile(samples: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of ``samples``; the same rule rpc_roundtrip uses for p99."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(samples: Iterable[float]) -> float:
    values = list(samples)
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- the raw pika baseline ----------------------------------------------------------------


class RawBaseline:
    """A raw pika request/reply loop (rpc_roundtrip's) to measure next to the system under test.

    Runs rpc_roundtrip's ``--serve-raw`` server as a subprocess under its own queue names, so the
    baseline shares the machine's noise with whatever is measured between its samples. The broker
    is shared: other people's fault tests may force-close every connection, so a round trip cut
    by that is reconnected (server restarted if it died) and measured again, never counted.
    """

    def __init__(self, broker_url: str, prefix: str, env: dict[str, str]) -> None:
        self.broker_url, self.prefix, self.env = broker_url, prefix, env
        self.server = self._start_server()
        self.client = rpc_roundtrip.RawClient(broker_url, prefix)
        self.samples: list[float] = []
        self.payload = "x" * 50
        self.reconnects = 0
        self.sample(5, keep=False)  # warm up: connections, the server's first declare

    def _start_server(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(BENCH / "rpc_roundtrip.py"), "--serve-raw", "--prefix", self.prefix,
             "--broker-url", self.broker_url], env=self.env)

    def _reconnect(self) -> None:
        logger.warning("raw baseline: broker connection lost; reconnecting (sample discarded)")
        self.reconnects += 1
        if self.server.poll() is not None:
            self.server = self._start_server()
        time.sleep(0.5)
        self.client = rpc_roundtrip.RawClient(self.broker_url, self.prefix)

    def _one(self) -> float:
        for _ in range(5):
            started = time.perf_counter()
            try:
                self.client.call(self.payload)
            except (pika.exceptions.AMQPError, OSError):
                self._reconnect()
                continue
            return time.perf_counter() - started
        raise RuntimeError("raw baseline: the broker keeps dropping the connection")

    def sample(self, n: int, *, keep: bool = True) -> list[float]:
        """Run ``n`` round trips; return (and, if ``keep``, remember) their durations in seconds."""
        taken = [self._one() for _ in range(n)]
        if keep:
            self.samples.extend(taken)
        return taken

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(30)
        try:
            self.client.close()
        except (pika.exceptions.AMQPError, OSError):
            pass  # dropped by the broker; the queues go below
        # A restarted server may have declared the request queue again after the client deleted it.
        queues = [rpc_roundtrip.raw_queue(self.prefix), f"{self.prefix}.raw.replies"]
        delete_amqp(self.broker_url, queues=queues)


# -- broker and process helpers ---------------------------------------------------------


def delete_amqp(broker_url: str, *, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    """Delete the named queues and exchanges (missing ones are fine): a bench leaves nothing behind."""
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        for name in queues:
            conn.channel().queue_delete(name)
        for name in exchanges:
            conn.channel().exchange_delete(name)
    finally:
        conn.close()


def purge_queue(broker_url: str, name: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        conn.channel().queue_purge(name)
    except pika.exceptions.ChannelClosedByBroker:
        pass  # never declared
    finally:
        conn.close()


def proc_status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmHWM = peak RSS, VmRSS = current) in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


# -- the report ---------------------------------------------------------------------------


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section between ``<!-- bench:name -->`` markers in the report.

    Each script owns its sections, so regenerating one table leaves the analysis and the other
    tables as they are.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Orchestrator benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    doc.write_text(text)
    logger.info("wrote section %s of %s", name, doc)


def command_line() -> str:
    return "python " + shlex.join([str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]])


CODE_PATHS = ("pipeline", "shepherd", "shepherd_rpc", "projects", "scripts")


def code_version(paths: tuple[str, ...] = CODE_PATHS) -> str:
    """The commit under test, and whether the measured code had uncommitted edits (a shared tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", *paths)
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted edits" if dirty else "")
