"""One thread that makes the daemon's writes, many of them in one transaction.

With a thread per pipeline each opening its own write transaction, the pool spent its time
waiting for the database: SQLite lets one connection write at a time and a connection that finds
the lock taken sleeps and retries, so under load a step waited 20 ms at the median and seconds at
the tail to begin a transaction that then held the lock for under 2 ms
(docs/bench-orchestrator.md). Here the pool threads hand their writes to this thread and wait for
them; it runs whatever has queued up in one transaction (a group commit), so there is no lock to
fight over, and one commit (one WAL flush on PostgreSQL) serves many steps.

A caller's write has committed when :meth:`Writer.run` returns, exactly as when it ran its own
transaction. If any write of a batch fails, the batch is rolled back and each write runs again in
a transaction of its own, so one failure fails only its own caller.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, connections, transaction

logger = logging.getLogger(__name__)

#: most writes in one transaction
BATCH = 64


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any] | None = field(default=None)  # None: nobody waits for it


class Writer:
    def __init__(self, *, name: str = "db-writer") -> None:
        self._jobs: queue_module.SimpleQueue[_Job | None] = queue_module.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._closed = False
        self._put_lock = threading.Lock()  # no job may be queued behind the stop sentinel

    def start(self) -> Writer:
        self._thread.start()
        return self

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the writer's transaction; its result once committed."""
        future: Future[Any] = Future()
        self._put(_Job(fn, args, kwargs, future))
        return future.result()

    def run_later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue a write nobody waits for (a failure is logged)."""
        self._put(_Job(fn, args, kwargs))

    def _put(self, job: _Job | None) -> None:
        with self._put_lock:
            if self._closed:
                raise RuntimeError("the database writer is closed; the daemon is stopping")
            self._closed = job is None
            self._jobs.put(job)

    @property
    def backlog(self) -> int:
        """Writes queued and not yet taken into a transaction."""
        return self._jobs.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Make every write queued so far, then stop."""
        if self._thread.is_alive() and not self._closed:
            self._put(None)
            self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while (first := self._jobs.get()) is not None:
                batch, stop = [first], False
                while len(batch) < BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue_module.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._write(batch)
                if stop:
                    break
        finally:
            connections.close_all()  # this thread's connection: nothing else would close it

    def _write(self, batch: list[_Job]) -> None:
        try:
            with transaction.atomic():
                results = [job.fn(*job.args, **job.kwargs) for job in batch]
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
            else:
                logger.debug("a batch of %d writes failed; making them one by one", len(batch), exc_info=True)
                for job in batch:
                    self._write_one(job)
            return
        for job, result in zip(batch, results, strict=True):
            if job.future is not None:
                job.future.set_result(result)

    def _write_one(self, job: _Job) -> None:
        try:
            with transaction.atomic():
                result = job.fn(*job.args, **job.kwargs)
        except Exception as exc:
            self._fail(job, exc)
        else:
            if job.future is not None:
                job.future.set_result(result)

    def _fail(self, job: _Job, error: Exception) -> None:
        close_old_connections()  # a broken connection is replaced before the next batch
        if job.future is not None:
            job.future.set_exception(error)
        else:
            logger.error("a queued write (%s) failed", getattr(job.fn, "__name__", job.fn), exc_info=error)
