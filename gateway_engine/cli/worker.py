"""``gateway-engine worker``: every feature's background workers (``Contribution.workers``), no HTTP server.

It loads the same config directory as ``serve``, starts the config (plugins, feature tasks, but
not the in-process workers: it runs its own), then runs every worker the config has, or only the
``--only`` ones, until SIGINT/SIGTERM. A worker that fails ends the command with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any, TextIO

from gateway_engine.cli.store_commands import add_data_option, apply_data_option
from gateway_engine.compiled.compiler import load_config
from gateway_engine.compiled.features import installed_features
from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.config.locations import add_config_option, config_dir
from gateway_engine.foundation.errors import ConfigErrors


def add_worker_command(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="run the features' background workers (workflows, outbound dispatcher) until stopped"
    )
    add_config_option(worker)
    worker.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this worker (repeatable; default: every worker the config has, e.g. workflows, outbound)",
    )
    add_data_option(worker)
    for feature in installed_features():
        feature.add_worker_options(worker)
    worker.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    apply_data_option(args)
    try:
        config = load_config(config_dir(args.config))
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return 1
    workers = config.workers
    chosen = args.only or sorted(workers)
    unknown = [name for name in chosen if name not in workers]
    if unknown or not chosen:
        have = ", ".join(sorted(workers)) or "none"
        err.write(f"worker: no worker named {', '.join(unknown)} in this config (it has: {have})\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out.write(f"worker running {', '.join(chosen)}; stop it with SIGTERM or Ctrl-C\n")
    out.flush()
    try:
        asyncio.run(_serve(config, chosen, vars(args)))
    except Exception as exc:
        err.write(f"worker: {exc}\n")
        return 1
    # a worker's native threads (the Temporal SDK's, sdk-python#300) can abort interpreter
    # finalization; after a clean stop the process ends here so a supervisor sees exit code 0
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _serve(config: CompiledConfig, chosen: list[str], options: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await config.startup(workers=False)
    running = config.running
    try:
        running.start(config, {name: config.workers[name] for name in chosen}, options)
        stopped = loop.create_task(stop.wait())
        finished = loop.create_task(running.wait())
        await asyncio.wait({stopped, finished}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if finished.done():
            finished.result()  # a worker that ended by itself: its error, if any, is the command's
    finally:
        await config.shutdown()
