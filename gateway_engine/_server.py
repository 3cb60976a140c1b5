"""Building the app inside each uvicorn worker process."""

from __future__ import annotations

import os

from ._app import GatewayApp
from ._compile import load_config


def app_from_env() -> GatewayApp:
    """The uvicorn factory: every worker loads and compiles the config itself."""
    return GatewayApp(load_config(os.environ.get("GATEWAY_CONFIG", ".")))


def create_app(config_dir: str, environ: dict[str, str] | None = None) -> GatewayApp:
    """Load a config directory and return the ASGI app (for embedding and tests)."""
    return GatewayApp(load_config(config_dir, environ))
