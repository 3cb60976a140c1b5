"""Building the app inside each uvicorn worker process."""

from __future__ import annotations

import os

from gateway_engine.compiled.compiler import load_config
from gateway_engine.runtime.app import GatewayApp


def app_from_env() -> GatewayApp:
    """The uvicorn factory: every worker loads and compiles the config itself (and watches it)."""
    return GatewayApp(
        load_config(os.environ.get("GATEWAY_CONFIG", ".")),
        watch=os.environ.get("GATEWAY_WATCH", "1") == "1",
        drain_timeout=float(os.environ.get("GATEWAY_DRAIN_TIMEOUT", "30")),
        sighup=True,
    )


def create_app(
    config_dir: str, environ: dict[str, str] | None = None, *, watch: bool = False, drain_timeout: float = 30.0
) -> GatewayApp:
    """Load a config directory and return the ASGI app (for embedding and tests)."""
    return GatewayApp(load_config(config_dir, environ), watch=watch, drain_timeout=drain_timeout)
