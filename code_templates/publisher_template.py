"""Declare a new step: print its ``StepSpec`` or, with ``--write``, add it to a project's ``steps.py``.

    python -m code_templates.publisher_template --task_name clean_dates [--project NAME] [--write]

The declaration is what the API validates contexts against and what the orchestrator publishes to
(the step's queue, timeout and retries), so it replaces the publisher code the old template printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from code_templates import render
from code_templates.scaffold import (
    ScaffoldError,
    load_projects,
    project_dir,
    refresh_registry,
    refuse_clash,
    validate_description,
    validate_name,
    write_file,
)
from code_templates.steps_file import insert_step
from pipeline import registry

logger = logging.getLogger(__name__)


def render_step(
    *, name: str, description: str = "", timeout: float = 300, retries: int = 0, queue: str = ""
) -> str:
    """The ``StepSpec(...)`` declaration of a new step, checked but not written anywhere."""
    validate_name(name)
    if timeout <= 0:
        raise ScaffoldError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if retries < 0:
        raise ScaffoldError(f"--retries must be 0 or more, not {retries}")
    return render(
        "step.py.j2",
        name=name,
        description=validate_description(description or f"Describe what {name} does."),
        timeout=int(timeout) if float(timeout).is_integer() else timeout,
        retries=retries,
        queue=queue,
    )


def choose_project(project: str | None) -> str:
    """``project`` if registered, else the only project; refuse to guess between several."""
    projects = load_projects()
    if project:
        try:
            return registry.get_project(project).name
        except registry.UnknownProject as exc:
            raise ScaffoldError(f"{exc}; create it with: python manage.py add_project {project}") from exc
    names = sorted(projects)
    if len(names) == 1:
        return names[0]
    known = ", ".join(names) or "none; create one with: python manage.py add_project NAME"
    raise ScaffoldError(f"--project is required when there is not exactly one project (projects: {known})")


def write_step(project: str, name: str, entry: str) -> Path:
    """Insert ``entry`` into ``projects/<project>/steps.py``; undo the edit if the registry rejects it."""
    path = project_dir(project) / "steps.py"
    if not path.is_file():
        raise ScaffoldError(f"{path} does not exist; project {project!r} needs a steps.py with a STEPS list")
    original = path.read_text(encoding="utf-8")
    write_file(path, insert_step(original, entry, filename=str(path)), force=True)
    try:
        refresh_registry(project)
        registry.get_project(project).steps[name]
    except Exception as exc:
        write_file(path, original, force=True)
        refresh_registry(project)
        raise ScaffoldError(
            f"the registry could not load {path} with the new step ({exc}); the file is left unchanged"
        ) from exc
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m code_templates.publisher_template",
        description="Print the declaration (StepSpec) of a new step, or add it to a project with --write.",
    )
    parser.add_argument("--task_name", "--task-name", required=True, help="the step's name, snake_case")
    parser.add_argument("--project", help="project to add the step to (default: the only project)")
    parser.add_argument("--description", default="", help="one line saying what the step does")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a worker may take (default 300)")
    parser.add_argument("--retries", type=int, default=0, help="extra attempts after a failure (default 0)")
    parser.add_argument("--queue", default="", help="RabbitMQ queue (default: the step's name)")
    parser.add_argument("--write", action="store_true",
                        help="insert the declaration into projects/PROJECT/steps.py")
    parser.add_argument("--force", action="store_true",
                        help="allow a name another project already uses (its queue becomes PROJECT.NAME)")
    return parser


def run(args: argparse.Namespace) -> str:
    """Carry out one invocation; returns what to print."""
    name = validate_name(args.task_name)
    project = choose_project(args.project)
    if name in registry.get_project(project).steps:
        raise ScaffoldError(f"step {name!r} already exists in project {project!r}; choose another name")
    queue = args.queue
    if args.force:
        if not queue and registry.find_step(name) is not None:
            queue = f"{project}.{name}"  # two workers must not share one queue
    else:
        refuse_clash(name)
    entry = render_step(name=name, description=args.description, timeout=args.timeout,
                        retries=args.retries, queue=queue)
    if not args.write:
        return f"# Add to STEPS in projects/{project}/steps.py (or run again with --write):\n{entry}"
    path = write_step(project, name, entry)
    return f"Added step {name!r} to {path}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        sys.stdout.write(run(args))
    except ScaffoldError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
