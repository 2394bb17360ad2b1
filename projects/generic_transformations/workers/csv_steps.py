"""The generic_transformations steps as streaming CSV transforms, and the worker that serves them.

Each transform is ``transform(src, dst, context)``: it reads the CSV at ``src`` with the stdlib csv
module and writes ``dst`` row by row, so memory does not grow with the file (``aggregate`` holds
its pivot table, bounded by the distinct keys, not the rows). The first row is the header. A bad
context raises :class:`TransformError` (a ValueError) naming the column and the available ones.
Contexts and policies are documented in docs/artifacts.md.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

from shepherd_rpc import Worker
from shepherd_rpc.artifacts import output_path

csv.field_size_limit(sys.maxsize)

Transform = Callable[[Path, Path, dict[str, Any]], None]


class TransformError(ValueError):
    """The step's context does not fit the input (a missing column, a bad separator, …)."""


class UnknownColumn(TransformError):
    def __init__(self, column: str, header: Sequence[str], field: str = "column") -> None:
        self.column = column
        super().__init__(f"{field}: column {column!r} is not in the input; available columns: "
                         f"{', '.join(header) or '(none)'}")


# -- reading and writing ----------------------------------------------------------------------------


def _open_in(path: Path) -> TextIO:
    return open(path, newline="", encoding="utf-8-sig")


def _open_out(path: Path) -> TextIO:
    return open(path, "w", newline="", encoding="utf-8")


def _header(reader: Iterator[list[str]]) -> list[str]:
    try:
        return next(reader)
    except StopIteration:
        raise TransformError("the input is empty: a CSV needs a header row") from None


def _rows(reader: Iterator[list[str]], width: int) -> Iterator[list[str]]:
    """Data rows padded to the header's width; a row longer than the header is an error."""
    for row in reader:
        if len(row) < width:
            row = row + [""] * (width - len(row))
        elif len(row) > width:
            line = getattr(reader, "line_num", "?")
            raise TransformError(f"line {line}: {len(row)} fields but the header has {width}")
        yield row


def _index(header: Sequence[str], column: str, field: str = "column") -> int:
    if column not in header:
        raise UnknownColumn(column, header, field)
    return header.index(column)


def _names(value: Any, field: str, *, comma_separated: bool = False) -> list[str]:
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")] if comma_separated else [value]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = list(value)
    else:
        raise TransformError(f"{field}: expected a column name or a list of names, got {value!r}")
    if not names or any(not n for n in names):
        raise TransformError(f"{field}: column names must not be empty, got {value!r}")
    return names


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TransformError(f"{field}: expected true/false (or \"True\"/\"False\"), got {value!r}")


def _stream(src: Path, dst: Path, make: Callable[[list[str]], tuple[list[str], Callable]]) -> None:
    """Write ``dst`` from ``src``: ``make(header)`` returns the new header and a row function."""
    with _open_in(src) as fin, _open_out(dst) as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        header = _header(reader)
        new_header, convert = make(header)
        writer.writerow(new_header)
        writer.writerows(convert(row) for row in _rows(reader, len(header)))


def _no_clash(names: Sequence[str], header: Sequence[str], field: str) -> None:
    taken = [n for n in names if n in header]
    if taken or len(set(names)) != len(names):
        raise TransformError(f"{field}: {', '.join(taken) or 'duplicate names'} would duplicate a column; "
                             f"existing columns: {', '.join(header)}")


# -- the transforms ---------------------------------------------------------------------------------


