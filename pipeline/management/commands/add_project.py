"""``manage.py add_project NAME``: scaffold a new project package that the registry picks up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from code_templates.new_project import add_project
from code_templates.scaffold import ScaffoldError, refresh_registry


class Command(BaseCommand):
    help = (
        "Create projects/NAME/ with __init__.py, an empty STEPS list in steps.py, README.md and "
        "workers/README.md. Add steps with: python -m code_templates.publisher_template --write"
    )
    requires_system_checks: list[str] = []  # reads and writes files only; works while the site is broken

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the project's name, snake_case (e.g. flood_maps)")
        parser.add_argument("--description", default="", help="one line saying what the project is for")
        parser.add_argument("--projects-dir", type=Path, default=None,
                            help="where projects live (default: the directory the registry scans)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            written = add_project(options["name"], options["description"], root=options["projects_dir"])
        except ScaffoldError as exc:
            raise CommandError(str(exc)) from exc
        refresh_registry()
        for path in written:
            self.stdout.write(f"created {path}")
        self.stdout.write(self.style.SUCCESS(
            f"Project {options['name']!r} is ready. Next: python -m code_templates.publisher_template "
            f"--project {options['name']} --task_name STEP --write"
        ))
