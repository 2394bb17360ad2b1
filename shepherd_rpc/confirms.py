"""Publisher confirms that do not wait: many messages in flight, each confirmed by a callback.

pika's BlockingChannel offers confirms only one message at a time: ``basic_publish`` returns when
that message's confirm has arrived. The client's I/O thread then spent most of its time waiting a
broker round trip per request, and that one thread capped the daemon's throughput
(docs/bench-orchestrator.md). This class puts a channel in confirm mode through the asynchronous
pika Channel that every BlockingChannel wraps, numbers its messages as the broker does (1, 2, ...
per channel), and reports each ack or nack, including the ``multiple`` ones, to ``on_confirm``.
Callbacks run on the thread that drives the connection (``process_data_events``), like consumer
callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pika.spec

from . import amqp

ConfirmHook = Callable[[Any, bool], None]


class ConfirmingPublisher:
    """A channel in confirm mode; ``publish`` returns at once, ``on_confirm(token, acked)`` follows.

    Tokens still unconfirmed when the channel or connection is lost are the caller's to publish
    again (``unconfirmed``): the broker may or may not have them.
    """

    def __init__(self, connection: Any, on_confirm: ConfirmHook, *, timeout: float = 10.0) -> None:
        self.channel = connection.channel()
        self._on_confirm = on_confirm
        self._pending: dict[int, Any] = {}  # delivery tag -> token, in publish order
        self._published = 0
        selected: list[Any] = []
        amqp.nowait(self.channel).confirm_delivery(ack_nack_callback=self._on_ack_nack,
                                                   callback=selected.append)
        deadline = time.monotonic() + timeout
        while not selected:
            if time.monotonic() > deadline or not self.channel.is_open:
                raise pika.exceptions.AMQPChannelError("the broker did not turn on publisher confirms")
            connection.process_data_events(time_limit=0.05)

    @property
    def is_open(self) -> bool:
        return bool(self.channel.is_open)

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                token: Any) -> None:
        if not self.channel.is_open:
            raise pika.exceptions.ChannelWrongStateError("publisher channel is closed")
        amqp.nowait(self.channel).basic_publish(exchange, routing_key, body, properties)
        self._published += 1
        self._pending[self._published] = token

    def unconfirmed(self) -> list[Any]:
        """Tokens published on this channel and never confirmed, oldest first; forgets them."""
        tokens = list(self._pending.values())
        self._pending.clear()
        return tokens

    def _on_ack_nack(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if not method.multiple:
            if (token := self._pending.pop(method.delivery_tag, None)) is not None:
                self._on_confirm(token, acked)
            return
        while self._pending:
            tag = next(iter(self._pending))  # the oldest: tags grow in publish order
            if tag > method.delivery_tag:
                break
            self._on_confirm(self._pending.pop(tag), acked)
