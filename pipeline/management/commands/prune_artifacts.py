"""``manage.py prune_artifacts --days N [--dry-run]``: delete step artifacts older than N days."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.artifacts import prune_artifacts


class Command(BaseCommand):
    help = "Delete artifacts (step output files) last written more than N days ago, in the configured store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, required=True, help="age in days (fractions allowed)")
        parser.add_argument("--dry-run", action="store_true", help="only list what would go")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            urls = prune_artifacts(days=options["days"], dry_run=options["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for url in urls:
            self.stdout.write(url)
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"{verb} {len(urls)} artifact(s) older than {options['days']:g} day(s)")
