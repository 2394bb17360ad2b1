"""Worker library for standalone step nodes: ``@worker.step(...)`` then ``worker.run()``.

One connection is owned by the I/O thread (the thread calling ``serve``);
handlers run in a thread pool so heartbeats keep flowing during long steps.
A request is run only after the client grants the claim (see docs/protocol.md)
and acked only after its reply is confirmed: a crash means redelivery, not loss.
"""

from __future__ import annotations

import argparse
import logging
import queue as queue_module
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pika

from . import __version__, amqp, artifacts, protocol
from .confirms import ConfirmingPublisher
from .errors import ConfigurationError, DecodeError
from .settings import env_str, load_settings

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

#: Re-send an unanswered claim after this long (the client may be reconnecting).
CLAIM_RETRY_SECONDS = 3.0
#: Give up a stopping worker's unpublished replies after this many reconnect attempts.
STOP_RECONNECT_ATTEMPTS = 10


@dataclass
class _Pickup:
    """One delivery this worker holds, from claim to ack."""

    tag: int
    generation: int
    request: protocol.Request
    reply_to: str
    handler: Handler
    lease_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "claiming"  # claiming -> running -> replying -> confirming (reply sent, confirm due)
    next_claim_at: float = 0.0
    next_progress_at: float = 0.0
    started: float = 0.0
    reply_body: bytes = b""
    status: str = ""

    def log_extra(self, **more: Any) -> dict[str, Any]:
        r = self.request
        return {"step": r.step, "pipeline_id": r.pipeline_id, "attempt": r.attempt, "call_id": r.call_id,
                **more}


