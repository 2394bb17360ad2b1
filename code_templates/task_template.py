"""Generate a worker script for a step, built on ``shepherd_rpc``.

    python task_template.py --task_name clean_dates --result_file dates.csv [--output PATH] [--force]

Prints the script, or writes it to ``--output`` (never over an existing file without ``--force``).
The script runs as generated; its handler body is the part to fill in.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from code_templates import render
from code_templates.scaffold import ScaffoldError, validate_file_name, validate_name, write_file
from pipeline import registry

logger = logging.getLogger(__name__)

#: Module-level names the generated worker binds; a handler with one of these names would replace it.
RESERVED_NAMES = frozenset({"annotations", "json", "os", "tempfile", "worker"})


def registered_step(name: str) -> registry.StepSpec | None:
    """The registry's declaration of step ``name``, if any project has one (used for queue and docs)."""
    try:
        spec = registry.find_step(name)
    except Exception:  # a broken project must not stop a worker from being generated
        logger.warning("could not read the project registry; generating a worker for %r without it",
                       name, exc_info=True)
        return None
    if spec is None:
        logger.warning("no project declares step %r yet; declare it with "
                       "python -m code_templates.publisher_template --task_name %s --write", name, name)
    return spec


def render_worker(*, name: str, result_file: str, script_name: str = "", queue: str = "",
                  description: str = "") -> str:
    """The worker script for step ``name``, checked but not written anywhere.

    ``queue`` is given only when the step's queue is not its name.
    """
    validate_name(name)
    if name in RESERVED_NAMES:
        raise ScaffoldError(f"step name {name!r} would shadow a name the generated worker uses "
                            f"({', '.join(sorted(RESERVED_NAMES))}); rename the step")
    return render(
        "worker.py.j2",
        name=name,
        description=" ".join(description.split()) or f"Fill in what {name} does.",
        result_file=validate_file_name(result_file),
        script_name=script_name or f"{name}_worker.py",
        queue=queue if queue != name else "",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python task_template.py",
        description="Generate a runnable worker script for a step, with the handler body to fill in.",
    )
    parser.add_argument("--task_name", "--task-name", required=True, help="the step's name, snake_case")
    parser.add_argument("--result_file", "--result-file", required=True,
                        help="file name under which the worker stores its file output")
    parser.add_argument("--output", type=Path, help="write the script here instead of printing it")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        spec = registered_step(validate_name(args.task_name))
        source = render_worker(
            name=args.task_name,
            result_file=args.result_file,
            script_name=args.output.name if args.output else "",
            queue=spec.queue if spec else "",
            description=spec.description if spec else "",
        )
        if args.output is None:
            sys.stdout.write(source)
        else:
            write_file(args.output, source, force=args.force)
            sys.stderr.write(f"Wrote {args.output}; fill in the body of {args.task_name}() and run it with "
                             f"python {args.output}\n")
    except ScaffoldError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
