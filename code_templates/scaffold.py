"""Shared scaffolding rules: which names are acceptable, where projects live, how files are written.

The command lines (``publisher_template``, ``task_template``) and the management commands
(``add_project``, ``list_projects``) are thin wrappers over these functions, so they can be tested
without Django and all refuse the same things with the same messages.
"""

from __future__ import annotations

import importlib
import keyword
import logging
import os
import tempfile
from pathlib import Path

from pipeline import registry

logger = logging.getLogger(__name__)

#: Names end up in generated lines of code; this keeps those within the line length.
MAX_NAME = 50
#: Descriptions go on one line of generated code; longer text belongs in the README.
MAX_DESCRIPTION = 100


class ScaffoldError(Exception):
    """A scaffolding request that cannot be carried out; the message says what to change."""


def validate_name(name: str, *, kind: str = "step") -> str:
    """Return ``name`` if it is a snake_case Python identifier that is not a keyword.

    Raises:
        ScaffoldError: otherwise, saying which rule the name breaks.
    """
    if not registry.STEP_NAME.match(name) or not name.isidentifier():
        raise ScaffoldError(
            f"{kind} name {name!r} must be snake_case: start with a lowercase letter, then only "
            f"a-z, 0-9 and _ (for example {_suggest(name)!r})"
        )
    if len(name) > MAX_NAME:
        raise ScaffoldError(f"{kind} name {name!r} is {len(name)} characters; keep it to {MAX_NAME}")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{kind} name {name!r} is a Python keyword; choose another, e.g. {name + '_'!r}")
    return name


def _suggest(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name.strip().lower()).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"step_{cleaned}".rstrip("_")
    return cleaned


def validate_description(text: str) -> str:
    """One line of at most ``MAX_DESCRIPTION`` characters, stripped."""
    text = " ".join(text.split())
    if len(text) > MAX_DESCRIPTION:
        raise ScaffoldError(
            f"description is {len(text)} characters; keep it to one line of at most {MAX_DESCRIPTION} "
            "and put the rest in the README"
        )
    return text


def validate_file_name(name: str) -> str:
    """A bare file name (no directories), as a worker's result file must be."""
    if not name or name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise ScaffoldError(f"result file {name!r} must be a plain file name such as 'out.csv', not a path")
    return name


def load_projects() -> dict[str, registry.Project]:
    """The registry's projects; a project that fails to load becomes a ScaffoldError naming it."""
    try:
        return registry.all_projects()
    except Exception as exc:
        raise ScaffoldError(
            f"the project registry cannot be loaded ({type(exc).__name__}: {exc}); fix the steps.py "
            "named in the error first"
        ) from exc


def step_owner(step_name: str) -> str | None:
    """The project that already declares ``step_name``, if any."""
    for project in load_projects().values():
        if step_name in project.steps:
            return project.name
    return None


def refuse_clash(step_name: str) -> None:
    """Raise if any project already declares ``step_name``: queues default to step names."""
    owner = step_owner(step_name)
    if owner is not None:
        raise ScaffoldError(
            f"step {step_name!r} already exists in project {owner!r}; choose another name "
            f"(steps share RabbitMQ queues by name, so names must be unique across projects)"
        )


def projects_root() -> Path:
    """The directory the registry scans (``projects/`` in the repository unless reconfigured)."""
    package = importlib.import_module(registry.PROJECTS_PACKAGE)
    return Path(next(iter(package.__path__)))


def project_dir(project: str) -> Path:
    """Where a registered project lives: the checkout's projects/ or a SHEPHERD_PROJECT_DIRS entry."""
    package = importlib.import_module(f"{registry.PROJECTS_PACKAGE}.{project}")
    return Path(package.__file__).parent


def refresh_registry(project: str | None = None) -> None:
    """Make the registry see files just written (``registry.reload`` re-imports every steps.py)."""
    registry.reload()


def write_file(path: Path, content: str, *, force: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically; refuse to replace an existing file unless ``force``."""
    if path.exists() and not force:
        raise ScaffoldError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise ScaffoldError(f"{path} is a directory; give a file path")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote %s", path, extra={"action": "scaffold_written", "path": str(path)})
    return path
