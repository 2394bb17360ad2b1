"""The shepherd RPC wire protocol: AMQP names, envelopes, encode/decode.

Everything both ends must agree on lives here, so a worker node and the
daemon can be checked against one file. See docs/protocol.md for the flow
(request -> claim -> grant/refuse/wait -> progress -> reply) and why it exists.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from .errors import DecodeError

#: Bumped on any incompatible change; decoders reject other values.
VERSION = 1

#: An abandoned reply queue is removed by the broker after a day unused.
REPLY_QUEUE_EXPIRES_MS = 24 * 60 * 60 * 1000


# -- names -------------------------------------------------------------------


def steps_exchange(prefix: str) -> str:
    """Durable direct exchange that routes requests by step queue name."""
    return f"{prefix}.steps"


def step_queue(prefix: str, queue: str) -> str:
    """Durable queue consumed by the workers of one step (routing key ``queue``)."""
    return f"{prefix}.step.{queue}"


def dead_letter_exchange(prefix: str) -> str:
    return f"{prefix}.dlx"


def dead_letter_queue(prefix: str) -> str:
    return f"{prefix}.dead"


def reply_queue(prefix: str, client_name: str) -> str:
    """Durable, named reply queue of one client: it outlives connection drops."""
    return f"{prefix}.replies.{client_name}"


def pipelines_queue(prefix: str) -> str:
    """Queue the API uses to hand pipeline ids to the daemon."""
    return f"{prefix}.pipelines"


# -- envelopes ---------------------------------------------------------------


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class WorkerInfo:
    host: str
    pid: int
    version: str
    name: str

    @classmethod
    def current(cls, name: str, version: str) -> WorkerInfo:
        return cls(host=socket.gethostname(), pid=os.getpid(), version=version, name=name)


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str | None = None


@dataclass(frozen=True)
class Request:
    """client -> ``P.steps``: run ``step`` once for this call."""

    TYPE: ClassVar[str] = "request"
    call_id: str
    step: str
    attempt: int
    pipeline_id: Any
    step_id: Any
    context: dict[str, Any]
    input: Any
    deadline: float  # epoch seconds; after it nobody waits for the answer


@dataclass(frozen=True)
class Claim:
    """worker -> reply queue: "I hold this request; may I run it?" Sent before running."""

    TYPE: ClassVar[str] = "claim"
    call_id: str
    lease_id: str
    control_queue: str
    worker: WorkerInfo


AnswerType = Literal["grant", "refuse", "wait"]


@dataclass(frozen=True)
class Answer:
    """client -> worker control queue: the verdict on one claim."""

    TYPE: ClassVar[str] = "answer"  # the wire type is the value of ``type``
    type: AnswerType
    call_id: str
    lease_id: str
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    """worker -> reply queue, every lease_timeout/3 s while the handler runs."""

    TYPE: ClassVar[str] = "progress"
    call_id: str
    lease_id: str


@dataclass(frozen=True)
class Reply:
    """worker -> reply queue: the outcome of one granted run."""

    TYPE: ClassVar[str] = "reply"
    call_id: str
    lease_id: str
    status: Literal["ok", "error"]
    output: Any
    error: ErrorInfo | None
    worker: WorkerInfo
    started_at: str
    finished_at: str = field(default_factory=utc_now_iso)


@dataclass(frozen=True)
class Handoff:
    """API -> ``P.pipelines``: a stored pipeline for a daemon to claim and run."""

    TYPE: ClassVar[str] = "handoff"
    pipeline_id: int


Message = Request | Claim | Answer | Progress | Reply | Handoff

_ANSWER_TYPES = ("grant", "refuse", "wait")


def encode(message: Message) -> bytes:
    """Serialise an envelope to compact UTF-8 JSON. Raises ValueError/TypeError
    if the payload is not JSON (NaN, sets, objects)."""
    body = asdict(message)
    if not isinstance(message, Answer):
        body["type"] = message.TYPE
    body["v"] = VERSION
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode(data: bytes) -> Message:
    """Parse any envelope. Every failure becomes ``DecodeError`` with the raw body."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"message body is not JSON: {e}", data, e) from e
    if not isinstance(body, dict):
        raise DecodeError("message body is not a JSON object", data)
    if body.get("v") != VERSION:
        raise DecodeError(
            f"unsupported protocol version {body.get('v')!r} (this side speaks v={VERSION}); "
            "upgrade shepherd_rpc on the older side",
            data,
        )
    kind = body.get("type")
    try:
        return _BUILDERS[kind](body)
    except KeyError as e:
        if kind not in _BUILDERS:
            raise DecodeError(f"unknown message type {kind!r}", data, e) from e
        raise DecodeError(f"{kind} message lacks field {e.args[0]!r}", data, e) from e
    except (TypeError, ValueError) as e:
        raise DecodeError(f"{kind} message has a bad field: {e}", data, e) from e


