from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_engine import create_app
from tests.postgres_server import any_store, postgres_server, postgres_url  # noqa: F401  (one server per test process)
from tests.redis_server import redis_url  # noqa: F401  (a fixture shared by the Redis tests)
from tests.servers import serve, write_config
from tests.upstream_app import Recorder, echo_app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def upstream(recorder: Recorder) -> Iterator[str]:
    with serve(echo_app(recorder)) as url:
        yield url


@pytest.fixture
def gateway(tmp_path: Path):
    """``gateway(gateway_yaml, {name: routes_yaml}, env)`` → base URL of a running gateway."""
    stack = contextlib.ExitStack()

    def start(gateway_yaml: str, backends: dict[str, str], env: dict[str, str] | None = None, **app_options) -> str:
        root = write_config(tmp_path / f"config{len(stack._exit_callbacks)}", gateway_yaml, backends)
        start.root = root
        return stack.enter_context(serve(create_app(str(root), env or {}, **app_options)))

    with stack:
        yield start