def skip_column(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """Drop ``columns`` (a name or a list of names)."""
    def make(header: list[str]) -> tuple[list[str], Callable]:
        drop = {_index(header, c, "columns") for c in _names(context.get("columns"), "columns")}
        keep = [i for i in range(len(header)) if i not in drop]
        return [header[i] for i in keep], lambda row: [row[i] for i in keep]

    _stream(src, dst, make)


def merge_columns(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """Append ``output_column`` = ``columns`` joined by ``separator``; ``drop_flag`` drops the sources."""
    separator = context.get("separator")
    if not isinstance(separator, str):
        raise TransformError(f"separator: expected a string, got {separator!r}")
    output = context.get("output_column")
    if not isinstance(output, str) or not output:
        raise TransformError(f"output_column: expected a column name, got {output!r}")
    drop = _flag(context.get("drop_flag", False), "drop_flag")

    def make(header: list[str]) -> tuple[list[str], Callable]:
        sources = [_index(header, c, "columns") for c in _names(context.get("columns"), "columns")]
        keep = [i for i in range(len(header)) if not (drop and i in sources)]
        _no_clash([output], [header[i] for i in keep], "output_column")
        return ([header[i] for i in keep] + [output],
                lambda row: [row[i] for i in keep] + [separator.join(row[i] for i in sources)])

    _stream(src, dst, make)


def anonymize(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """In ``column``, replace every match of the case-insensitive regex ``to_replace`` by ``replace_val``
    (taken literally: no group references)."""
    try:
        pattern = re.compile(str(context.get("to_replace", "")), re.IGNORECASE)
    except re.error as exc:
        raise TransformError(f"to_replace: {context.get('to_replace')!r} is not a valid pattern: "
                             f"{exc}") from None
    replacement = str(context.get("replace_val", ""))

    def make(header: list[str]) -> tuple[list[str], Callable]:
        i = _index(header, str(context.get("column")), "column")

        def convert(row: list[str]) -> list[str]:
            row[i] = pattern.sub(lambda _: replacement, row[i])
            return row

        return header, convert

    _stream(src, dst, make)


def rename_column(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """Rename columns per ``rename_dict`` ({old: new}); every old name must exist."""
    mapping = context.get("rename_dict")
    if not isinstance(mapping, dict) or not mapping:
        raise TransformError(f"rename_dict: expected a non-empty {{old: new}} object, got {mapping!r}")

    def make(header: list[str]) -> tuple[list[str], Callable]:
        for old in mapping:
            _index(header, old, "rename_dict")
        new_header = [str(mapping.get(name, name)) for name in header]
        if len(set(new_header)) != len(new_header):
            raise TransformError(f"rename_dict: the result has duplicate columns: {', '.join(new_header)}")
        return new_header, lambda row: row

    _stream(src, dst, make)


def split_column(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """Replace ``column`` by ``new_cols``, splitting on ``sep``. A cell with fewer parts than
    ``new_cols`` is padded with empty cells; one with more keeps the rest (separators included)
    in the last new column."""
    sep = context.get("sep")
    if not isinstance(sep, str) or not sep:
        raise TransformError(f"sep: expected a non-empty separator, got {sep!r}")
    new_cols = _names(context.get("new_cols"), "new_cols")

    def make(header: list[str]) -> tuple[list[str], Callable]:
        i = _index(header, str(context.get("column")), "column")
        _no_clash(new_cols, header[:i] + header[i + 1:], "new_cols")
        n = len(new_cols)

        def convert(row: list[str]) -> list[str]:
            parts = row[i].split(sep, n - 1)
            return row[:i] + parts + [""] * (n - len(parts)) + row[i + 1:]

        return header[:i] + new_cols + header[i + 1:], convert

    _stream(src, dst, make)


def _number(text: str, line: int, column: str) -> Decimal | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise TransformError(f"values: line {line}: {text!r} in column {column!r} is not a number") from None
    if not value.is_finite():
        raise TransformError(f"values: line {line}: {text!r} in column {column!r} is not a finite number")
    return value


def aggregate(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """Pivot: one row per distinct ``index``, one column per ``values`` x distinct ``columns`` value,
    each cell the sum of the numbers (blank cells are skipped; a combination never seen is blank)."""
    index = _names(context.get("index"), "index", comma_separated=True)
    columns = _names(context.get("columns"), "columns", comma_separated=True)
    values = _names(context.get("values"), "values", comma_separated=True)
    table: dict[tuple[str, ...], dict[tuple[str, tuple[str, ...]], Decimal]] = {}
    seen: set[tuple[str, ...]] = set()
    with _open_in(src) as fin:
        reader = csv.reader(fin)
        header = _header(reader)
        ii = [_index(header, c, "index") for c in index]
        ci = [_index(header, c, "columns") for c in columns]
        vi = [_index(header, c, "values") for c in values]
        for row in _rows(reader, len(header)):
            key, col = tuple(row[i] for i in ii), tuple(row[i] for i in ci)
            cells = table.setdefault(key, {})
            seen.add(col)
            for name, i in zip(values, vi, strict=True):
                number = _number(row[i], reader.line_num, name)
                if number is not None:
                    cells[(name, col)] = cells.get((name, col), Decimal(0)) + number
    keys = sorted(seen)
    out = [(v, k) for v in values for k in keys]
    label = (lambda v, k: "_".join(k)) if len(values) == 1 else (lambda v, k: "_".join((v, *k)))
    with _open_out(dst) as fout:
        writer = csv.writer(fout)
        writer.writerow(index + [label(v, k) for v, k in out])
        for key in sorted(table):
            cells = table[key]
            writer.writerow(list(key) + [str(cells[c]) if c in cells else "" for c in out])


_XML_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _xml_tag(name: str) -> str:
    tag = _XML_NAME.sub("_", name) or "_"
    return f"_{tag}" if not (tag[0].isalpha() or tag[0] == "_") else tag


def change_format(src: Path, dst: Path, context: dict[str, Any]) -> None:
    """CSV to ``format`` "json" (an array of {column: value} objects) or "xml"
    (<rows><row><column>value</column>…</row>…</rows>, column names made into XML names)."""
    fmt = str(context.get("format", "")).lower()
    if fmt not in ("json", "xml"):
        raise TransformError(f"format: expected 'json' or 'xml', got {context.get('format')!r}")
    with _open_in(src) as fin, open(dst, "w", encoding="utf-8") as fout:
        reader = csv.reader(fin)
        header = _header(reader)
        if fmt == "json":
            fout.write("[")
            for n, row in enumerate(_rows(reader, len(header))):
                fout.write(("," if n else "") + "\n" + json.dumps(dict(zip(header, row, strict=True)),
                                                                  ensure_ascii=False))
            fout.write("\n]\n")
            return
        tags = [_xml_tag(h) for h in header]
        if len(set(tags)) != len(tags):
            raise TransformError(f"format: columns {', '.join(header)} do not make distinct XML names")
        fout.write('<?xml version="1.0" encoding="UTF-8"?>\n<rows columns=' + quoteattr(",".join(header))
                   + ">\n")
        for row in _rows(reader, len(header)):
            fout.write("  <row>" + "".join(f"<{t}>{escape(v)}</{t}>" for t, v in zip(tags, row, strict=True))
                       + "</row>\n")
        fout.write("</rows>\n")


TRANSFORMS: dict[str, Transform] = {
    "skip_column": skip_column,
    "merge_columns": merge_columns,
    "anonymize": anonymize,
    "rename_column": rename_column,
    "split_column": split_column,
    "aggregate": aggregate,
    "change_format": change_format,
}
SUFFIX = {"json": ".json", "xml": ".xml"}


def handler_for(step: str) -> Callable[[dict[str, Any], Path], Path]:
    """A files=True handler: input path in, output path (in the call's scratch dir) out."""
    transform = TRANSFORMS[step]

    def handle(context: dict[str, Any], path: Path) -> Path:
        suffix = SUFFIX.get(str(context.get("format", "")).lower(), ".csv") if step == "change_format" \
            else ".csv"
        dst = output_path(Path(path).stem + suffix)
        transform(Path(path), dst, context)
        return dst

    handle.__name__ = step
    return handle


def make_worker(*steps: str, name: str = "generic-transformations") -> Worker:
    unknown = sorted(set(steps) - set(TRANSFORMS))
    if unknown:
        raise ValueError(f"unknown steps {unknown}; known: {', '.join(TRANSFORMS)}")
    worker = Worker(name=name)
    for step in steps or tuple(TRANSFORMS):
        worker.step(step, files=True)(handler_for(step))
    return worker


def serve(*steps: str, name: str = "generic-transformations") -> None:
    """Serve ``steps`` (all of them if none) until SIGTERM; parses the worker command line."""
    make_worker(*steps, name=name).run()
