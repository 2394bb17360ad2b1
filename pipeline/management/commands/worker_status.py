from __future__ import annotations

import json
from dataclasses import asdict

import pika.exceptions
from django.core.management.base import BaseCommand, CommandError

from pipeline.worker_status import step_queues_status


class Command(BaseCommand):
    help = "List every registered step with the workers consuming its queue and the requests waiting."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            rows = step_queues_status()
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise CommandError(f"the broker is not reachable ({exc!r}); check SHEPHERD_BROKER_URL") from exc
        if options["json"]:
            self.stdout.write(json.dumps([asdict(row) for row in rows], indent=2))
            return
        self.stdout.write(f"{'project':<26}{'step':<26}{'workers':>8}{'waiting':>9}")
        for row in rows:
            flag = "" if row.consumers else "   <- no worker"
            self.stdout.write(f"{row.project:<26}{row.step:<26}{row.consumers:>8}{row.waiting:>9}{flag}")
