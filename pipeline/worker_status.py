"""Which steps have workers right now: consumers and waiting requests on each step's queue."""

from __future__ import annotations

from dataclasses import dataclass

import pika
import pika.exceptions
from django.conf import settings

from pipeline.handoff import connect
from pipeline.registry import all_projects
from shepherd_rpc import protocol


@dataclass(frozen=True)
class QueueStatus:
    project: str
    step: str
    queue: str
    #: workers consuming the queue now (0: requests wait, and fail with NoWorker after the wait limit)
    consumers: int
    #: requests waiting for a worker
    waiting: int


def step_queues_status() -> list[QueueStatus]:
    """The status of every registered step's queue. Raises pika's AMQPError if the broker is down."""
    connection = connect()
    try:
        return [
            _status(connection, project.name, spec.name, spec.queue)
            for project in all_projects().values()
            for spec in project.steps.values()
        ]
    finally:
        connection.close()


def _status(connection: pika.BlockingConnection, project: str, step: str, queue: str) -> QueueStatus:
    name = protocol.step_queue(settings.SHEPHERD_AMQP_PREFIX, queue)
    channel = connection.channel()
    try:
        declared = channel.queue_declare(name, passive=True).method
        consumers, waiting = declared.consumer_count, declared.message_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        consumers = waiting = 0  # never declared: no worker has ever served it
    else:
        channel.close()
    return QueueStatus(project=project, step=step, queue=queue, consumers=consumers, waiting=waiting)
