"""The wire protocol: names, round trips, and what counts as undecodable."""

from __future__ import annotations

import json

import pytest

from shepherd_rpc import DecodeError, protocol

WORKER = protocol.WorkerInfo(host="h", pid=1, version="0.1.0", name="csv-tools")


def test_every_amqp_name_derives_from_the_prefix() -> None:
    assert protocol.steps_exchange("P") == "P.steps"
    assert protocol.step_queue("P", "skip_column") == "P.step.skip_column"
    assert protocol.dead_letter_exchange("P") == "P.dlx"
    assert protocol.dead_letter_queue("P") == "P.dead"
    assert protocol.reply_queue("P", "daemon") == "P.replies.daemon"
    assert protocol.pipelines_queue("P") == "P.pipelines"


@pytest.mark.parametrize("message", [
    protocol.Request("c1", "skip_column", 2, 7, 9, {"project": "x"}, {"rows": [1, 2]}, 1700000000.5),
    protocol.Claim("c1", "l1", "amq.gen-1", WORKER),
    protocol.Answer("grant", "c1", "l1"),
    protocol.Answer("refuse", "c1", "l1", "call unknown or ended"),
    protocol.Answer("wait", "c1", "l1", "lease l0 is live"),
    protocol.Progress("c1", "l1"),
    protocol.Reply("c1", "l1", "ok", {"rows": 3}, None, WORKER, "2024-01-01T00:00:00+00:00"),
    protocol.Reply("c1", "l1", "error", None, protocol.ErrorInfo("ValueError", "bad", "Traceback..."),
                   WORKER, "2024-01-01T00:00:00+00:00"),
])
def test_each_envelope_survives_a_round_trip(message: protocol.Message) -> None:
    body = protocol.encode(message)
    decoded = json.loads(body)
    assert decoded["v"] == protocol.VERSION
    assert decoded["type"] == getattr(message, "type", message.TYPE)
    assert protocol.decode(body) == message


@pytest.mark.parametrize("body, complaint", [
    (b"\x00\xffnot json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"v": 2, "type": "request"}', "unsupported protocol version 2"),
    (b'{"type": "request"}', "unsupported protocol version None"),
    (b'{"v": 1, "type": "telegram"}', "unknown message type 'telegram'"),
    (b'{"v": 1, "type": "progress", "call_id": "c"}', "lacks field 'lease_id'"),
    (b'{"v": 1, "type": "progress", "call_id": "", "lease_id": "l"}', "non-empty string"),
])
def test_undecodable_bodies_raise_decode_error_with_the_raw_body(body: bytes, complaint: str) -> None:
    with pytest.raises(DecodeError, match=complaint) as excinfo:
        protocol.decode(body)
    assert excinfo.value.data == body


def test_a_request_with_a_non_object_context_is_rejected() -> None:
    good = json.loads(protocol.encode(protocol.Request("c", "s", 1, None, None, {}, None, 1.0)))
    body = json.dumps({**good, "context": [1]}).encode()
    with pytest.raises(DecodeError, match="'context' must be an object"):
        protocol.decode(body)


def test_decode_as_insists_on_the_expected_envelope() -> None:
    with pytest.raises(DecodeError, match="expected a request message, got progress"):
        protocol.decode_as(protocol.encode(protocol.Progress("c", "l")), protocol.Request)


def test_output_that_is_not_json_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        protocol.encode(protocol.Reply("c", "l", "ok", float("nan"), None, WORKER, "t"))
