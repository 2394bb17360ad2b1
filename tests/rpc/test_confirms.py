"""ConfirmingPublisher against the real broker: every message confirmed once, none left pending."""

from __future__ import annotations

import uuid

import pika

from shepherd_rpc.confirms import ConfirmingPublisher

from .harness import open_connection, wait_until


def test_many_publishes_in_flight_are_each_confirmed_once():
    conn = open_connection()
    queue = f"test-confirms-{uuid.uuid4().hex[:8]}"
    confirmed: list[tuple[int, bool]] = []
    try:
        publisher = ConfirmingPublisher(conn, lambda token, acked: confirmed.append((token, acked)))
        publisher.channel.queue_declare(queue, durable=True)

        for n in range(300):  # more than the broker confirms one by one: it sends "multiple" acks
            publisher.publish("", queue, b"x", pika.BasicProperties(delivery_mode=2), n)
        wait_until(lambda: conn.process_data_events(time_limit=0.05) or len(confirmed) == 300, 30,
                   "every publish to be confirmed")

        assert sorted(confirmed) == [(n, True) for n in range(300)]
        assert publisher.unconfirmed() == []
        assert publisher.channel.queue_declare(queue, passive=True).method.message_count == 300
    finally:
        conn.channel().queue_delete(queue)
        conn.close()


def test_a_publish_the_broker_refuses_closes_the_channel_and_stays_unconfirmed():
    conn = open_connection()
    confirmed: list[object] = []
    try:
        publisher = ConfirmingPublisher(conn, lambda token, acked: confirmed.append(token))

        missing = f"no-such-exchange-{uuid.uuid4().hex[:8]}"
        publisher.publish(missing, "q", b"x", pika.BasicProperties(), "lost")
        wait_until(lambda: conn.process_data_events(time_limit=0.05) or not publisher.is_open, 10,
                   "the broker to close the channel")

        assert confirmed == []
        assert publisher.unconfirmed() == ["lost"]
    finally:
        conn.close()
