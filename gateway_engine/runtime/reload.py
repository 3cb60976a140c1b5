"""Hot reload: a changed config directory (or SIGHUP) builds a new config off the request path
and swaps it in; a broken change is logged with file and line and the old config keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from gateway_engine.compiled.compiler import load_config
from gateway_engine.foundation.errors import ConfigErrors
from gateway_engine.runtime.config_log import log_rejected, log_reloaded

if TYPE_CHECKING:  # pragma: no cover
    from gateway_engine.runtime.app import GatewayApp


class Reloader:
    """Watches ``config.root`` with watchfiles and listens for SIGHUP; one reload at a time."""

    def __init__(self, app: "GatewayApp", *, debounce_ms: int = 200) -> None:
        self.app = app
        self.debounce_ms = debounce_ms
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._sighup = False

    async def start(self, *, watch: bool = True, sighup: bool = True) -> None:
        """Listen for SIGHUP (``sighup``) and watch the directory (``watch``): each is independent of the other."""
        loop = asyncio.get_running_loop()
        if sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
                self._sighup = True
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (embedded, tests) or no signals on this platform
        if watch:
            self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
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
                log_rejected(reason, current, exc.errors)
                record_reload("failure")
                return False
            if new.version == current.version:
                await new.shutdown(keep=current)  # nothing changed: drop the copy, keep shared pools
                log_reloaded(reason, current, new)
                return True
            await self.app.swap(new)
            record_reload("success")
            log_reloaded(reason, current, new)
            return True
