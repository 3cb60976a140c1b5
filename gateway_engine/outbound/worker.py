"""``gateway-engine outbound-worker``: the dispatcher alone, for deployments that keep delivery off the gateways."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
from typing import Any

from gateway_engine.store import DATA_ENV


def main(args: argparse.Namespace, out: Any, err: Any) -> int:
    from gateway_engine.compiled.compiler import load_config
    from gateway_engine.foundation.errors import ConfigErrors

    from .service import OUTBOUND

    if args.data:
        os.environ[DATA_ENV] = args.data
    try:
        config = load_config(args.config or os.environ.get("GATEWAY_CONFIG") or ".")
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return 1
    service = config.state(OUTBOUND)
    if service is None:
        err.write("the outbound feature is not installed\n")
        return 1
    service.settings = dataclasses.replace(service.settings, dispatch=True)
    out.write("outbound dispatcher running; stop it with SIGTERM or Ctrl-C\n")
    out.flush()
    asyncio.run(_run(service))
    return 0


async def _run(service: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
