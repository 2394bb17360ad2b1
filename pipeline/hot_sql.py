"""The statements the daemon runs for every step, as fixed SQL.

Through the ORM, building, cloning and compiling these few UPDATEs and INSERTs took about half of
the daemon's CPU per step (docs/bench-orchestrator.md, "Where the daemon's CPU goes"), far more
than the database spends running them. Here each statement is written once, with table and column
names from the models' metadata quoted by the backend, and every value is adapted by its model
field (datetimes, JSON), so SQLite and PostgreSQL store exactly what the ORM would.

Rare transitions and the API's reads stay in the ORM; only what runs per step or per pipeline
is here.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model

from pipeline.models import Pipeline, PipelineEvent, Step

_TABLE_KEYS: dict[type[Model], str] = {Pipeline: "pipeline_table", Step: "step_table",
                                       PipelineEvent: "event_table"}


def _prep(model: type[Model], name: str, value: Any) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection)


@functools.cache
def _names(vendor: str) -> dict[str, str]:
    """Quoted table and column names, for ``str.format`` in the statements below."""
    del vendor  # the cache key: quoting is the backend's
    q = connection.ops.quote_name
    names = {key: q(model._meta.db_table) for model, key in _TABLE_KEYS.items()}
    for model in _TABLE_KEYS:
        for f in model._meta.concrete_fields:
            names.setdefault(f.column, q(f.column))
    return names


def _sql(template: str) -> str:
    return _format(connection.vendor, template)


@functools.cache
def _format(vendor: str, template: str) -> str:
    return template.format(**_names(vendor))


@functools.cache
def _converters(vendor: str, model: type[Model]) -> list[tuple[int, list[Any], Any]]:
    """What the ORM would apply to each column of ``model`` read from this backend."""
    del vendor
    converters = []
    for index, f in enumerate(model._meta.concrete_fields):
        col = f.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converters.append((index, found, col))
    return converters


@functools.cache
def _select_sql(vendor: str, model: type[Model], where: str, order_by: str) -> str:
    columns = ", ".join(f"{{{f.column}}}" for f in model._meta.concrete_fields)
    sql = f"SELECT {columns} FROM {{{_TABLE_KEYS[model]}}} WHERE {where}"
    return _format(vendor, f"{sql} ORDER BY {order_by}" if order_by else sql)


def select(model: type[Model], where: str, params: list[Any], *, order_by: str = "") -> list[Any]:
    """Model instances of the rows matching ``where``, with every field, as the ORM would build them."""
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(connection.vendor, model, where, order_by), params)
        rows = cursor.fetchall()
    converters = _converters(connection.vendor, model)
    instances = []
    for row in rows:
        values = list(row)
        for index, found, col in converters:
            for convert in found:
                values[index] = convert(values[index], col, connection)
        instances.append(model.from_db(connection.alias, None, values))
    return instances


def _execute(template: str, params: list[Any]) -> int:
    """Run one statement; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(template), params)
        return cursor.rowcount


_INSERT_EVENT = (
    "INSERT INTO {event_table} ({pipeline_id}, {step_id}, {created_at}, {level}, {event}, {message}, {data}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def insert_event(*, pipeline_id: int, step_id: int | None, at: datetime, level: str, event: str,
                 message: str, data: dict[str, Any] | None) -> None:
    _execute(_INSERT_EVENT, [pipeline_id, step_id, _prep(PipelineEvent, "created_at", at), level, event,
                            message, _prep(PipelineEvent, "data", data)])


_CLAIM_QUEUED = (
    "UPDATE {pipeline_table} SET {status} = %s, {claimed_by} = %s, {lease_expires_at} = %s, "
    "{started_at} = COALESCE({started_at}, %s) "
    "WHERE {id} = %s AND {status} = %s AND NOT {cancel_requested}"
)


def claim_queued(pipeline_id: int, *, daemon: str, until: datetime, now: datetime) -> bool:
    return bool(_execute(_CLAIM_QUEUED, [
        Pipeline.Status.RUNNING.value, daemon, _prep(Pipeline, "lease_expires_at", until),
        _prep(Pipeline, "started_at", now), pipeline_id, Pipeline.Status.QUEUED.value,
    ]))


# The cancel check is a sub-select on the pipeline's primary key, not a join.
_START_ATTEMPT = (
    "UPDATE {step_table} SET {attempts} = %s, {status} = %s, {call_id} = %s, {started_at} = %s, "
    "{finished_at} = NULL "
    "WHERE {id} = %s AND {pipeline_id} IN "
    "(SELECT {id} FROM {pipeline_table} WHERE {id} = %s AND NOT {cancel_requested})"
)


def start_attempt(step: Step, *, attempt: int, call_id: str, started_at: datetime) -> bool:
    """False if the step's pipeline has a cancel request (nothing is changed then)."""
    return bool(_execute(_START_ATTEMPT, [
        attempt, Step.Status.RUNNING.value, call_id, _prep(Step, "started_at", started_at), step.pk,
        step.pipeline_id,
    ]))


_STEP_SUCCEEDED = (
    "UPDATE {step_table} SET {status} = %s, {output} = %s, {worker} = %s, {error} = NULL, {finished_at} = %s "
    "WHERE {id} = %s"
)


def step_succeeded(step: Step, *, output: Any, worker: dict[str, Any], finished_at: datetime) -> None:
    _execute(_STEP_SUCCEEDED, [
        Step.Status.SUCCEEDED.value, _prep(Step, "output", output), _prep(Step, "worker", worker),
        _prep(Step, "finished_at", finished_at), step.pk,
    ])


_PIPELINE_SUCCEEDED = (
    "UPDATE {pipeline_table} SET {status} = %s, {output} = %s, {error} = NULL, {finished_at} = %s, "
    "{lease_expires_at} = NULL WHERE {id} = %s"
)


def pipeline_succeeded(pipeline_id: int, *, output: Any, finished_at: datetime) -> None:
    _execute(_PIPELINE_SUCCEEDED, [
        Pipeline.Status.SUCCEEDED.value, _prep(Pipeline, "output", output),
        _prep(Pipeline, "finished_at", finished_at), pipeline_id,
    ])


def pipeline(pipeline_id: int) -> Pipeline:
    found = select(Pipeline, "{id} = %s", [pipeline_id])
    if not found:
        raise Pipeline.DoesNotExist(f"pipeline #{pipeline_id} does not exist")
    return found[0]


def steps_in_order(pipeline_id: int) -> list[Step]:
    return select(Step, "{pipeline_id} = %s", [pipeline_id], order_by="{order_no}")
