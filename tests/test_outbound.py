"""Outbound webhooks end to end: register, emit from a route, signed delivery with the exact retry schedule."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway_engine import create_app
from gateway_engine.store import async_url
from tests.gateway_process import GatewayProcess
from tests.outbound_support import KEYS, Receiver, api, gateway_yaml, verify, wait_for, write_outbound_config
from tests.servers import free_port, serve


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None  # the embedded default, in the config's data directory
    return async_url(request.getfixturevalue("postgres_url"))


def test_route_emit_is_delivered_signed_on_the_exact_schedule(tmp_path, upstream, store_url):
    receiver = Receiver([(500, {}), (503, {}), (502, {})])  # fails three times, then succeeds
    with serve(receiver) as hook_url:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(store_url), upstream)
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            made = client.post("/webhooks/endpoints", json={"url": hook_url + "/hook", "events": ["order.*"]})
            assert made.status_code == 201, made.text
            endpoint = made.json()
            secret = endpoint["secret"]
            assert secret.startswith("whsec_")
            answer = client.put("/orders/42/status", json={"status": "ready"})
            assert answer.status_code == 200
            wait_for(lambda: len(receiver.received) >= 4)
            gaps = [b["at"] - a["at"] for a, b in zip(receiver.received, receiver.received[1:])]
            # the compressed schedule 0.2 s, 0.4 s, 0.6 s (no jitter): each gap at least its delay
            assert [round(g, 1) >= d for g, d in zip(gaps, (0.2, 0.4, 0.6))] == [True, True, True]
            ids = {r["headers"]["webhook-id"] for r in receiver.received}
            assert len(ids) == 1  # one message, retried
            for request in receiver.received:
                assert verify(secret, request["headers"], request["body"])
            log = wait_for(
                lambda: (
                    (r := client.get("/webhooks/deliveries", params={"endpoint": endpoint["id"]}).json())["items"]
                    and len(r["items"]) == 4
                    and r
                )
            )
            outcomes = [i["outcome"] for i in reversed(log["items"])]
            assert outcomes == ["failed", "failed", "failed", "succeeded"]
            assert [i["status"] for i in reversed(log["items"])] == [500, 503, 502, 200]
            assert log["items"][1]["nextRetry"] is not None and log["items"][0]["nextRetry"] is None


def _serve_process(root: Path, port: int) -> GatewayProcess:
    return GatewayProcess(root, root.parent / f"gateway-{port}.log", env=KEYS, health="/health", port=port).start()


def test_gateway_killed_mid_schedule_delivers_exactly_once_after_restart(tmp_path, upstream, store_url):
    receiver = Receiver([(500, {})])  # the first attempt fails; the retry is due 2 s later
    with serve(receiver) as hook_url:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(store_url, "[0, 2s]"), upstream)
        port = free_port()
        first = _serve_process(root, port)
        try:
            with api(f"http://127.0.0.1:{port}", KEYS["ACME_KEY"]) as client:
                client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]})
                assert client.put("/orders/1/status").status_code == 200
                wait_for(lambda: client.get("/webhooks/deliveries").json()["items"])  # attempt 1 is recorded
        finally:
            first.signal(signal.SIGKILL)
            first.stop(30)
        assert len(receiver.received) == 1
        second = _serve_process(root, free_port())
        try:
            wait_for(lambda: len(receiver.received) >= 2)
            time.sleep(3)  # long past any further attempt the schedule could hold
        finally:
            second.stop(30)
    assert len(receiver.received) == 2
    assert receiver.received[0]["headers"]["webhook-id"] == receiver.received[1]["headers"]["webhook-id"]


def test_two_instances_on_one_postgresql_send_each_attempt_once(tmp_path, upstream, postgres_url):
    receiver = Receiver()
    with serve(receiver) as hook_url:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(async_url(postgres_url)), upstream)
        with serve(create_app(str(root), KEYS)) as one, serve(create_app(str(root), KEYS)) as two:
            with api(one, KEYS["ACME_KEY"]) as a, api(two, KEYS["ACME_KEY"]) as b:
                a.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]})
                for i in range(30):
                    assert (a if i % 2 else b).put(f"/orders/{i}/status").status_code == 200
                wait_for(lambda: len({r["headers"]["webhook-id"] for r in receiver.received}) == 30, timeout=60)
                time.sleep(1.5)  # a duplicate, if any, would have arrived by now
    ids = [r["headers"]["webhook-id"] for r in receiver.received]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_outbound_worker_delivers_for_gateways_that_do_not_dispatch(tmp_path, upstream):
    """`dispatch: worker_only` keeps delivery out of the gateway; `gateway-engine worker --only outbound` delivers."""
    receiver = Receiver()
    with serve(receiver) as hook_url:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None, extra="  dispatch: worker_only\n"), upstream)
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]})
            assert client.put("/orders/8/status").status_code == 200
            time.sleep(0.5)
            assert receiver.received == []  # nobody dispatches yet
            log = tmp_path / "worker.log"
            worker = subprocess.Popen(
                [sys.executable, "-m", "gateway_engine", "worker", "--only", "outbound", "--config", str(root)],
                env={**os.environ, **KEYS, "PYTHONFAULTHANDLER": "1"},
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
            )
            try:
                wait_for(lambda: receiver.received, timeout=60)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    code = worker.wait(30)
                except subprocess.TimeoutExpired:  # seen once in CI under load: show where every thread waits
                    worker.send_signal(signal.SIGABRT)  # faulthandler writes each thread's stack to the log
                    worker.wait(10)
                    pytest.fail(f"the worker did not exit within 30 s of SIGTERM:\n{log.read_text()[-6000:]}")
                assert code == 0
    assert b"worker running outbound" in worker.stdout.read()


def test_worker_command_runs_only_workers_the_config_has(tmp_path, upstream, monkeypatch):
    """`gateway-engine worker --only NAME` names the workers a config has when NAME is not one of them."""
    from gateway_engine.cli.main import run

    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    err = io.StringIO()
    assert run(["worker", "--only", "workflows", "--config", str(root)], stderr=err) == 2
    assert "no worker named workflows in this config (it has: outbound)" in err.getvalue()
