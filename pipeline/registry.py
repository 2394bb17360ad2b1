"""The project registry: which steps each project offers, and what their contexts must look like.

A project is a package in ``projects/`` with a ``steps.py`` that defines ``STEPS``, a list of
:class:`StepSpec`. Projects are discovered by scanning the package, so a new project needs no edit
anywhere else. This module imports no Django: the API, the orchestrator and the code templates
all read the same registry.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

#: A check beyond JSON Schema: takes the context, yields ``(field, reason)`` for each problem.
ContextCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]

PROJECTS_PACKAGE = "projects"
STEP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RELOAD_INTERVAL = 5.0
_last_reload = 0.0


class UnknownProject(LookupError):
    """No project of that name is registered."""


@dataclass(frozen=True, kw_only=True)
class StepSpec:
    """One step a project offers.

    ``queue`` is the RabbitMQ queue its requests go to (the step name unless set); ``timeout`` is
    how many seconds a worker may take once it has started; ``retries`` how many more attempts a
    failed or timed-out step gets.
    """

    name: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    queue: str = ""
    timeout: float = 300.0
    retries: int = 0
    description: str = ""
    checks: tuple[ContextCheck, ...] = ()

    def __post_init__(self) -> None:
        if not STEP_NAME.match(self.name):
            raise ValueError(f"step name {self.name!r} must be snake_case (a-z, 0-9, _)")
        if not self.queue:
            object.__setattr__(self, "queue", self.name)
        if self.timeout <= 0 or self.retries < 0:
            raise ValueError(f"step {self.name!r}: timeout must be > 0 and retries >= 0")


@dataclass(frozen=True)
class Project:
    name: str
    steps: Mapping[str, StepSpec]
    description: str = ""


def normalize_project_name(name: str) -> str:
    """``ids-drr`` and ``ids_drr`` name the same project."""
    return name.strip().replace("-", "_")


def _load_project(module_name: str) -> Project | None:
    try:
        steps_module = importlib.import_module(f"{PROJECTS_PACKAGE}.{module_name}.steps")
    except ModuleNotFoundError as exc:
        if exc.name == f"{PROJECTS_PACKAGE}.{module_name}.steps":
            return None
        raise
    steps: dict[str, StepSpec] = {}
    for spec in getattr(steps_module, "STEPS", []):
        if spec.name in steps:
            raise ValueError(f"project {module_name!r} registers step {spec.name!r} twice")
        steps[spec.name] = spec
    package: ModuleType = importlib.import_module(f"{PROJECTS_PACKAGE}.{module_name}")
    description = (package.__doc__ or "").strip().splitlines()[0] if package.__doc__ else ""
    return Project(name=module_name, steps=steps, description=description)


@cache
def all_projects() -> dict[str, Project]:
    """Every project under ``projects/``, by name. Cached; call ``reload()`` after adding one."""
    package = importlib.import_module(PROJECTS_PACKAGE)
    found: dict[str, Project] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.ispkg and not info.name.startswith("_"):
            project = _load_project(info.name)
            if project is not None:
                found[project.name] = project
    return found


def reload() -> None:
    """Read the projects again, including edited ``steps.py`` files (their modules are re-imported)."""
    global _last_reload
    prefix = f"{PROJECTS_PACKAGE}."
    for module_name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[module_name]
    importlib.invalidate_caches()
    all_projects.cache_clear()
    _last_reload = time.monotonic()


def reload_if_due() -> bool:
    """Reload at most every RELOAD_INTERVAL seconds: how a running API sees a project added since
    it started (an unknown name costs a rescan, but a stream of them cannot cost more)."""
    if time.monotonic() - _last_reload < RELOAD_INTERVAL:
        return False
    reload()
    return True


def get_project(name: str) -> Project:
    """The project called ``name`` (``-`` and ``_`` alike), or :class:`UnknownProject`."""
    key = normalize_project_name(name)
    if key not in all_projects():
        reload_if_due()
    projects = all_projects()
    if key not in projects:
        known = ", ".join(sorted(projects)) or "none"
        raise UnknownProject(f"unknown project {name!r}; registered projects: {known}")
    return projects[key]


def find_step(step_name: str) -> StepSpec | None:
    """The spec of ``step_name`` in whichever project registers it (used by scaffolding)."""
    for project in all_projects().values():
        if step_name in project.steps:
            return project.steps[step_name]
    return None
