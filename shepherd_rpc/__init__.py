"""Shepherd's RPC layer over RabbitMQ: a Django-free client and worker library.

Imports only the standard library and pika, so a worker node needs nothing else.
"""

from __future__ import annotations

__version__ = "1.0.0"  # keep in step with pyproject.toml

from .client import RpcClient, StepResult
from .errors import (
    BrokerUnavailable,
    ConfigurationError,
    DecodeError,
    NoWorker,
    ProtocolError,
    RpcError,
    StepFailed,
    StepTimeout,
)
from .worker import Worker

__all__ = [
    "BrokerUnavailable",
    "ConfigurationError",
    "DecodeError",
    "NoWorker",
    "ProtocolError",
    "RpcClient",
    "RpcError",
    "StepFailed",
    "StepResult",
    "StepTimeout",
    "Worker",
]
