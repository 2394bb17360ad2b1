"""Code templates: render the inert Jinja2 files in ``templates/`` into Python, Markdown and text.

The templates are never imported or linted as code; only what they render is. Rendering is strict:
a variable the caller forgot is an error, not an empty string in generated code.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _text(value: object) -> str:
    # str() of a StrictUndefined raises UndefinedError, which names the missing variable.
    return str(value)


def py_str(value: object) -> str:
    """``value`` as a double-quoted Python string literal (JSON string escapes are valid Python)."""
    return json.dumps(_text(value), ensure_ascii=False)


def py_docstring(value: object) -> str:
    """``value`` made safe inside a triple-quoted docstring."""
    return _text(value).replace("\\", "\\\\").replace('"', '\\"')


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # the output is Python and Markdown, never HTML
    )
    env.filters["py_str"] = py_str
    env.filters["py_docstring"] = py_docstring
    return env


def template_names() -> list[str]:
    """Every template in ``templates/``, for tests and ``--help`` texts."""
    return sorted(path.name for path in TEMPLATES_DIR.glob("*.j2"))


def render(template_name: str, **context: object) -> str:
    """Render ``templates/<template_name>`` with ``context``.

    Raises:
        jinja2.TemplateNotFound: no such template.
        jinja2.UndefinedError: the template uses a variable missing from ``context``.
    """
    return _environment().get_template(template_name).render(**context)
