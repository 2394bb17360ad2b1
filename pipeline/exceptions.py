"""Shepherd's service-level errors. Each carries a message a client can act on."""

from __future__ import annotations

from dataclasses import dataclass


class ShepherdError(Exception):
    """Base of Shepherd's service errors. Do not raise directly."""

    status_code = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class FieldError:
    """One problem with a request: the field's path (``transformers_list[0].context.x``) and why."""

    field: str
    reason: str


class InvalidRequest(ShepherdError):
    """The request is invalid; see errors for each field and the reason."""

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        super().__init__(message)
        self.errors = errors


class InvalidPipeline(InvalidRequest):
    """The pipeline is invalid; see errors for each field and the reason."""


class IdempotencyConflict(ShepherdError):
    """This Idempotency-Key was already used for a different pipeline body; use a new key."""

    status_code = 409


class InvalidTransition(ShepherdError):
    """The pipeline is not in a state that allows this."""

    status_code = 409
