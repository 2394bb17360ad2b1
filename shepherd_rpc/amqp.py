"""pika plumbing shared by the client and the worker: parameters, topology, backoff.

Only names from ``protocol`` are used, so both ends declare identical queues
(RabbitMQ refuses a redeclaration with different arguments).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pika
import pika.exceptions

from . import protocol

logger = logging.getLogger(__name__)

#: pika errors after which the connection (or channel) is unusable: drop it and reconnect.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
)


def connection_parameters(url: str, *, heartbeat: int, timeout: float = 5.0) -> pika.URLParameters:
    """Parameters for one connection attempt; retries are the caller's job (with Backoff).

    ``timeout`` bounds connecting and each socket operation; callers that must answer quickly
    (the API's hand-off) pass a short one.
    """
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.stack_timeout = 2 * timeout
    params.blocked_connection_timeout = max(60, heartbeat * 2) if heartbeat else 60
    return params


def _queue_args(quorum: bool, **extra: Any) -> dict[str, Any]:
    args = dict(extra)
    if quorum:
        args["x-queue-type"] = "quorum"
    return args


def declare_topology(channel: Any, prefix: str) -> None:
    """The exchanges and the dead-letter queue every step queue relies on."""
    channel.exchange_declare(protocol.steps_exchange(prefix), exchange_type="direct", durable=True)
    channel.exchange_declare(protocol.dead_letter_exchange(prefix), exchange_type="fanout", durable=True)
    channel.queue_declare(protocol.dead_letter_queue(prefix), durable=True)
    channel.queue_bind(protocol.dead_letter_queue(prefix), protocol.dead_letter_exchange(prefix))


def declare_step_queue(channel: Any, prefix: str, queue: str, *, quorum: bool = False) -> str:
    name = protocol.step_queue(prefix, queue)
    args = _queue_args(quorum, **{"x-dead-letter-exchange": protocol.dead_letter_exchange(prefix)})
    channel.queue_declare(name, durable=True, arguments=args)
    channel.queue_bind(name, protocol.steps_exchange(prefix), routing_key=queue)
    return name


def declare_reply_queue(channel: Any, prefix: str, client_name: str, *, quorum: bool = False) -> str:
    """Named and not exclusive, so it survives the client's reconnects and restarts."""
    name = protocol.reply_queue(prefix, client_name)
    channel.queue_declare(
        name, durable=True, arguments=_queue_args(quorum, **{"x-expires": protocol.REPLY_QUEUE_EXPIRES_MS})
    )
    return name


def declare_pipelines_queue(channel: Any, prefix: str, *, quorum: bool = False) -> str:
    name = protocol.pipelines_queue(prefix)
    channel.queue_declare(name, durable=True, arguments=_queue_args(quorum))
    return name


def nowait(channel: Any) -> Any:
    """The asynchronous pika Channel under a BlockingChannel, for sends that need no answer.

    BlockingChannel's ``basic_publish`` (without confirms) and ``basic_ack`` each spin the I/O loop
    until their frames are written; under load that loop was a tenth of the client's time. The
    asynchronous channel only queues the frames, which the connection writes the next time its
    owner runs ``process_data_events``, as the client's and the worker's loops do right away.
    Use it only from the thread that drives the connection.
    """
    return channel._impl


def close_quietly(connection: Any) -> None:
    """Close a connection that may already be broken; errors mean it is closed anyway."""
    if connection is not None and connection.is_open:
        try:
            connection.close()
        except CONNECTION_ERRORS:
            logger.debug("error while closing a broker connection", exc_info=True)


class Backoff:
    """Exponential delays with jitter for reconnect loops: 0.1 s doubling up to ``cap``."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0
