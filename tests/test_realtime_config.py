"""channels.d mistakes are located config errors; a Redis pub/sub source; the feature can be switched off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import httpx
import pytest
import redis.asyncio as aioredis

from gateway_engine import ConfigErrors, create_app, load_config
from gateway_engine.compiled import features as feature_seam
from tests.realtime_support import CHANNELS, ENV, bearer, next_frame, subscribe, write_realtime_config, ws_url
from tests.redis_server import redis_url  # noqa: F401  (the fixture)
from tests.servers import serve


def _errors(tmp_path: Path, channels: str, extra: dict[str, str] | None = None) -> str:
    root = write_realtime_config(tmp_path / "c", channels=channels)
    for name, text in (extra or {}).items():
        (root / "channels.d" / name).write_text(text)
    with pytest.raises(ConfigErrors) as failed:
        load_config(root, ENV)
    return str(failed.value)


@pytest.mark.parametrize(
    "channels, needle",
    [
        (
            "channels:\n  - {name: 'payments:{user}'}\n",
            "bound to no identity field and no scope",
        ),
        (
            "channels:\n  - {name: 'payments:{user}', subscribe: {identity: {usr: user_id}}}\n",
            "binds usr, which 'payments:{user}' does not have",
        ),
        (
            "channels:\n  - {name: 'p:{user}:{user}', subscribe: {identity: {user: user_id}}}\n",
            "names a parameter twice",
        ),
        (
            CHANNELS + "  - {name: 'payments:{user}', subscribe: {identity: {user: user_id}}}\n",
            "is already declared in",
        ),
        (
            "channels:\n  - name: 'payments:{user}'\n    subscribe: {identity: {user: user_id}}\n"
            "    sources: [{publish: {topic: t}}]\n",
            "say where user of 'payments:{user}' come from",
        ),
        (
            "channels:\n  - name: 'payments:{user}'\n    subscribe: {identity: {user: user_id}}\n"
            "    sources: [{publish: {topic: t}, params: {user: '{{ nope }}'}}]\n",
            "nope",
        ),
        ("channels:\n  - {name: 'payments:{user}', history: -1}\n", "channels[0].history"),
        ("channels:\n  - {name: 'x', colour: red}\n", "colour"),
    ],
)
def test_realtime_config_errors_are_located(tmp_path, channels, needle):
    text = _errors(tmp_path, channels)
    assert "payments.yaml" in text and needle in text


def test_realtime_config_server_in_two_files_and_bad_rooms_and_chains(tmp_path):
    second = "server: {websocket: /other}\n"
    text = _errors(tmp_path, CHANNELS, {"more.yaml": second})
    assert "the realtime server is already declared in" in text
    root = write_realtime_config(tmp_path / "d")
    path = root / "channels.d" / "payments.yaml"
    path.write_text(path.read_text().replace('rooms: ["payments:{user}"]', 'rooms: ["nope:{user}"]'))
    with pytest.raises(ConfigErrors, match="is no declared channel bound to the identity"):
        load_config(root, ENV)
    path.write_text(path.read_text().replace("plugins: {auth: {accept: [jwt, api_key]}}", "plugins: {request_id: {}}"))
    with pytest.raises(ConfigErrors, match="the handshake chain needs the auth plugin"):
        load_config(root, ENV)
    path.write_text(path.read_text().replace("plugins: {request_id: {}}", "plugins: {nope: {}}"))
    with pytest.raises(ConfigErrors, match="unknown plugin 'nope'"):
        load_config(root, ENV)


async def test_realtime_redis_source_reaches_the_subscriber(tmp_path, redis_url):
    channels = CHANNELS + (
        "      - redis: {url: '" + redis_url + "', channel: payment-events}\n"
        "        params: {user: '{{ value.user }}'}\n"
        "        event: '{{ value.kind }}'\n"
        "        data: {status: '{{ value.status }}'}\n"
        "        when: '{{ value.kind != \"internal\" }}'\n"
    )
    root = write_realtime_config(tmp_path / "c", channels=channels)
    client = aioredis.from_url(redis_url)
    try:
        with serve(create_app(str(root), ENV)) as base:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(ws_url(base), headers=bearer("uma")) as uma:
                    assert (await subscribe(uma, "payments:uma"))["type"] == "subscribed"
                    async with asyncio.timeout(10):
                        while await client.pubsub_numsub("payment-events") == [(b"payment-events", 0)]:
                            await asyncio.sleep(0.05)  # the source subscribes at startup
                    await client.publish("payment-events", '{"user": "uma", "kind": "internal", "status": "x"}')
                    await client.publish("payment-events", "not json at all")
                    await client.publish("payment-events", '{"user": "v w", "kind": "refund", "status": "x"}')
                    await client.publish("payment-events", '{"user": "uma", "kind": "refund", "status": "done"}')
                    frame = await next_frame(uma, "message")
                    assert frame["event"] == "refund" and frame["data"] == {"status": "done"}
    finally:
        await client.aclose()


def test_realtime_switched_off_ignores_channels_d(tmp_path, monkeypatch):
    root = write_realtime_config(tmp_path / "c")
    real = feature_seam.entry_points
    monkeypatch.setattr(
        feature_seam,
        "entry_points",
        lambda *, group: [
            ep for ep in real(group=group) if not (group == feature_seam.ENTRY_POINT_GROUP and ep.name == "realtime")
        ],
    )
    config = load_config(root, ENV)
    assert "realtime" not in config.contributions and not config.asgi
    with serve(create_app(str(root), ENV)) as base:
        assert httpx.get(f"{base}/api/realtime/events?channel=payments:a").status_code == 404
        assert httpx.get(f"{base}/api/health").status_code == 200


async def test_realtime_unknown_websocket_path_is_refused(tmp_path):
    root = write_realtime_config(tmp_path / "c")
    with serve(create_app(str(root), ENV)) as base:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base.replace("http", "ws") + "/api/nowhere", headers=bearer("a"))
            assert refused.value.status in (404, 403)


def test_realtime_websocket_compression_is_a_server_setting(tmp_path):
    root = write_realtime_config(tmp_path / "c")
    assert load_config(root, ENV).server.websocket_compression is False  # ~40 KB less per socket
    gateway = root / "gateway.yaml"
    gateway.write_text(gateway.read_text() + "server: {websocket_compression: true}\n")
    assert load_config(root, ENV).server.websocket_compression is True


def test_realtime_endpoints_are_in_the_openapi_document_and_the_route_table(tmp_path):
    from openapi_spec_validator import validate

    from gateway_engine.cli.main import route_table
    from gateway_engine.endpoints.feature import BUILTINS

    config = load_config(write_realtime_config(tmp_path / "c"), ENV)
    spec = config.state(BUILTINS).openapi()
    validate(spec)
    assert spec["paths"]["/api/realtime/tickets"]["post"]["operationId"] == "realtime.ticket"
    assert "get" in spec["paths"]["/api/realtime/events"]
    rows = {(r["path"], r["methods"][0]) for r in route_table(config) if r["backend"] == "realtime"}
    assert rows >= {("/api/realtime/ws", "GET"), ("/api/realtime/tickets", "POST"), ("/api/socket.io", "GET")}
