"""RpcClient: publish step requests, grant leases, and resolve futures with replies.

pika's BlockingConnection is not thread-safe, so one dedicated I/O thread owns
the connection; other threads queue work and wake it with
``add_callback_threadsafe``. The lease rules in ``_on_claim`` are what keep a
step from running twice (see docs/protocol.md).
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions

from . import amqp, protocol
from .confirms import ConfirmingPublisher
from .errors import BrokerUnavailable, DecodeError, NoWorker, RpcError, StepFailed, StepTimeout
from .settings import load_settings

logger = logging.getLogger(__name__)

EventHook = Callable[[str, dict[str, Any]], None]

#: Longest the I/O thread blocks without looking at deadlines.
MAX_IDLE_SECONDS = 1.0


@dataclass(frozen=True)
class StepResult:
    """A successful step: the handler's output and who produced it."""

    output: Any
    worker: dict[str, Any]
    started_at: str
    finished_at: str
    call_id: str
    lease_id: str


@dataclass(eq=False)
class _Call:
    """Client-side state of one call; touched only on the I/O thread after registration."""

    call_id: str
    queue: str
    step: str
    future: Future[StepResult]
    on_event: EventHook | None
    timeout: float
    wait_limit: float
    body: bytes | None  # None: resumed, published by an earlier process
    deadline_wall: float  # epoch seconds, as in the request
    wait_deadline: float  # monotonic
    final_deadline: float  # monotonic
    confirmed: bool = False
    message_id: str = ""  # of the copy last published
    claimed: bool = False
    lease_id: str | None = None
    lease_heard: float = 0.0
    granted_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class _Probe:
    queue: str
    future: Future[int]


@dataclass(frozen=True)
class _Settle:
    call_id: str


