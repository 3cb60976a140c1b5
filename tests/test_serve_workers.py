"""`serve --workers N` gives a worker time to import the engine before uvicorn's supervisor gives up on it."""

from __future__ import annotations

import uvicorn

from gateway_engine.cli.main import WORKER_HEALTHCHECK, run
from gateway_engine.config.server_settings import ENV_VAR
from tests.servers import write_config


def test_workers_get_longer_than_an_engine_import_to_answer_the_supervisor(tmp_path, monkeypatch):
    """uvicorn's 5 s default kills a spawned worker still importing the engine (3-4 s on a busy 2-core
    machine, two at once), and each replacement the same way: the server never served."""
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    for name in (ENV_VAR, "GATEWAY_CONFIG", "GATEWAY_WATCH", "GATEWAY_DRAIN_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")  # recorded, so what `serve` sets is undone after the test
        monkeypatch.delenv(name)
    root = write_config(tmp_path / "s", "version: 1\n", {})
    assert run(["serve", "--config", str(root), "--no-watch", "--workers", "2"]) == 0
    assert seen["workers"] == 2
    assert seen["timeout_worker_healthcheck"] == WORKER_HEALTHCHECK >= 30