class Worker:
    """Serve step handlers from RabbitMQ.

    Parameters:
      name: shown to the client in claims and replies (``worker.name``).
      url, prefix: default to SHEPHERD_BROKER_URL and SHEPHERD_AMQP_PREFIX.
      concurrency: handlers run at once (and the prefetch count).
      lease_timeout, heartbeat: default to SHEPHERD_LEASE_TIMEOUT and SHEPHERD_HEARTBEAT;
        the lease timeout must match the client's.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        prefix: str | None = None,
        concurrency: int = 1,
        lease_timeout: float | None = None,
        heartbeat: int | None = None,
    ) -> None:
        settings = load_settings()
        self.name = name
        self.url = url or settings.broker_url
        self.prefix = prefix or settings.prefix
        self.concurrency = concurrency
        self.lease_timeout = lease_timeout or settings.lease_timeout
        self.heartbeat = settings.heartbeat if heartbeat is None else heartbeat
        self.quorum_queues = settings.quorum_queues
        self.max_message_bytes = settings.max_message_bytes
        self._handlers: dict[str, tuple[str, Handler]] = {}  # step -> (queue, handler)
        self._stopping = threading.Event()
        self._done: queue_module.SimpleQueue[tuple[_Pickup, bytes, str]] = queue_module.SimpleQueue()
        self._pickups: dict[str, _Pickup] = {}  # lease_id -> pickup; touched on the I/O thread only
        self._conn: Any = None
        self._ch: Any = None
        self._ctl: Any = None
        self._replies: ConfirmingPublisher | None = None
        self._control_queue = ""
        self._consumer_tags: list[str] = []
        self._generation = 0
        self._info = protocol.WorkerInfo.current(name, __version__)

    # -- registration --------------------------------------------------------

    def step(self, name: str, *, queue: str | None = None,
             files: bool = False) -> Callable[[Handler], Handler]:
        """Register ``handler(context, input) -> output`` for step ``name`` (queue defaults to name).

        With ``files=True`` the handler gets a local ``Path`` for its input reference and returns the
        path of the file it wrote, which is stored and replaced by a reference (docs/artifacts.md).
        """

        def register(handler: Handler) -> Handler:
            if name in self._handlers:
                raise ValueError(f"step {name!r} is already registered on worker {self.name!r}")
            self._handlers[name] = (queue or name, artifacts.wrap_handler(name, handler, files=files))
            return handler

        return register

    @property
    def queues(self) -> list[str]:
        return sorted({q for q, _ in self._handlers.values()})

    def handle_in_process(self, step: str, context: dict[str, Any], input: Any) -> Any:
        """Run a handler directly, without a broker (for unit tests of handlers)."""
        if step not in self._handlers:
            raise KeyError(f"worker {self.name!r} has no step {step!r}; registered: {sorted(self._handlers)}")
        return self._handlers[step][1](context, input)

    # -- command line ----------------------------------------------------------

    def run(self, argv: Sequence[str] | None = None) -> None:
        """Parse the command line, serve until SIGTERM/SIGINT, then exit (0 on a clean stop)."""
        args = _parser(self.name).parse_args(argv)
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("pika").setLevel(logging.WARNING)  # its DEBUG drowns the step log lines
        if args.broker_url:
            self.url = args.broker_url
        if args.prefix:
            self.prefix = args.prefix
        if args.concurrency is not None:
            if args.concurrency < 1:
                raise ConfigurationError(f"--concurrency must be >= 1, got {args.concurrency}")
            self.concurrency = args.concurrency
        for sig in (signal.SIGTERM, signal.SIGINT):
            # only set the flag: pika locks must not be taken inside a signal handler
            signal.signal(sig, lambda *_: self._stopping.set())
        sys.exit(self.serve())

    def stop(self) -> None:
        """Ask ``serve`` to stop consuming, finish the handlers in flight, and return. Thread-safe."""
        self._stopping.set()
        self._wake()

    # -- the I/O loop ----------------------------------------------------------

    def serve(self) -> int:
        """Consume until ``stop()``; returns the exit code."""
        if not self._handlers:
            raise ConfigurationError(
                f"worker {self.name!r} has no steps; register one with @worker.step(...)")
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.name}-step")
        backoff = amqp.Backoff()
        failures_while_stopping = 0
        try:
            while True:
                try:
                    self._connect()
                    backoff.reset()
                    self._pump()
                    return 0
                except amqp.CONNECTION_ERRORS as e:
                    self._on_connection_lost(e)
                if self._stopping.is_set():
                    failures_while_stopping += 1
                    if not self._pickups or failures_while_stopping > STOP_RECONNECT_ATTEMPTS:
                        if self._pickups:
                            logger.warning("stopping with %d unreplied request(s); the broker "
                                           "redelivers them", len(self._pickups))
                        return 0
                if self._stopping.is_set():
                    time.sleep(0.5)
                else:
                    self._stopping.wait(backoff.next_delay())
        finally:
            self._close()
            self._executor.shutdown(wait=True)
            logger.info("worker %s stopped", self.name)

    def _connect(self) -> None:
        params = amqp.connection_parameters(self.url, heartbeat=self.heartbeat)
        self._conn = pika.BlockingConnection(params)
        self._generation += 1
        self._ch = self._conn.channel()
        self._replies = ConfirmingPublisher(self._conn, self._on_reply_confirmed)
        amqp.declare_topology(self._ch, self.prefix)
        for q in self.queues:
            amqp.declare_step_queue(self._ch, self.prefix, q, quorum=self.quorum_queues)
        self._ch.basic_qos(prefetch_count=self.concurrency)
        self._ch.add_on_cancel_callback(self._on_cancelled_by_broker)
        self._cancelled_by_broker = False
        self._ctl = self._conn.channel()
        self._control_queue = self._ctl.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self._ctl.basic_consume(self._control_queue, self._on_control, auto_ack=True)
        self._consumer_tags = []
        if not self._stopping.is_set():
            for q in self.queues:
                tag = self._ch.basic_consume(protocol.step_queue(self.prefix, q), self._on_request)
                self._consumer_tags.append(tag)
        now = time.monotonic()
        for p in self._pickups.values():
            p.next_progress_at = now  # tell the client at once that our leases are alive
        logger.info("worker %s connected; serving %s (concurrency %d)", self.name,
                    ", ".join(self.queues), self.concurrency)

    def _on_cancelled_by_broker(self, frame: Any) -> None:
        """The broker cancelled a consumer (its queue was deleted, say): reconnect to redeclare it."""
        logger.warning("worker %s: the broker cancelled its consumer %s; reconnecting to consume again",
                       self.name, getattr(frame.method, "consumer_tag", "?"))
        self._cancelled_by_broker = True

    def _pump(self) -> None:
        cancelled = False
        while True:
            if self._cancelled_by_broker and not self._stopping.is_set():
                raise pika.exceptions.AMQPConnectionError("a consumer was cancelled by the broker")
            if not self._replies.is_open:
                raise pika.exceptions.AMQPChannelError("the reply channel was closed by the broker")
            self._drain_done()
            self._run_timers()
            if self._stopping.is_set():
                if not cancelled:
                    self._cancel_consuming()
                    cancelled = True
                if not self._pickups:
                    return
            self._conn.process_data_events(time_limit=self._next_wake())

    def _next_wake(self) -> float:
        now = time.monotonic()
        wake = now + 1.0
        for p in self._pickups.values():
            if p.state == "claiming":
                wake = min(wake, p.next_claim_at)
            elif p.state == "running":
                wake = min(wake, p.next_progress_at)
        return max(0.0, wake - now)

    def _cancel_consuming(self) -> None:
        logger.info("worker %s stopping: no new requests; finishing %d in flight", self.name,
                    sum(p.state != "claiming" for p in self._pickups.values()))
        for tag in self._consumer_tags:
            self._ch.basic_cancel(tag)
        self._consumer_tags = []
        for p in list(self._pickups.values()):
            if p.state == "claiming":  # not started: give it back to another worker
                self._ch.basic_nack(p.tag, requeue=True)
                del self._pickups[p.lease_id]

    def _on_connection_lost(self, error: BaseException) -> None:
        void = [p for p in self._pickups.values() if p.state == "claiming"]
        for p in void:  # their deliveries went back to the queue with the connection
            del self._pickups[p.lease_id]
        for p in self._pickups.values():
            if p.state == "confirming":  # the broker may not have the reply: send it again
                p.state = "replying"
        logger.warning("worker %s lost its broker connection (%s: %s); %d handler(s) keep running; "
                       "reconnecting", self.name, type(error).__name__, error, len(self._pickups))
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        amqp.close_quietly(conn)

    def _wake(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(lambda: None)
            except amqp.CONNECTION_ERRORS:
                pass  # the loop notices on its next pass

    # -- deliveries ------------------------------------------------------------

    def _on_request(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        if len(body) > self.max_message_bytes:
            return self._dead_letter(tag, f"body of {len(body)} bytes exceeds SHEPHERD_MAX_MESSAGE_BYTES="
                                          f"{self.max_message_bytes}", body)
        try:
            request = protocol.decode_as(body, protocol.Request)
        except DecodeError as e:
            return self._dead_letter(tag, str(e), body)
        assert isinstance(request, protocol.Request)
        if request.step not in self._handlers:
            reason = f"step {request.step!r} is not served by worker {self.name!r}"
            return self._dead_letter(tag, reason, body)
        if not props.reply_to:
            return self._dead_letter(tag, "request has no reply_to property", body)
        if time.time() > request.deadline:
            return self._dead_letter(tag, f"request for call {request.call_id} is past its deadline", body)
        pickup = _Pickup(tag=tag, generation=self._generation, request=request, reply_to=props.reply_to,
                         handler=self._handlers[request.step][1])
        self._pickups[pickup.lease_id] = pickup
        logger.debug("claiming step %s call %s (lease %s)", request.step, request.call_id, pickup.lease_id,
                     extra=pickup.log_extra())
        self._send_claim(pickup)

    def _dead_letter(self, tag: int, reason: str, body: bytes) -> None:
        logger.error("dead-lettering a request: %s; body starts %r", reason, body[:120])
        self._ch.basic_reject(tag, requeue=False)

    def _on_control(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        try:
            answer = protocol.decode_as(body, protocol.Answer)
        except DecodeError as e:
            logger.warning("ignoring a bad control message: %s", e)
            return
        assert isinstance(answer, protocol.Answer)
        p = self._pickups.get(answer.lease_id)
        if p is None or p.state != "claiming" or p.request.call_id != answer.call_id:
            logger.debug("ignoring %s for lease %s: not claiming it", answer.type, answer.lease_id)
            return
        if answer.type == "grant":
            self._start(p)
        elif answer.type == "wait":
            p.next_claim_at = time.monotonic() + min(1.0, self.lease_timeout / 5)
        else:
            logger.warning("dropping step %s call %s (pipeline %s, attempt %s): the client refused the "
                           "claim (%s); it will not run here", p.request.step, p.request.call_id,
                           p.request.pipeline_id, p.request.attempt, answer.reason, extra=p.log_extra())
            self._ch.basic_ack(p.tag)
            del self._pickups[p.lease_id]

    def _send_claim(self, p: _Pickup) -> None:
        claim = protocol.Claim(call_id=p.request.call_id, lease_id=p.lease_id,
                               control_queue=self._control_queue, worker=self._info)
        self._publish_transient(p, protocol.encode(claim))
        p.next_claim_at = time.monotonic() + CLAIM_RETRY_SECONDS

    def _publish_transient(self, p: _Pickup, body: bytes) -> None:
        props = pika.BasicProperties(correlation_id=p.request.call_id, content_type="application/json")
        self._ctl.basic_publish("", p.reply_to, body, props)

    def _run_timers(self) -> None:
        now = time.monotonic()
        for p in list(self._pickups.values()):
            if p.state == "claiming" and time.time() > p.request.deadline:
                logger.warning("giving up step %s call %s: no grant before its deadline; dead-lettering",
                               p.request.step, p.request.call_id, extra=p.log_extra())
                self._ch.basic_reject(p.tag, requeue=False)
                del self._pickups[p.lease_id]
            elif p.state == "claiming" and now >= p.next_claim_at:
                self._send_claim(p)
            elif p.state == "running" and now >= p.next_progress_at:
                self._publish_transient(p, protocol.encode(protocol.Progress(p.request.call_id, p.lease_id)))
                p.next_progress_at = now + self.lease_timeout / 3

    # -- running handlers --------------------------------------------------------

    def _start(self, p: _Pickup) -> None:
        p.state = "running"
        p.started = time.monotonic()
        p.next_progress_at = p.started + self.lease_timeout / 3
        logger.info("running step %s (pipeline %s, attempt %s, call %s)", p.request.step,
                    p.request.pipeline_id, p.request.attempt, p.request.call_id, extra=p.log_extra())
        self._executor.submit(self._execute, p)

    def _execute(self, p: _Pickup) -> None:
        """Pool thread: run the handler and encode the reply; never touches pika."""
        started_at = protocol.utc_now_iso()
        try:
            with artifacts.bind_call(p.request.pipeline_id, p.request.step_id, p.request.call_id):
                output = p.handler(p.request.context, p.request.input)
            body = protocol.encode(self._reply(p, started_at, output=output))
            status = "ok"
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error reply
            logger.error("step %s failed (pipeline %s, attempt %s, call %s): %s: %s", p.request.step,
                         p.request.pipeline_id, p.request.attempt, p.request.call_id, type(e).__name__, e,
                         exc_info=True, extra=p.log_extra())
            error = protocol.ErrorInfo(type(e).__name__, str(e), traceback.format_exc())
            body = protocol.encode(self._reply(p, started_at, error=error))
            status = "error"
        self._done.put((p, body, status))
        self._wake()

    def _reply(self, p: _Pickup, started_at: str, *, output: Any = None,
               error: protocol.ErrorInfo | None = None) -> protocol.Reply:
        return protocol.Reply(call_id=p.request.call_id, lease_id=p.lease_id,
                              status="error" if error else "ok", output=output, error=error,
                              worker=self._info, started_at=started_at)

    def _drain_done(self) -> None:
        while True:
            try:
                p, body, status = self._done.get_nowait()
            except queue_module.Empty:
                break
            p.state, p.reply_body, p.status = "replying", body, status
        for p in [p for p in self._pickups.values() if p.state == "replying"]:
            self._send_reply(p)

    def _send_reply(self, p: _Pickup) -> None:
        props = pika.BasicProperties(correlation_id=p.request.call_id, content_type="application/json",
                                     delivery_mode=pika.DeliveryMode.Persistent, message_id=str(uuid.uuid4()))
        assert self._replies is not None
        self._replies.publish("", p.reply_to, p.reply_body, props, p)
        p.state = "confirming"

    def _on_reply_confirmed(self, p: _Pickup, acked: bool) -> None:
        """The broker has the reply: only now is the request acknowledged."""
        if not acked:
            logger.warning("the broker did not take the reply for call %s (nack); sending it again",
                           p.request.call_id, extra=p.log_extra())
            p.state = "replying"
            return
        duration = time.monotonic() - p.started
        if p.generation == self._generation:
            amqp.nowait(self._ch).basic_ack(p.tag)
        else:
            logger.info("reply for call %s sent after a reconnect; the redelivered request will be refused",
                        p.request.call_id, extra=p.log_extra())
        del self._pickups[p.lease_id]
        logger.info("step %s %s in %.3f s (pipeline %s, attempt %s, call %s)", p.request.step,
                    "done" if p.status == "ok" else "failed", duration, p.request.pipeline_id,
                    p.request.attempt, p.request.call_id, extra=p.log_extra(duration=duration))


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"shepherd step worker {name!r}")
    parser.add_argument("--broker-url", help="AMQP URL (default: $SHEPHERD_BROKER_URL)")
    parser.add_argument("--prefix", help="AMQP name prefix (default: $SHEPHERD_AMQP_PREFIX)")
    parser.add_argument("--concurrency", type=int, help="handlers run at once (default 1)")
    parser.add_argument("--log-level", default=env_str("SHEPHERD_LOG_LEVEL", "INFO").upper(),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="default: $SHEPHERD_LOG_LEVEL, else INFO")
    return parser
