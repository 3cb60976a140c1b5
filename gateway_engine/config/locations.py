"""Where a config lives: what every command's ``--config`` accepts (a directory, or its ``gateway.yaml``)."""

from __future__ import annotations

import argparse
import os

from gateway_engine.config.loader import GATEWAY_FILE

CONFIG_HELP = "config directory, or its gateway.yaml (default: $GATEWAY_CONFIG, else the current directory)"


def config_path(value: str) -> str:
    """``--config``: a directory, or the path of its ``gateway.yaml`` (the directory is what is loaded)."""
    if os.path.isfile(value):
        if os.path.basename(value) != GATEWAY_FILE:
            raise argparse.ArgumentTypeError(f"{value!r} is a file; give the config directory or its {GATEWAY_FILE}")
        return os.path.dirname(value) or "."
    return value


def config_dir(given: str | None) -> str:
    """The directory a command loads: ``--config``, else ``$GATEWAY_CONFIG``, else the current directory."""
    return given or os.environ.get("GATEWAY_CONFIG") or "."


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=config_path, help=CONFIG_HELP)