def decode_as(data: bytes, expected: type[Message]) -> Message:
    """Decode and insist on one envelope class (``DecodeError`` otherwise)."""
    message = decode(data)
    if not isinstance(message, expected):
        raise DecodeError(f"expected a {expected.TYPE} message, got {type(message).TYPE}", data)
    return message


def _str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string, not {value!r}")
    return value


def _worker(body: dict[str, Any]) -> WorkerInfo:
    w = body["worker"]
    if not isinstance(w, dict):
        raise ValueError(f"'worker' must be an object, not {w!r}")
    return WorkerInfo(host=str(w["host"]), pid=int(w["pid"]), version=str(w["version"]), name=str(w["name"]))


def _request(body: dict[str, Any]) -> Request:
    context, deadline, attempt = body["context"], body["deadline"], body["attempt"]
    if not isinstance(context, dict):
        raise ValueError(f"'context' must be an object, not {type(context).__name__}")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise ValueError(f"'deadline' must be epoch seconds, not {deadline!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise ValueError(f"'attempt' must be an integer, not {attempt!r}")
    return Request(
        call_id=_str(body, "call_id"),
        step=_str(body, "step"),
        attempt=attempt,
        pipeline_id=body["pipeline_id"],
        step_id=body["step_id"],
        context=context,
        input=body["input"],
        deadline=float(deadline),
    )


def _claim(body: dict[str, Any]) -> Claim:
    return Claim(
        call_id=_str(body, "call_id"),
        lease_id=_str(body, "lease_id"),
        control_queue=_str(body, "control_queue"),
        worker=_worker(body),
    )


def _answer(body: dict[str, Any]) -> Answer:
    return Answer(
        type=body["type"],
        call_id=_str(body, "call_id"),
        lease_id=_str(body, "lease_id"),
        reason=str(body.get("reason") or ""),
    )


def _handoff(body: dict[str, Any]) -> Handoff:
    pipeline_id = body["pipeline_id"]
    if isinstance(pipeline_id, bool) or not isinstance(pipeline_id, int):
        raise ValueError(f"'pipeline_id' must be an integer, not {pipeline_id!r}")
    return Handoff(pipeline_id=pipeline_id)


def _progress(body: dict[str, Any]) -> Progress:
    return Progress(call_id=_str(body, "call_id"), lease_id=_str(body, "lease_id"))


def _reply(body: dict[str, Any]) -> Reply:
    status, error = body["status"], body["error"]
    if status not in ("ok", "error"):
        raise ValueError(f"'status' must be 'ok' or 'error', not {status!r}")
    if status == "error" and not isinstance(error, dict):
        raise ValueError("an error reply needs an 'error' object")
    return Reply(
        call_id=_str(body, "call_id"),
        lease_id=_str(body, "lease_id"),
        status=status,
        output=body["output"],
        error=None if error is None else ErrorInfo(str(error["type"]), str(error["message"]),
                                                   error.get("traceback")),
        worker=_worker(body),
        started_at=_str(body, "started_at"),
        finished_at=_str(body, "finished_at"),
    )


_BUILDERS = {
    "request": _request,
    "claim": _claim,
    "progress": _progress,
    "reply": _reply,
    "handoff": _handoff,
    **{kind: _answer for kind in _ANSWER_TYPES},
}
