"""`python manage.py runscript worker_demon [--script-args key=value ...]`: run the orchestrator daemon.

runscript hands on ``--script-args`` only if they do not look like options, so they are written
``concurrency=20 name=node-a no-prefect``; ``--script-args help`` lists them.

Consumes queued pipelines and runs them, many at once, until SIGTERM or SIGINT; then stops
taking pipelines, gives in-flight steps SHEPHERD_SHUTDOWN_GRACE seconds, leaves the rest
resumable, and exits 0.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.orchestration.daemon import Daemon, DaemonConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="manage.py runscript worker_demon --script-args",
        usage="%(prog)s [concurrency=N] [name=NAME] [wait-limit=S] [no-prefect] [log-level=LEVEL]",
        description="Run Shepherd's orchestrator: claim queued pipelines and run their steps on workers.",
    )
    parser.add_argument("--concurrency", type=int, help="pipelines run at once (SHEPHERD_CONCURRENCY)")
    parser.add_argument("--name", help="this daemon's name, unique and stable across restarts "
                                       "(SHEPHERD_DAEMON_NAME)")
    parser.add_argument("--wait-limit", type=float,
                        help="seconds a step waits for a worker to take it (SHEPHERD_STEP_WAIT_LIMIT)")
    parser.add_argument("--no-prefect", action="store_true", help="do not mirror runs in Prefect")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    return parser


def _as_options(args: tuple[str, ...]) -> list[str]:
    """``concurrency=8`` -> ``--concurrency 8``; ``help`` -> ``--help``."""
    options: list[str] = []
    for arg in args:
        key, sep, value = arg.lstrip("-").partition("=")
        options += [f"--{key}", value] if sep else [f"--{key}"]
    return options


def run(*args: str) -> None:
    options = _parser().parse_args(_as_options(args))
    if options.log_level:
        logging.getLogger().setLevel(options.log_level.upper())
    if options.concurrency is not None and options.concurrency < 1:
        raise SystemExit("--concurrency must be at least 1")
    config = DaemonConfig.from_settings(
        concurrency=options.concurrency, name=options.name, wait_limit=options.wait_limit,
        prefect=False if options.no_prefect else None,
    )
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    raise SystemExit(daemon.run())
