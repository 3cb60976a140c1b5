"""Hot reload: a changed config directory (or SIGHUP) builds a new config off the request path
and swaps it in; a broken change is logged with file and line and the old config keeps serving."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from gateway_engine.compiled.compiler import load_config
from gateway_engine.foundation.errors import ConfigErrors

if TYPE_CHECKING:  # pragma: no cover
    from gateway_engine.runtime.app import GatewayApp

log = logging.getLogger("gateway_engine.reload")


class Reloader:
    """Watches ``config.root`` with watchfiles and listens for SIGHUP; one reload at a time."""

    def __init__(self, app: "GatewayApp", *, debounce_ms: int = 200) -> None:
        self.app = app
        self.debounce_ms = debounce_ms
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no signals on this platform: the watcher still works
        self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        from watchfiles import awatch

        async for changes in awatch(
            self.app.config.root,
            debounce=self.debounce_ms,
            recursive=True,
            watch_filter=lambda _, path: path.endswith((".yaml", ".yml")),
        ):
            await self.reload(f"{len(changes)} file change(s)")

    async def reload(self, reason: str) -> bool:
        """Load, validate and compile in a thread, then swap. Returns whether the new config is live."""
        from gateway_engine.foundation.metrics import record_reload

        async with self._lock:
            current = self.app.config
            try:
                new = await asyncio.to_thread(load_config, current.root, current.env, previous=current)
            except ConfigErrors as exc:
                for error in exc.errors:
                    log.error("config reload rejected (%s): %s", reason, error)
                record_reload("failure")
                return False
            if new.version == current.version:
                await new.shutdown(keep=current)  # nothing changed: drop the copy, keep shared pools
                return True
            await self.app.swap(new)
            record_reload("success")
            log.info("config reloaded (%s): version %s -> %s", reason, current.version, new.version)
            return True
