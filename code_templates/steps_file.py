"""Insert a step declaration into a project's ``steps.py``, keeping the file valid Python.

The declaration goes at the end of the ``STEPS = [...]`` list literal, located with ``ast`` rather
than text patterns, so hand-edited files (comments, trailing commas, helpers) are handled too.
"""

from __future__ import annotations

import ast
import textwrap

from code_templates.scaffold import ScaffoldError

INDENT = "    "


def _steps_list(tree: ast.Module, filename: str) -> ast.List:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "STEPS" for t in targets):
            value = getattr(node, "value", None)
            if isinstance(value, ast.List):
                return value
            raise ScaffoldError(
                f"{filename}: STEPS is not a list literal (STEPS = [...]); add the declaration by hand"
            )
    raise ScaffoldError(f"{filename} defines no STEPS list; add `STEPS: list[StepSpec] = []` first")


def _offset(line_starts: list[int], lineno: int, col: int) -> int:
    return line_starts[lineno - 1] + col


def insert_step(source: str, entry: str, *, filename: str = "steps.py") -> str:
    """``source`` with ``entry`` (a ``StepSpec(...)`` expression) appended to its ``STEPS`` list.

    Raises:
        ScaffoldError: the file does not parse or has no ``STEPS = [...]`` list.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ScaffoldError(
            f"{filename} is not valid Python ({exc.msg}, line {exc.lineno}); fix it first"
        ) from exc
    steps = _steps_list(tree, filename)
    data = source.encode("utf-8")  # ast columns are UTF-8 byte offsets
    line_starts = [0]
    for line in data.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    close = _offset(line_starts, steps.end_lineno or 0, steps.end_col_offset or 0) - 1  # the "]"
    if steps.elts:
        last = steps.elts[-1]
        at = _offset(line_starts, last.end_lineno or 0, last.end_col_offset or 0)
        gap = data[at:close]
        comma = b"" if gap.lstrip().startswith(b",") else b","
        if gap.lstrip().startswith(b","):
            at += gap.index(b",") + 1
    else:
        at, comma = _offset(line_starts, steps.lineno, steps.col_offset) + 1, b""
    newline = data.find(b"\n", at, close)
    at = newline if newline != -1 else at
    addition = comma + b"\n" + textwrap.indent(entry.strip(), INDENT).encode("utf-8") + b","
    if newline == -1:
        addition += b"\n"
    result = (data[:at] + addition + data[at:]).decode("utf-8")
    ast.parse(result, filename=filename)
    return result
