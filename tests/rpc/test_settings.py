"""Settings come from SHEPHERD_* variables; a bad value names the variable."""

from __future__ import annotations

import pytest

from shepherd_rpc.errors import ConfigurationError
from shepherd_rpc.settings import DEFAULT_BROKER_URL, load_settings


def test_defaults_run_against_a_local_broker() -> None:
    settings = load_settings({})
    assert settings.broker_url == DEFAULT_BROKER_URL
    assert (settings.prefix, settings.quorum_queues, settings.heartbeat, settings.lease_timeout) == (
        "shepherd", False, 30, 15.0)
    assert settings.max_message_bytes == 64 * 1024 * 1024


def test_values_are_read_from_the_environment() -> None:
    settings = load_settings({"SHEPHERD_AMQP_PREFIX": "p", "SHEPHERD_QUORUM_QUEUES": "yes",
                              "SHEPHERD_HEARTBEAT": "2", "SHEPHERD_LEASE_TIMEOUT": "3.5"})
    assert (settings.prefix, settings.quorum_queues, settings.heartbeat, settings.lease_timeout) == (
        "p", True, 2, 3.5)


@pytest.mark.parametrize("name, value", [
    ("SHEPHERD_HEARTBEAT", "soon"),
    ("SHEPHERD_HEARTBEAT", "-1"),
    ("SHEPHERD_LEASE_TIMEOUT", "fast"),
    ("SHEPHERD_QUORUM_QUEUES", "maybe"),
    ("SHEPHERD_MAX_MESSAGE_BYTES", "1e9"),
])
def test_a_bad_value_fails_with_the_variable_name(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: value})