class RpcClient:
    """Call steps on workers over RabbitMQ.

    Parameters:
      url, prefix, lease_timeout: default to SHEPHERD_BROKER_URL, SHEPHERD_AMQP_PREFIX,
        SHEPHERD_LEASE_TIMEOUT (must match the workers').
      name: names the durable reply queue ``P.replies.<name>``; one live client per name.
      connect_timeout: how long ``start()`` retries before raising BrokerUnavailable.
      settle_replies: if true, a reply stays unacknowledged on the durable reply queue until the
        caller calls ``settle(call_id)`` (after recording the result), so a caller that dies in
        between gets the reply again when it restarts and resumes the call.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str | None = None,
        name: str = "default",
        lease_timeout: float | None = None,
        connect_timeout: float = 10.0,
        settle_replies: bool = False,
    ) -> None:
        settings = load_settings()
        self.url = url or settings.broker_url
        self.prefix = prefix or settings.prefix
        self.name = name
        self.lease_timeout = lease_timeout or settings.lease_timeout
        self.connect_timeout = connect_timeout
        self._heartbeat = settings.heartbeat
        self._quorum = settings.quorum_queues
        self._reply_queue = protocol.reply_queue(self.prefix, name)
        self.settle_replies = settle_replies
        self._unsettled: dict[str, tuple[Any, int]] = {}  # call id -> (channel, delivery tag)
        self._commands: queue_module.SimpleQueue[_Call | _Probe | _Settle] = queue_module.SimpleQueue()
        self._calls: dict[str, _Call] = {}
        self._probes: list[_Probe] = []
        self._declared: set[str] = set()
        self._conn: Any = None
        self._publisher: ConfirmingPublisher | None = None
        self._io: Any = None
        self._probe_ch: Any = None
        self._ready = False
        self._closing = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._last_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- public API --------------------------------------------------------------

    def start(self) -> RpcClient:
        """Connect (retrying up to ``connect_timeout``) and start the I/O thread."""
        if self._thread is not None:
            raise RpcError("RpcClient.start() was already called")
        self._thread = threading.Thread(target=self._run, name=f"shepherd-rpc-{self.name}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise BrokerUnavailable(
                f"cannot connect to the broker at {_safe_url(self.url)} after {self.connect_timeout:g} s: "
                f"{self._start_error}; check SHEPHERD_BROKER_URL and that RabbitMQ is running"
            ) from self._start_error
        return self

    def submit(
        self,
        queue: str,
        *,
        context: dict[str, Any],
        input: Any,
        timeout: float,
        wait_limit: float,
        call_id: str | None = None,
        attempt: int = 1,
        pipeline_id: Any = None,
        step_id: Any = None,
        step: str | None = None,
        on_event: EventHook | None = None,
    ) -> Future[StepResult]:
        """Publish one request; the future resolves to StepResult or raises an RpcError.

        ``wait_limit``: seconds from publishing for a worker to claim it (else NoWorker).
        ``timeout``: seconds from the grant for the reply (else StepTimeout).
        """
        self._require_running()
        if timeout <= 0 or wait_limit <= 0:
            raise ValueError(f"timeout and wait_limit must be > 0, got {timeout!r} and {wait_limit!r}")
        call_id = call_id or str(uuid.uuid4())
        now_wall, now = time.time(), time.monotonic()
        request = protocol.Request(call_id=call_id, step=step or queue, attempt=attempt,
                                   pipeline_id=pipeline_id, step_id=step_id, context=context, input=input,
                                   deadline=now_wall + wait_limit + timeout)
        try:
            body = protocol.encode(request)
        except (TypeError, ValueError) as e:
            raise ValueError(f"context and input of call {call_id} must be JSON-serialisable: {e}") from e
        call = _Call(call_id=call_id, queue=queue, step=request.step, future=_running_future(),
                     on_event=on_event, timeout=timeout, wait_limit=wait_limit, body=body,
                     deadline_wall=request.deadline, wait_deadline=now + wait_limit,
                     final_deadline=now + wait_limit + timeout,
                     extra={"call_id": call_id, "step": request.step, "pipeline_id": pipeline_id,
                            "attempt": attempt})
        self._send(call)
        return call.future

    def call(self, queue: str, **kwargs: Any) -> StepResult:
        """``submit(queue, **kwargs).result()``."""
        return self.submit(queue, **kwargs).result()

    def resume(self, call_id: str, *, timeout: float, wait_limit: float,
               on_event: EventHook | None = None) -> Future[StepResult]:
        """Re-attach to a call an earlier process published under this client name.

        Call it before ``start()`` so the call is known before the reply queue is
        consumed; otherwise a claim or reply that arrives first is refused or dropped.
        """
        if self._closing.is_set():
            raise RpcError("RpcClient is closed; create a new one to resume calls")
        now = time.monotonic()
        call = _Call(call_id=call_id, queue="", step="", future=_running_future(), on_event=on_event,
                     timeout=timeout, wait_limit=wait_limit, body=None,
                     deadline_wall=time.time() + wait_limit + timeout, wait_deadline=now + wait_limit,
                     final_deadline=now + wait_limit + timeout, confirmed=True, extra={"call_id": call_id})
        self._send(call)
        return call.future

    def settle(self, call_id: str) -> None:
        """Acknowledge the reply of a finished call (with ``settle_replies``); a no-op otherwise."""
        if self.settle_replies:
            self._send(_Settle(call_id))

    def consumers(self, queue: str, *, timeout: float = 30.0) -> int:
        """Consumers on ``P.step.<queue>`` right now (0 if the queue does not exist)."""
        self._require_running()
        probe = _Probe(queue, Future())
        self._send(probe)
        try:
            return probe.future.result(timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"no answer from the broker about queue {queue!r} in {timeout:g} s; "
                                    "is RabbitMQ reachable?") from self._last_error

    def close(self) -> None:
        """Stop the I/O thread; calls still pending fail with RpcError."""
        self._closing.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def __enter__(self) -> RpcClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hand-off to the I/O thread ------------------------------------------------

    def _require_running(self) -> None:
        if self._thread is None or self._closing.is_set():
            raise RpcError("RpcClient is not running; call start() first (or use it as a context manager)")

    def _send(self, item: _Call | _Probe | _Settle) -> None:
        self._commands.put(item)
        self._wake()

    def _wake(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(_noop)
            except Exception:  # noqa: BLE001 - best effort: closed or being replaced by the I/O thread
                pass  # reconnecting: the loop drains the commands once connected

    # -- the I/O thread ------------------------------------------------------------

    def _run(self) -> None:
        backoff = amqp.Backoff()
        give_up_at = time.monotonic() + self.connect_timeout
        try:
            while not self._closing.is_set():
                try:
                    self._connect()
                    self._started.set()
                    backoff.reset()
                    self._pump()
                except amqp.CONNECTION_ERRORS as e:
                    self._on_connection_lost(e)
                    if not self._started.is_set() and time.monotonic() > give_up_at:
                        self._start_error = e
                        return
                self._drain_commands()
                self._check_deadlines()
                self._closing.wait(backoff.next_delay())
        finally:
            self._shutdown()

    def _connect(self) -> None:
        self._conn = pika.BlockingConnection(amqp.connection_parameters(self.url, heartbeat=self._heartbeat))
        self._publisher = ConfirmingPublisher(self._conn, self._on_confirm)
        amqp.declare_topology(self._publisher.channel, self.prefix)
        self._declared = set()
        self._io = self._conn.channel()
        amqp.declare_reply_queue(self._io, self.prefix, self.name, quorum=self._quorum)
        self._drain_commands()  # resumed calls must be known before the first reply is read
        self._ready = True
        now = time.monotonic()
        for call in list(self._calls.values()):
            if call.lease_id is not None:
                call.lease_heard = now  # silence while we could not listen does not count
            if not call.confirmed:
                self._publish(call)
        self._io.basic_consume(self._reply_queue, self._on_message)
        logger.info("rpc client %s connected; replies on %s", self.name, self._reply_queue)

    def _on_connection_lost(self, error: BaseException) -> None:
        self._ready = False
        self._last_error = error
        for call in self._calls.values():
            if call.body is not None and not call.confirmed:
                logger.debug("call %s will be republished after reconnecting", call.call_id)
        if self._started.is_set():
            logger.warning("rpc client %s lost its broker connection (%s: %s); reconnecting with %d call(s) "
                           "pending", self.name, type(error).__name__, error, len(self._calls))
        conn, self._conn = self._conn, None
        amqp.close_quietly(conn)

    def _pump(self) -> None:
        while not self._closing.is_set():
            if not self._publisher.is_open:
                # closed by the broker between publishes: what it had not confirmed is published again
                raise pika.exceptions.AMQPChannelError("the publishing channel was closed by the broker")
            self._drain_commands()
            self._check_deadlines()
            self._conn.process_data_events(time_limit=self._next_wake())

    def _next_wake(self) -> float:
        now = time.monotonic()
        wake = now + MAX_IDLE_SECONDS
        for call in self._calls.values():
            wake = min(wake, self._deadline_of(call))
        return max(0.0, wake - now)

    def _drain_commands(self) -> None:
        while True:
            try:
                item = self._commands.get_nowait()
            except queue_module.Empty:
                break
            if isinstance(item, _Settle):
                self._ack_reply(item.call_id)
            elif isinstance(item, _Probe):
                self._probes.append(item)
            elif item.call_id in self._calls:
                error = ValueError(f"call {item.call_id} is already pending on this client")
                item.future.set_exception(error)
            else:
                self._calls[item.call_id] = item
                if self._ready and not item.confirmed:
                    self._publish(item)
        if self._ready:
            while self._probes:
                self._answer_probe(self._probes[-1])
                self._probes.pop()  # only once answered: a connection error keeps it for the next try

    def _shutdown(self) -> None:
        self._ready = False
        self._drain_commands()
        error = RpcError(f"RpcClient {self.name!r} closed while the call was pending; "
                         "re-attach from a new client with resume(call_id)")
        for call in list(self._calls.values()):
            self._end(call, error)
        for probe in self._probes:
            probe.future.set_exception(error)
        conn, self._conn = self._conn, None
        amqp.close_quietly(conn)
        self._started.set()

    # -- publishing ------------------------------------------------------------------

    def _publish(self, call: _Call) -> None:
        """Publish one copy of the request; its confirm comes later to ``_on_confirm``."""
        assert call.body is not None and self._publisher is not None
        remaining_ms = max(1, int((call.deadline_wall - time.time()) * 1000))
        call.message_id = str(uuid.uuid4())
        props = pika.BasicProperties(
            correlation_id=call.call_id, reply_to=self._reply_queue, message_id=call.message_id,
            expiration=str(remaining_ms), delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
        )
        try:
            if call.queue not in self._declared:
                amqp.declare_step_queue(self._publisher.channel, self.prefix, call.queue, quorum=self._quorum)
                self._declared.add(call.queue)
        except pika.exceptions.ChannelClosedByBroker as e:
            # The channel is gone with whatever it had not confirmed: those go out again on a new one.
            lost = self._publisher.unconfirmed()
            self._publisher = ConfirmingPublisher(self._conn, self._on_confirm)
            self._end(call, BrokerUnavailable(
                f"the broker refused the request for step queue {call.queue!r}: {e}; if the queue exists "
                "with other arguments, check SHEPHERD_QUORUM_QUEUES matches the workers'"))
            for other in lost:
                if other.call_id in self._calls and other is not call:
                    self._publish(other)
            return
        self._publisher.publish(protocol.steps_exchange(self.prefix), call.queue, call.body, props, call)

    def _on_confirm(self, call: _Call, acked: bool) -> None:
        if self._calls.get(call.call_id) is not call or call.confirmed:
            return  # ended meanwhile (deadline, reply), or a worker's claim already showed it arrived
        if not acked:
            logger.warning("the broker did not take call %s (nack); publishing it again", call.call_id,
                           extra=call.extra)
            self._publish(call)
            return
        self._confirmed(call)

    def _confirmed(self, call: _Call) -> None:
        call.confirmed = True
        logger.debug("published call %s to %s", call.call_id, call.queue, extra=call.extra)
        self._emit(call, "published",
                   {"call_id": call.call_id, "queue": call.queue, "message_id": call.message_id})

    def _answer(self, claim: protocol.Claim, kind: protocol.AnswerType, reason: str = "") -> None:
        body = protocol.encode(protocol.Answer(kind, claim.call_id, claim.lease_id, reason))
        amqp.nowait(self._io).basic_publish("", claim.control_queue, body,
                                            pika.BasicProperties(correlation_id=claim.call_id))

    def _answer_probe(self, probe: _Probe) -> None:
        try:
            if self._probe_ch is None or not self._probe_ch.is_open:
                self._probe_ch = self._conn.channel()
            ok = self._probe_ch.queue_declare(protocol.step_queue(self.prefix, probe.queue), passive=True)
            probe.future.set_result(ok.method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                probe.future.set_exception(BrokerUnavailable(f"cannot inspect queue {probe.queue!r}: {e}"))
            else:
                probe.future.set_result(0)
            self._probe_ch = None

    # -- incoming: claims, progress, replies --------------------------------------------

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        try:
            message = protocol.decode(body)
        except DecodeError as e:
            logger.warning("dropping an undecodable message on %s: %s", self._reply_queue, e)
        else:
            if isinstance(message, protocol.Claim):
                self._on_claim(message)
            elif isinstance(message, protocol.Progress):
                self._on_progress(message)
            elif isinstance(message, protocol.Reply):
                resolved = self._on_reply(message)
                if self.settle_replies and (resolved or message.call_id in self._unsettled):
                    # Acknowledged by settle() once the caller has recorded the result; a copy
                    # redelivered after a reconnect replaces the tag of the channel that is gone.
                    self._unsettled[message.call_id] = (channel, method.delivery_tag)
                    return
            else:
                logger.warning("dropping a %s message on the reply queue %s: only claim, progress and "
                               "reply belong there", type(message).__name__, self._reply_queue)
        amqp.nowait(channel).basic_ack(method.delivery_tag)

    def _ack_reply(self, call_id: str) -> None:
        channel, tag = self._unsettled.pop(call_id, (None, 0))
        if channel is not None and channel is self._io and channel.is_open:
            amqp.nowait(channel).basic_ack(tag)
        # else: that channel is gone and the broker requeued the reply; the next copy is dropped

    def _on_claim(self, claim: protocol.Claim) -> None:
        call = self._calls.get(claim.call_id)
        if call is None:
            logger.info("refusing claim of %s by %s: the call is unknown or has ended",
                        claim.call_id, claim.worker.name)
            return self._answer(claim, "refuse", "call unknown or ended")
        if not call.confirmed:
            self._confirmed(call)  # a worker has it, so the broker had it; its confirm may still come
        now = time.monotonic()
        call.claimed = True
        live = call.lease_id is not None and now - call.lease_heard <= self.lease_timeout
        if live and call.lease_id != claim.lease_id:
            return self._answer(claim, "wait", f"lease {call.lease_id} is live")
        if call.lease_id is not None and call.lease_id != claim.lease_id:
            logger.warning("lease %s of call %s silent for %.1f s; granting %s to %s", call.lease_id,
                           call.call_id, now - call.lease_heard, claim.lease_id, claim.worker.name,
                           extra=call.extra)
        is_new = call.lease_id != claim.lease_id
        call.lease_id, call.lease_heard = claim.lease_id, now
        if call.granted_at is None:
            call.granted_at = now
        self._answer(claim, "grant")
        if is_new:
            self._emit(call, "claimed", asdict(claim.worker))

    def _on_progress(self, progress: protocol.Progress) -> None:
        call = self._calls.get(progress.call_id)
        if call is None:
            logger.debug("progress for ended call %s ignored", progress.call_id)
            return
        now = time.monotonic()
        if call.lease_id != progress.lease_id:
            if call.lease_id is not None and now - call.lease_heard <= self.lease_timeout:
                logger.debug("progress of superseded lease %s ignored", progress.lease_id)
                return
            # a resumed call, or an old lease that came back: it is running, so it holds the lease
            call.lease_id, call.claimed = progress.lease_id, True
            call.granted_at = call.granted_at or now
        call.lease_heard = now
        self._emit(call, "progress", {"call_id": call.call_id, "lease_id": progress.lease_id})

    def _on_reply(self, reply: protocol.Reply) -> bool:
        """Resolve the call's future; False if the call has already ended (the reply is dropped)."""
        call = self._calls.pop(reply.call_id, None)
        if call is None:
            logger.debug("dropped reply for ended call %s (lease %s)", reply.call_id, reply.lease_id)
            return False
        worker = asdict(reply.worker)
        self._emit(call, "replied", {"call_id": call.call_id, "lease_id": reply.lease_id,
                                     "status": reply.status})
        if reply.status == "ok":
            call.future.set_result(StepResult(output=reply.output, worker=worker, started_at=reply.started_at,
                                              finished_at=reply.finished_at, call_id=reply.call_id,
                                              lease_id=reply.lease_id))
        else:
            err = reply.error or protocol.ErrorInfo("UnknownError", "worker sent no error details")
            call.future.set_exception(StepFailed(err.type, err.message, err.traceback, worker))
        return True

    # -- deadlines ------------------------------------------------------------------------

    @staticmethod
    def _deadline_of(call: _Call) -> float:
        if call.granted_at is not None:
            return min(call.granted_at + call.timeout, call.final_deadline)
        if not call.claimed:
            return call.wait_deadline
        return call.final_deadline

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for call in [c for c in self._calls.values() if now > self._deadline_of(c)]:
            if not self._ready:
                error: RpcError = BrokerUnavailable(
                    f"call {call.call_id} ({call.step or 'resumed'}) reached its deadline while the broker "
                    f"at {_safe_url(self.url)} was unreachable: {self._last_error}")
                error.__cause__ = self._last_error
            elif call.granted_at is not None or call.claimed:
                error = StepTimeout(f"step '{call.step or call.call_id}' claimed by a worker but no reply "
                                    f"within {call.timeout:g} s (call {call.call_id})")
            else:
                error = NoWorker(call.step or call.call_id, call.wait_limit)
            self._end(call, error)

    def _end(self, call: _Call, error: RpcError) -> None:
        self._calls.pop(call.call_id, None)
        logger.info("call %s (%s) ended: %s", call.call_id, call.step or "resumed", error, extra=call.extra)
        call.future.set_exception(error)

    def _emit(self, call: _Call, kind: str, payload: dict[str, Any]) -> None:
        if call.on_event is None:
            return
        try:
            call.on_event(kind, payload)
        except Exception:
            logger.exception("on_event hook raised for %s of call %s; ignored", kind, call.call_id)


def _running_future() -> Future[StepResult]:
    """A future callers cannot cancel: the request may already be on the wire."""
    future: Future[StepResult] = Future()
    future.set_running_or_notify_cancel()
    return future


def _noop() -> None:
    pass


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    params = pika.URLParameters(url)
    return f"amqp://{params.host}:{params.port}/{quote(params.virtual_host, safe='')}"
