"""The process's own log lines (uvicorn's, the engine's, libraries'): text, or one JSON object a line.

``serve`` hands ``log_config`` to uvicorn, which applies it in the supervisor and in every worker. JSON is chosen
when a plugin of the config asks for it (``logging: {format: json}``), so access lines and process lines agree.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from gateway_engine.compiled.model import CompiledConfig

#: the attributes every LogRecord has; anything else on a record came from ``extra=`` and becomes a field
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields, "traceback"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return orjson.dumps(line, default=str).decode()


def log_format(config: CompiledConfig) -> str:
    """``json`` when any plugin of the config asks for JSON process logs, else ``text``."""
    for plugin in config.plugins:
        if plugin.process_log_format() == "json":
            return "json"
    return "text"


def log_config(fmt: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: every logger through one formatter."""
    if fmt == "json":
        formatter: dict[str, Any] = {"()": "gateway_engine.cli.logs.JsonFormatter"}
    else:
        formatter = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"}
    handler = {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "gateway_engine": {"level": level.upper()},
        },
    }
