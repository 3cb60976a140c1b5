"""Features' background workers: what ``gateway-engine worker`` runs, and what each gateway process may run too.

A feature contributes ``Contribution.workers`` by name (the workflows feature's Temporal worker, the
outbound dispatcher). ``run(config, options, stop)`` works for the started ``config`` until ``stop``
is set; ``options`` are the
``worker`` command's parsed flags (empty in a gateway process). A worker marked ``in_process`` also
runs inside every gateway process that serves the config, started after the config's startup and
stopped before its shutdown; the others run only in ``gateway-engine worker``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gateway_engine")


@dataclass(frozen=True)
class Worker:
    """One background worker of a feature."""

    run: Callable[[Any, Mapping[str, Any], asyncio.Event], Awaitable[None]]  # (config, options, stop)
    in_process: bool = False  # each gateway process runs it too (else only `gateway-engine worker`)


class Running:
    """The workers one config started in this process, to stop them with it."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, config: Any, workers: Mapping[str, Worker], options: Mapping[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        for name, worker in workers.items():
            run = _supervised(name, worker, config, options, self.stop)
            self.tasks.append(loop.create_task(run, name=f"worker:{name}"))

    async def wait(self) -> None:
        """Until every worker returned (or one raised: the error goes to the caller)."""
        await asyncio.gather(*self.tasks)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


async def _supervised(name: str, worker: Worker, config: Any, options: Mapping[str, Any], stop: asyncio.Event) -> None:
    try:
        await worker.run(config, options, stop)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background worker %s failed", name)
        raise
