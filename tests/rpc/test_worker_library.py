"""The worker library without a broker: registration, in-process calls, no Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shepherd_rpc import Worker

REPO = Path(__file__).resolve().parents[2]


def test_registering_a_step_name_twice_is_an_error_naming_it() -> None:
    worker = Worker(name="csv-tools")

    @worker.step("skip_column")
    def first(context: dict, input: object) -> object:
        return input

    with pytest.raises(ValueError, match="'skip_column' is already registered"):
        @worker.step("skip_column", queue="other")
        def second(context: dict, input: object) -> object:
            return input

    assert worker.queues == ["skip_column"]


def test_a_handler_runs_in_process_without_a_broker() -> None:
    worker = Worker(name="csv-tools")

    @worker.step("count_rows", queue="csv")
    def count_rows(context: dict, input: list) -> dict:
        return {"rows": len(input), "project": context["project"]}

    assert worker.handle_in_process("count_rows", {"project": "p"}, [1, 2, 3]) == {"rows": 3, "project": "p"}
    assert worker.queues == ["csv"]
    with pytest.raises(KeyError, match="no step 'nope'"):
        worker.handle_in_process("nope", {}, None)


def test_importing_the_worker_library_does_not_import_django() -> None:
    check = "import shepherd_rpc.worker, sys; assert not any(m.startswith('django') for m in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
