"""Asynchronous Kafka results in the store: accepted by gateway A, fetched on gateway B (two real processes
on one real PostgreSQL and a real Tansu broker); only the caller who started it reads it; the retention holds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.kafka.replies import StoredReply
from gateway_engine.kafka.results import PENDING, SharedResults
from gateway_engine.store import StoreSettings, async_url
from tests.gateway_process import GatewayProcess
from tests.kafka_server import Background, Broker, kafka_broker, tansu  # noqa: F401
from tests.servers import free_port, write_config
from tests.test_kafka import GATEWAY, ROUTES, SECRET, Service, token

STORE = GATEWAY + 'store: {url: "${STORE_URL}"}\n'
SHORT = ROUTES.replace("retention: 1m", 'retention: "${RETENTION:-1m}", results: "${RESULTS:-store}"')


@contextlib.contextmanager
def gateway_process(config: Path, env: dict[str, str], log: Path, health: str = "/health") -> Iterator[str]:
    """``gateway-engine serve`` on a free port, until the block ends."""
    with GatewayProcess(config, log, env=env, health=health) as gateway:
        yield gateway.base


@pytest.fixture
def two_gateways(tmp_path: Path, kafka_broker: Broker, postgres_url: str, request) -> Iterator[tuple[str, str]]:
    extra = getattr(request, "param", {})
    names = {n: kafka_broker.unique(n.lower()) for n in ("REQUEST_TOPIC", "EVENT_TOPIC")}
    names["REPLY_TOPIC"] = kafka_broker.unique("replies")
    kafka_broker.topics(names["REQUEST_TOPIC"], names["EVENT_TOPIC"])
    kafka_broker.topics(names["REPLY_TOPIC"], partitions=2)
    env = {"KAFKA_BROKER": kafka_broker.address, "JWT_SECRET": SECRET, "SVC_KEY": "svc-key-123", **names, **extra}
    env["STORE_URL"] = postgres_url
    config = write_config(tmp_path / "config", STORE, {"orders": SHORT})
    with Background(Service(kafka_broker, names["REQUEST_TOPIC"]).run):
        with (
            gateway_process(config, env, tmp_path / "a.log") as a,
            gateway_process(config, env, tmp_path / "b.log") as b,
        ):
            yield a, b


def _user(sub: str = "u-1") -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub)}"}


def _start(base: str, body: dict) -> str:
    r = httpx.post(f"{base}/orders/create", json=body, headers={**_user(), "prefer": "respond-async"}, timeout=20)
    assert r.status_code == 202, r.text
    return r.headers["location"]


def test_kafka_result_accepted_on_a_is_fetched_on_b_by_its_caller_only(two_gateways):
    a, b = two_gateways
    location = _start(
        a, {"orderId": "o-1", "delay": 3.0, "status": 201}
    )  # 3 s: B asks before it, on a loaded machine too
    pending = httpx.get(f"{b}{location}", headers=_user(), timeout=20)  # B knows it before the reply
    assert pending.status_code == 202 and pending.headers["location"] == location
    done = httpx.get(f"{b}{location}", headers={**_user(), "prefer": "wait=10"}, timeout=20)
    assert done.status_code == 201, done.text
    assert done.json()["data"]["got"]["orderId"] == "o-1"
    assert httpx.get(f"{a}{location}", headers=_user(), timeout=20).status_code == 201
    stranger = httpx.get(f"{b}{location}", headers=_user("someone-else"), timeout=20)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "RESULT_NOT_FOUND"
    anonymous = httpx.get(f"{b}{location}", timeout=20)
    assert anonymous.status_code == 401
    too_long = httpx.get(f"{b}/orders/results/{'a' * 300}", headers=_user(), timeout=20)
    assert too_long.status_code == 404


@pytest.mark.parametrize("two_gateways", [{"RETENTION": "2s"}], indirect=True)
def test_kafka_shared_result_is_gone_after_its_retention(two_gateways):
    a, b = two_gateways
    location = _start(a, {"orderId": "o-2"})
    assert httpx.get(f"{b}{location}", headers={**_user(), "prefer": "wait=5"}, timeout=20).status_code == 200
    time.sleep(2.5)
    gone = httpx.get(f"{b}{location}", headers=_user(), timeout=20)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "RESULT_NOT_FOUND"


@pytest.mark.parametrize("two_gateways", [{"RESULTS": "memory"}], indirect=True)
def test_kafka_memory_results_are_only_on_the_accepting_gateway(two_gateways):
    a, b = two_gateways
    location = _start(a, {"orderId": "o-3"})
    assert httpx.get(f"{a}{location}", headers={**_user(), "prefer": "wait=5"}, timeout=20).status_code == 200
    assert httpx.get(f"{b}{location}", headers=_user(), timeout=20).status_code == 404


async def test_shared_results_check_the_owner_keep_errors_and_expire(tmp_path: Path):
    shared = SharedResults(StoreSettings(async_url(f"sqlite:///{tmp_path / 'gateway.db'}")), retention=60)
    try:
        await shared.accept("c1", "alice")
        assert await shared.fetch("c1", "alice") == PENDING
        assert await shared.fetch("c1", "bob") is None
        await shared._complete("c1", StoredReply(201, (("x-a", "1"),), b'{"ok":1}'))
        assert await shared.fetch("c1", "alice") == StoredReply(201, (("x-a", "1"),), b'{"ok":1}')
        assert await shared.fetch("c1", "") is None
        await shared.accept("c2", "alice")
        await shared._complete("c2", GatewayError(502, "REPLY_TOO_LARGE", "too large"))
        error = await shared.fetch("c2", "alice")
        assert isinstance(error, GatewayError) and (error.status, error.code) == (502, "REPLY_TOO_LARGE")
        shared.retention = -1  # what is accepted now has expired already
        await shared.accept("c3", "alice")
        assert await shared.fetch("c3", "alice") is None
        assert await shared.fetch("x" * 65, "alice") is None
    finally:
        await shared.aclose()


async def test_shared_results_store_down_is_503_never_500():
    port = free_port()  # nothing listens there
    shared = SharedResults(StoreSettings(async_url(f"postgresql://gw@127.0.0.1:{port}/none")), retention=60)
    try:
        with pytest.raises(GatewayError) as accepted:
            await shared.accept("c1", "alice")
        assert (accepted.value.status, accepted.value.code) == (503, "RESULTS_UNAVAILABLE")
        with pytest.raises(GatewayError) as fetched:
            await shared.fetch("c1", "alice")
        assert fetched.value.status == 503
    finally:
        await shared.aclose()


def test_kafka_config_with_an_unusable_store_url_is_a_located_config_error(tmp_path: Path):
    from gateway_engine import ConfigErrors, load_config

    config = write_config(tmp_path / "config", STORE, {"orders": SHORT})
    env = {"KAFKA_BROKER": "127.0.0.1:9", "JWT_SECRET": SECRET, "SVC_KEY": "k" * 12, "STORE_URL": "mysql://db/x"}
    env |= {"REQUEST_TOPIC": "r", "EVENT_TOPIC": "e", "REPLY_TOPIC": "p"}
    with pytest.raises(ConfigErrors) as refused:
        load_config(config, env)
    assert "unsupported database 'mysql'" in str(refused.value)
