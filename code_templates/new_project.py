"""Create a new project package under ``projects/``: the files the registry and the team need."""

from __future__ import annotations

import shutil
from pathlib import Path

from code_templates import render
from code_templates.scaffold import (
    ScaffoldError,
    projects_root,
    validate_description,
    validate_name,
    write_file,
)

#: Generated file (relative to the project directory) -> the template that renders it.
PROJECT_FILES = {
    "__init__.py": "project_init.py.j2",
    "steps.py": "project_steps.py.j2",
    "README.md": "project_readme.md.j2",
    "workers/README.md": "project_workers_readme.md.j2",
}


def render_project(name: str, description: str) -> dict[str, str]:
    """Every file of a new project, by relative path, rendered but not written."""
    context = {"project": name, "description": description}
    return {relative: render(template, **context) for relative, template in PROJECT_FILES.items()}


def add_project(name: str, description: str = "", *, root: Path | None = None) -> list[Path]:
    """Create ``<root>/<name>/`` with its package, an empty ``STEPS`` list and READMEs.

    ``root`` defaults to the directory the registry scans. Returns the files written.

    Raises:
        ScaffoldError: the name is not snake_case, or a project (or any file) of that name exists.
    """
    validate_name(name, kind="project")
    description = validate_description(description or f"The {name} project.")
    base = (root or projects_root()) / name
    if base.exists():
        raise ScaffoldError(f"project {name!r} already exists at {base}; choose another name")
    written: list[Path] = []
    try:
        for relative, content in render_project(name, description).items():
            written.append(write_file(base / relative, content))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)  # no half-made project for the registry to trip on
        raise
    return written
