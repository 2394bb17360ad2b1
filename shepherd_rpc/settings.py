"""Settings from ``SHEPHERD_*`` environment variables (the names the Django side uses).

Worker nodes have no Django, so this is a tiny stdlib reader that fails with
the variable's name and the bad value instead of a bare ValueError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name)
    return default if value is None or value == "" else value


def env_float(name: str, default: float, environ: Mapping[str, str] | None = None,
              *, minimum: float | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"invalid number for env var {name}: {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"env var {name} must be >= {minimum:g}, got {raw!r}")
    return value


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None,
            *, minimum: int | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"invalid integer for env var {name}: {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"env var {name} must be >= {minimum}, got {raw!r}")
    return value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"invalid boolean for env var {name}: {raw!r} (use true/false, 1/0, yes/no)")


@dataclass(frozen=True)
class RpcSettings:
    broker_url: str = DEFAULT_BROKER_URL
    prefix: str = "shepherd"
    quorum_queues: bool = False
    heartbeat: int = 30
    lease_timeout: float = 15.0
    max_message_bytes: int = 64 * 1024 * 1024


def load_settings(environ: Mapping[str, str] | None = None) -> RpcSettings:
    """Read every ``SHEPHERD_*`` knob the RPC layer uses; raise ConfigurationError on a bad one."""
    return RpcSettings(
        broker_url=env_str("SHEPHERD_BROKER_URL", DEFAULT_BROKER_URL, environ),
        prefix=env_str("SHEPHERD_AMQP_PREFIX", "shepherd", environ),
        quorum_queues=env_bool("SHEPHERD_QUORUM_QUEUES", False, environ),
        heartbeat=env_int("SHEPHERD_HEARTBEAT", 30, environ, minimum=0),
        lease_timeout=env_float("SHEPHERD_LEASE_TIMEOUT", 15.0, environ, minimum=0.5),
        max_message_bytes=env_int("SHEPHERD_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, environ, minimum=1024),
    )
