from __future__ import annotations

from django.core.management.base import BaseCommand

from pipeline.handoff import sweep_unpublished


class Command(BaseCommand):
    help = (
        "Publish every queued pipeline whose hand-off to the broker was never confirmed "
        "(the broker was down when it was submitted). Safe to run at any time; each is published once."
    )

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        count = sweep_unpublished()
        self.stdout.write(f"published {count} pipeline(s)")
