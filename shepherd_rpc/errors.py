"""One exception tree for the RPC layer.

Every failure a caller can see is an ``RpcError``; pika's own exceptions are
always translated (and chained) so callers never import pika to catch them.
"""

from __future__ import annotations

from typing import Any


class RpcError(Exception):
    """Base class of every shepherd_rpc error. Do not raise it directly."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(RpcError, ValueError):
    """A setting (argument or environment variable) has a bad value."""


class StepFailed(RpcError):
    """The step's handler raised; the error was carried back from the worker."""

    def __init__(
        self,
        error_type: str,
        message: str,
        traceback: str | None = None,
        worker: dict[str, Any] | None = None,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.worker = worker or {}
        where = self.worker.get("name") or "a worker"
        super().__init__(f"step failed on {where}: {error_type}: {message}")


class StepTimeout(RpcError):
    """A worker was granted the call but no reply came within the timeout."""


class NoWorker(RpcError):
    """No worker claimed the request within the wait limit."""

    def __init__(self, step: str, waited: float, worker_hint: str = "worker") -> None:
        self.step = step
        self.waited = waited
        super().__init__(
            f"no worker is consuming '{step}' (waited {waited:g} s); "
            f"start one with `python {worker_hint}.py` or check SHEPHERD_BROKER_URL"
        )


class BrokerUnavailable(RpcError):
    """The broker could not be reached or refused a publish after retries."""


class DecodeError(RpcError):
    """A message body is not a valid shepherd envelope.

    Keeps the raw body (``data``) and the underlying error (``cause``) so the
    log line can show what arrived.
    """

    def __init__(self, message: str, data: bytes, cause: BaseException | None = None) -> None:
        self.data = data
        self.cause = cause
        super().__init__(message)


class ProtocolError(RpcError):
    """A well-formed message arrived where the protocol does not allow it."""
