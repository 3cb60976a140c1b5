"""Log lines about the live config: what a process serves when it starts, and each reload, accepted or rejected.

Each line carries its facts as fields too (``event``, ``version``, ...), so a JSON log keeps them machine-readable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.foundation.errors import ConfigError

log = logging.getLogger("gateway_engine.config")


def unconfigured(config: CompiledConfig) -> dict[str, list[str]]:
    """Backends whose env vars are unset (they answer 503 BACKEND_NOT_CONFIGURED), with the variable names."""
    found: dict[str, list[str]] = {}
    for route in config.routes:
        if route.upstream is None and route.missing_env and route.backend not in found:
            found[route.backend] = list(route.missing_env)
    return found


def log_started(config: CompiledConfig) -> None:
    missing = unconfigured(config)
    text = "; ".join(f"{backend} (set {', '.join(names)})" for backend, names in missing.items())
    log.info(
        "serving config version %s from %s: %d route(s); unconfigured backends: %s",
        config.version,
        config.root,
        len(config.routes),
        text or "none",
        extra={
            "event": "startup",
            "version": config.version,
            "routes": len(config.routes),
            "unconfigured": missing,
        },
    )


def log_reloaded(reason: str, old: CompiledConfig, new: CompiledConfig) -> None:
    change = "unchanged" if new.version == old.version else f"{old.version} ->"
    log.info(
        "config reloaded (%s): version %s %s, %d route(s)",
        reason,
        change,
        new.version,
        len(new.routes),
        extra={
            "event": "reload",
            "result": "success",
            "reason": reason,
            "version": new.version,
            "previous": old.version,
            "routes": len(new.routes),
        },
    )


def log_rejected(reason: str, current: CompiledConfig, errors: Sequence[ConfigError]) -> None:
    for error in errors:
        log.error("config reload rejected (%s): %s", reason, error, extra={"event": "reload_error"})
    log.error(
        "config reload rejected (%s): %d error(s); still serving version %s",
        reason,
        len(errors),
        current.version,
        extra={
            "event": "reload",
            "result": "failure",
            "reason": reason,
            "version": current.version,
            "errors": len(errors),
        },
    )
