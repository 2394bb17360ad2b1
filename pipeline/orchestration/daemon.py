"""The orchestrator daemon: consumes the hand-off queue and runs pipelines in a bounded pool.

One thread consumes ``P.pipelines`` (prefetch = pool size, so memory stays flat however many
pipelines wait) and hands each pipeline to a pool thread. A pipeline's message is acknowledged
only once the pipeline is final; if the daemon stops, the message is requeued and the pipeline
left resumable. Every database write of the runs goes through one writer thread (writer.py). A
housekeeping thread renews the leases of the pipelines in flight and sweeps up pipelines whose
hand-off never reached the broker or whose daemon died.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pipeline import handoff
from pipeline.models import Step
from pipeline.orchestration import records
from pipeline.orchestration.mirror_process import MirrorProcess
from pipeline.orchestration.prefect_recorder import PrefectRecorder
from pipeline.orchestration.runner import Outcome, RunContext, run_pipeline, worker_label
from pipeline.orchestration.writer import Writer
from pipeline.services import record_event
from shepherd_rpc import DecodeError, RpcClient, amqp

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)


@dataclass(frozen=True)
class DaemonConfig:
    name: str
    concurrency: int
    wait_limit: float
    backoff: float
    lease: float
    sweep_interval: float
    shutdown_grace: float
    prefect: bool

    @classmethod
    def from_settings(cls, **overrides: Any) -> DaemonConfig:
        values = {
            "name": settings.SHEPHERD_DAEMON_NAME,
            "concurrency": settings.SHEPHERD_CONCURRENCY,
            "wait_limit": settings.SHEPHERD_STEP_WAIT_LIMIT,
            "backoff": settings.SHEPHERD_RETRY_BACKOFF,
            "lease": settings.SHEPHERD_PIPELINE_LEASE,
            "sweep_interval": settings.SHEPHERD_SWEEP_INTERVAL,
            "shutdown_grace": settings.SHEPHERD_SHUTDOWN_GRACE,
            "prefect": settings.SHEPHERD_PREFECT,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.recorder: PrefectRecorder | MirrorProcess = (
            MirrorProcess(threads=settings.SHEPHERD_PREFECT_THREADS, nice=settings.SHEPHERD_PREFECT_NICE)
            if config.prefect
            else PrefectRecorder(enabled=False))
        # Replies stay on the daemon's durable reply queue until their result is in the database,
        # so a daemon killed in between finds them again when it restarts.
        self.client = RpcClient(settings.SHEPHERD_BROKER_URL, prefix=settings.SHEPHERD_AMQP_PREFIX,
                                name=config.name, settle_replies=True)
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="pipeline")
        self.active: dict[int, tuple[int, int]] = {}  # pipeline id -> (channel generation, delivery tag)
        self._active_lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0
        self.writer = Writer()
        self.ctx = RunContext(client=self.client, recorder=self.recorder, writer=self.writer,
                              wait_limit=config.wait_limit,
                              backoff=config.backoff, stopping=self.stopping,
                              shutdown_grace=config.shutdown_grace, on_claimed=self._on_claimed)

    # -- lifecycle ----------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            logger.info("daemon %s stopping: no new pipelines; in-flight steps get %g s to finish",
                        self.config.name, self.config.shutdown_grace)
        self.stopping.set()

    def run(self) -> int:
        """Serve until stopped. Returns the process exit code."""
        self._resume_calls()
        self.writer.start()
        self.client.start()
        self.recorder.start()
        threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True).start()
        logger.info("daemon %s serving %s with %d slots", self.config.name, handoff.pipelines_queue(),
                    self.config.concurrency)
        try:
            self._consume_until_stopped()
        finally:
            self.pool.shutdown(wait=True)
            self._close_connection()
            self.client.close()
            self.writer.close()
            self.recorder.close()
            logger.info("daemon %s stopped", self.config.name)
        return 0

    def _resume_calls(self) -> None:
        """Re-attach to the calls this daemon had in flight when it last stopped, before any reply is read."""
        # A worker running a call reports progress every third of a lease, so after two leases of
        # silence the request was never published or is still queued: the runner publishes it again.
        wait_limit = min(self.config.wait_limit, 2 * self.client.lease_timeout)
        for step in records.running_calls(daemon=self.config.name):
            self.ctx.resumed[step.call_id] = self.client.resume(
                step.call_id, timeout=step.timeout, wait_limit=wait_limit
            )
        if self.ctx.resumed:
            logger.info("daemon %s re-attached to %d call(s) left in flight", self.config.name,
                        len(self.ctx.resumed))

    # -- consuming the hand-off queue ----------------------------------------------

    def _consume_until_stopped(self) -> None:
        backoff = amqp.Backoff()
        while not self.stopping.is_set():
            try:
                self._open_channel()
                backoff.reset()
                while not self.stopping.is_set():
                    self._connection.process_data_events(time_limit=0.5)
                self._channel.basic_cancel(self._consumer_tag)
                self._drain_while_finishing()
            except CONNECTION_ERRORS as exc:
                logger.warning("daemon lost its hand-off connection (%s: %s); reconnecting",
                               type(exc).__name__, exc)
                self._close_connection()
                self.stopping.wait(backoff.next_delay())

    def _open_channel(self) -> None:
        params = amqp.connection_parameters(settings.SHEPHERD_BROKER_URL, heartbeat=30)
        self._connection = pika.BlockingConnection(params)
        self._channel = self._connection.channel()
        self._generation += 1
        amqp.declare_pipelines_queue(self._channel, settings.SHEPHERD_AMQP_PREFIX,
                                     quorum=settings.SHEPHERD_QUORUM_QUEUES)
        self._channel.basic_qos(prefetch_count=self.config.concurrency)
        self._consumer_tag = self._channel.basic_consume(handoff.pipelines_queue(), self._on_message)

    def _drain_while_finishing(self) -> None:
        """Keep the connection serviced (acks, heartbeats) while the pool finishes its pipelines."""
        while True:
            with self._active_lock:
                if not self.active:
                    return
            self._connection.process_data_events(time_limit=0.2)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        amqp.close_quietly(connection)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = (self._generation, method.delivery_tag)
        try:
            pipeline_id = handoff.decode_handoff(body)
        except DecodeError as exc:
            logger.error("dropping a malformed hand-off message: %s", exc)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        with self._active_lock:
            if pipeline_id in self.active:
                # A second copy (redelivered after a reconnect): settle it with the run in progress.
                self.active[pipeline_id] = delivery
                return
            self.active[pipeline_id] = delivery
        self.pool.submit(self._run_one, pipeline_id)

    # -- running pipelines (pool threads) -----------------------------------------------

    def _run_one(self, pipeline_id: int) -> None:
        outcome = Outcome.FINAL
        close_old_connections()
        try:
            claim = self.writer.run(records.pipeline_claim, pipeline_id, daemon=self.config.name,
                                    lease=self.config.lease)
            if claim is records.Claim.RUN:
                outcome = run_pipeline(pipeline_id, self.ctx)
                if outcome is Outcome.INTERRUPTED:
                    self.writer.run(records.lease_release, pipeline_id, daemon=self.config.name,
                                    note=f"daemon {self.config.name!r} stopped; the pipeline resumes from "
                                    "its first unfinished step")
        except Exception:
            # A bug or a database outage: leave the pipeline resumable rather than lose it.
            logger.exception("pipeline %s: the run stopped on an unexpected error; it will be resumed",
                             pipeline_id)
            outcome = Outcome.INTERRUPTED
        finally:
            close_old_connections()
            self._settle(pipeline_id, requeue=outcome is Outcome.INTERRUPTED)

    def _settle(self, pipeline_id: int, *, requeue: bool) -> None:
        with self._active_lock:
            generation, tag = self.active.pop(pipeline_id)
        connection, channel = self._connection, self._channel

        def settle() -> None:
            if generation != self._generation or not channel.is_open:
                return  # that channel is gone; the broker has already requeued the message
            if requeue:
                channel.basic_nack(tag, requeue=True)
            else:
                channel.basic_ack(tag)

        try:
            connection.add_callback_threadsafe(settle)
        except (AttributeError, *CONNECTION_ERRORS):
            pass  # disconnected: the broker requeues it, and the claim makes the copy harmless

    # -- helpers ------------------------------------------------------------------------

    def _on_claimed(self, pipeline_id: int, step: Step, worker: dict[str, Any]) -> None:
        message = f"step {step.order_no} {step.name!r} picked up by {worker_label(worker)}"
        # The RPC thread must not wait for the database: nobody waits for this write.
        self.writer.run_later(record_event, pipeline_id, "picked_up", message, step=step, at=timezone.now())

    def _housekeeping(self) -> None:
        """Renew leases often; sweep unpublished and orphaned pipelines now and then."""
        renew_every = max(1.0, self.config.lease / 3)
        since_sweep = self.config.sweep_interval  # sweep once at start
        while not self.stopping.wait(0 if since_sweep >= self.config.sweep_interval else renew_every):
            try:
                with self._active_lock:
                    ids = list(self.active)
                self.writer.run(records.leases_renew, ids, daemon=self.config.name, lease=self.config.lease)
                if since_sweep >= self.config.sweep_interval:
                    handoff.sweep_unpublished()
                    handoff.republish_lapsed()
                    since_sweep = 0.0
                since_sweep += renew_every
            except Exception:
                logger.exception("housekeeping failed; retrying")
            finally:
                close_old_connections()
