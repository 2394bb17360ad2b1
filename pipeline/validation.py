"""Validation of a submitted pipeline body against the project registry.

Plain functions over the parsed JSON, so the API, the compatibility endpoints and scripts share
them. Every problem is collected (not just the first) and named by its path in the body, e.g.
``transformers_list[0].context.date_start``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from pipeline.exceptions import FieldError, InvalidPipeline
from pipeline.registry import Project, StepSpec, UnknownProject, get_project, reload_if_due

MAX_NAME_LENGTH = 200
MAX_DATA_URL_LENGTH = 2000
MAX_STEPS = 100
MAX_TIMEOUT = 7 * 24 * 3600
MAX_RETRIES = 20
MAX_ORDER_NO = 1_000_000
#: how deep a context may nest; deeper is refused before anything walks it
MAX_DEPTH = 32
DATA_URL_SCHEMES = ("http", "https", "file", "s3")
#: characters PostgreSQL's text and jsonb (and UTF-8 itself) cannot hold
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class StepRequest:
    name: str
    queue: str
    order_no: int
    context: dict[str, Any]
    timeout: float
    retries: int


@dataclass(frozen=True)
class PipelineRequest:
    """A validated pipeline, its steps sorted by order_no."""

    name: str
    project: str
    data_url: str
    steps: tuple[StepRequest, ...]


def validate_pipeline(body: Any) -> PipelineRequest:
    """Check a submitted body and return it normalized, or raise :class:`InvalidPipeline`."""
    if not isinstance(body, Mapping):
        raise InvalidPipeline([FieldError("body", "must be a JSON object")])
    errors = list(_text_errors(body, ""))
    if errors:  # text a database cannot store, or nesting too deep to look into
        raise InvalidPipeline(errors)
    name = _check_name(body.get("pipeline_name"), errors)
    data_url = _check_data_url(body.get("data_url", ""), errors)
    project = _check_project(body.get("project"), errors)
    steps = _check_steps(body.get("transformers_list"), project, errors)
    if errors:
        raise InvalidPipeline(errors)
    assert project is not None
    return PipelineRequest(name=name, project=project.name, data_url=data_url, steps=steps)


def _check_name(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        errors.append(FieldError("pipeline_name", "is required"))
    elif not isinstance(value, str):
        errors.append(FieldError("pipeline_name", "must be a string"))
    elif not value.strip():
        errors.append(FieldError("pipeline_name", "must not be blank"))
    elif len(value) > MAX_NAME_LENGTH:
        errors.append(FieldError("pipeline_name", f"must be at most {MAX_NAME_LENGTH} characters"))
    else:
        return value.strip()
    return ""


def _check_data_url(value: Any, errors: list[FieldError]) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        errors.append(FieldError("data_url", "must be a string"))
        return ""
    if len(value) > MAX_DATA_URL_LENGTH:
        errors.append(FieldError("data_url", f"must be at most {MAX_DATA_URL_LENGTH} characters"))
        return ""
    parts = urlsplit(value.strip())
    has_target = bool(parts.netloc) or (parts.scheme == "file" and bool(parts.path))
    if parts.scheme not in DATA_URL_SCHEMES or not has_target:
        errors.append(
            FieldError("data_url", "must be an http://, https://, file:// or s3:// URL, or empty")
        )
        return ""
    return value.strip()


def _check_project(value: Any, errors: list[FieldError]) -> Project | None:
    if value is None:
        errors.append(FieldError("project", "is required"))
    elif not isinstance(value, str) or not value.strip():
        errors.append(FieldError("project", "must be a non-empty string"))
    else:
        try:
            return get_project(value)
        except UnknownProject as exc:
            errors.append(FieldError("project", str(exc)))
    return None


def _check_steps(
    value: Any, project: Project | None, errors: list[FieldError]
) -> tuple[StepRequest, ...]:
    if value is None:
        errors.append(FieldError("transformers_list", "is required"))
        return ()
    if not isinstance(value, list):
        errors.append(FieldError("transformers_list", "must be a list of steps"))
        return ()
    if not value:
        errors.append(FieldError("transformers_list", "must contain at least one step"))
        return ()
    if len(value) > MAX_STEPS:
        errors.append(FieldError("transformers_list", f"must contain at most {MAX_STEPS} steps"))
        return ()
    steps: list[StepRequest] = []
    seen_order: dict[int, int] = {}
    for index, item in enumerate(value):
        step = _check_step(f"transformers_list[{index}]", item, project, seen_order, index, errors)
        if step is not None:
            steps.append(step)
    return tuple(sorted(steps, key=lambda s: s.order_no))


def _check_step(
    path: str,
    item: Any,
    project: Project | None,
    seen_order: dict[int, int],
    index: int,
    errors: list[FieldError],
) -> StepRequest | None:
    if not isinstance(item, Mapping):
        errors.append(FieldError(path, "must be an object with name, order_no and context"))
        return None
    before = len(errors)
    spec = _check_step_name(f"{path}.name", item.get("name"), project, errors)
    order_no = _check_order_no(f"{path}.order_no", item.get("order_no"), seen_order, index, errors)
    context = item.get("context", {})
    if not isinstance(context, Mapping):
        errors.append(FieldError(f"{path}.context", "must be a JSON object"))
    elif spec is not None:
        errors.extend(context_errors(spec, context, f"{path}.context"))
    timeout = _check_number(f"{path}.timeout", item.get("timeout"), 1, MAX_TIMEOUT, errors)
    retries = _check_number(f"{path}.retries", item.get("retries"), 0, MAX_RETRIES, errors, integer=True)
    if len(errors) > before or spec is None or order_no is None:
        return None
    return StepRequest(
        name=spec.name,
        queue=spec.queue,
        order_no=order_no,
        context=dict(context),
        timeout=float(timeout if timeout is not None else spec.timeout),
        retries=int(retries if retries is not None else spec.retries),
    )


def _check_step_name(
    path: str, value: Any, project: Project | None, errors: list[FieldError]
) -> StepSpec | None:
    if value is None:
        errors.append(FieldError(path, "is required"))
    elif not isinstance(value, str) or not value:
        errors.append(FieldError(path, "must be a non-empty string"))
    elif project is not None:
        if value not in project.steps and reload_if_due():  # a step added since the last read
            project = get_project(project.name)
        if value in project.steps:
            return project.steps[value]
        known = ", ".join(sorted(project.steps)) or "none"
        errors.append(
            FieldError(path, f"project {project.name!r} has no step {value!r}; its steps: {known}")
        )
    return None


def _check_order_no(
    path: str, value: Any, seen: dict[int, int], index: int, errors: list[FieldError]
) -> int | None:
    if value is None:
        errors.append(FieldError(path, "is required"))
    elif isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, "must be an integer"))
    elif not 1 <= value <= MAX_ORDER_NO:
        errors.append(FieldError(path, f"must be a positive integer up to {MAX_ORDER_NO}"))
    elif value in seen:
        errors.append(FieldError(path, f"duplicates the order_no of transformers_list[{seen[value]}]"))
    else:
        seen[value] = index
        return value
    return None


def _check_number(
    path: str, value: Any, low: float, high: float, errors: list[FieldError], *, integer: bool = False
) -> float | None:
    if value is None:
        return None
    wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if wrong_type or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        errors.append(FieldError(path, f"must be {kind} between {low} and {high}"))
        return None
    return value


def _text_errors(value: Any, path: str, depth: int = 0) -> Iterator[FieldError]:
    """Strings no database stores faithfully (NUL, lone surrogates), and nesting past MAX_DEPTH."""
    where = path or "body"
    if depth > MAX_DEPTH:
        yield FieldError(where, f"is nested more than {MAX_DEPTH} levels deep")
    elif isinstance(value, str) and (bad := UNSTORABLE.search(value)):
        yield FieldError(where, "must not contain the NUL character (\\u0000)" if bad.group() == "\x00"
                         else "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield from _text_errors(key, child, depth + 1)
            yield from _text_errors(item, child, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _text_errors(item, f"{where}[{index}]", depth + 1)


def context_errors(spec: StepSpec, context: Mapping[str, Any], path: str) -> list[FieldError]:
    """Problems of ``context`` against the step's JSON Schema and its extra checks."""
    validator = Draft202012Validator(spec.schema)
    found = [FieldError(*_describe(error, path)) for error in validator.iter_errors(context)]
    if not found:
        for field, reason in (item for check in spec.checks for item in check(context)):
            found.append(FieldError(f"{path}.{field}", reason))
    return sorted(found, key=lambda e: e.field)


def _describe(error: SchemaError, base: str) -> tuple[str, str]:
    path = base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}.{missing}" if missing else path, "is required"
    if error.validator in ("oneOf", "anyOf"):
        options = " or ".join(_expected(sub) for sub in error.validator_value)
        return path, f"must be {options}"
    if error.validator == "type":
        return path, f"must be {_expected({'type': error.validator_value})}"
    return path, error.message


def _expected(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"a list of {_expected(schema.get('items', {})).removeprefix('a ').removeprefix('an ')}s"
    article = "an" if kind in ("integer", "object", "array") else "a"
    text = f"{article} {kind}" if kind else "a value"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text

