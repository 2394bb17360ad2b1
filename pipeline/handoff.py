"""Hand-off of stored pipelines to the orchestrator through a durable RabbitMQ queue.

A pipeline is published once its row has committed, as a persistent message with publisher
confirms. If the broker cannot be reached the pipeline stays ``queued`` with ``published_at``
unset, and :func:`sweep_unpublished` (run by ``manage.py publish_pending`` and periodically by
the daemon) publishes it later, once.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pika
import pika.exceptions
from django.conf import settings
from django.utils import timezone

from shepherd_rpc import amqp, protocol

logger = logging.getLogger(__name__)

#: a pipeline younger than this is left to the request that stored it
SWEEP_GRACE = timedelta(seconds=5)

_local = threading.local()


def pipelines_queue() -> str:
    return protocol.pipelines_queue(settings.SHEPHERD_AMQP_PREFIX)


def decode_handoff(body: bytes) -> int:
    """The pipeline id in a hand-off message; shepherd_rpc's DecodeError if the body is not one."""
    return protocol.decode_as(body, protocol.Handoff).pipeline_id


def connect() -> pika.BlockingConnection:
    """A connection for the API's short broker calls: one attempt, SHEPHERD_PUBLISH_TIMEOUT long."""
    return pika.BlockingConnection(amqp.connection_parameters(
        settings.SHEPHERD_BROKER_URL, heartbeat=60, timeout=settings.SHEPHERD_PUBLISH_TIMEOUT))


def _channel() -> pika.adapters.blocking_connection.BlockingChannel:
    """This thread's confirmed channel, opened on first use and after any failure."""
    channel = getattr(_local, "channel", None)
    if channel is not None and channel.is_open:
        return channel
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    amqp.declare_pipelines_queue(channel, settings.SHEPHERD_AMQP_PREFIX,
                                 quorum=settings.SHEPHERD_QUORUM_QUEUES)
    _local.connection, _local.channel = connection, channel
    return channel


def drop_connection() -> None:
    connection = getattr(_local, "connection", None)
    _local.connection = _local.channel = None
    amqp.close_quietly(connection)


def publish_pipeline(pipeline_id: int) -> bool:
    """Publish one pipeline id; mark it published once the broker confirms. False if it could not."""
    from pipeline.models import Pipeline

    for attempt in (1, 2):  # a second try on a fresh connection, in case the cached one went stale
        try:
            _channel().basic_publish(
                exchange="",
                routing_key=pipelines_queue(),
                body=protocol.encode(protocol.Handoff(pipeline_id)),
                properties=pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
            break
        except (pika.exceptions.AMQPError, OSError) as exc:
            drop_connection()
            if attempt == 2:
                logger.warning(
                    "pipeline %s stored but not handed to the broker (%s); the sweep will publish it",
                    pipeline_id, exc or type(exc).__name__,
                )
                return False
    Pipeline.objects.filter(pk=pipeline_id, published_at__isnull=True).update(published_at=timezone.now())
    return True


def sweep_unpublished() -> int:
    """Publish every queued pipeline whose hand-off was never confirmed. Returns how many were."""
    from pipeline.models import Pipeline

    cutoff = timezone.now() - SWEEP_GRACE
    pending = Pipeline.objects.filter(
        status=Pipeline.Status.QUEUED, published_at__isnull=True, created_at__lt=cutoff
    ).values_list("pk", flat=True)
    published = 0
    for pipeline_id in pending.iterator():
        if not publish_pipeline(pipeline_id):
            break
        published += 1
    if published:
        logger.info("sweep published %d pipeline(s) that had not reached the broker", published)
    return published


def republish_lapsed() -> int:
    """Hand off again running pipelines whose daemon's lease ran out long ago (it died, and the
    broker lost or already settled its message), so a live daemon resumes them."""
    from pipeline.models import Pipeline

    cutoff = timezone.now() - timedelta(seconds=settings.SHEPHERD_PIPELINE_LEASE)
    lapsed = Pipeline.objects.filter(status=Pipeline.Status.RUNNING, lease_expires_at__lt=cutoff)
    published = sum(publish_pipeline(pk) for pk in lapsed.values_list("pk", flat=True))
    if published:
        logger.info("sweep handed off %d running pipeline(s) whose daemon stopped renewing them", published)
    return published


def broker_reachable() -> bool:
    try:
        _channel()
    except (pika.exceptions.AMQPError, OSError):
        drop_connection()
        return False
    return True
