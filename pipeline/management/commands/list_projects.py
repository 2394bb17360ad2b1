"""``manage.py list_projects``: the projects and steps the registry sees, as text or ``--json``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from code_templates.listing import describe_projects, format_projects


class Command(BaseCommand):
    help = "List the registered projects and their steps with queue, timeout and retries."
    requires_system_checks: list[str] = []  # reads and writes files only; works while the site is broken

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        projects = describe_projects()
        if options["json"]:
            self.stdout.write(json.dumps(projects, indent=2))
        else:
            self.stdout.write(format_projects(projects), ending="")
