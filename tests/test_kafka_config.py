"""Kafka route and upstream settings: every mistake is a located config error; the feature can be switched off."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_engine import load_config
from gateway_engine.compiled import features as feature_seam
from gateway_engine.foundation.errors import ConfigErrors
from gateway_engine.kafka.feature import KAFKA_ROUTES
from tests.servers import write_config


def _load(tmp_path, routes: str, upstream_extra: str = "", env: dict | None = None, brokers: str = "127.0.0.1:9092"):
    upstream = f"upstream: {{transport: kafka, brokers: '{brokers}'{upstream_extra}}}\n"
    text = "backend: pay\nprefix: /pay\n" + upstream + "routes:\n" + routes
    root = write_config(tmp_path / "cfg", "version: 1\n", {"pay": text})
    return load_config(root, env or {})


def _errors(tmp_path, routes: str, upstream_extra: str = "", brokers: str = "127.0.0.1:9092") -> str:
    with pytest.raises(ConfigErrors) as info:
        _load(tmp_path, routes, upstream_extra, brokers=brokers)
    return str(info.value)


def test_kafka_config_compiles_modes_and_the_result_location(tmp_path):
    config = _load(
        tmp_path,
        "  - {name: ask, method: POST, path: /ask, kafka: {topic: t, key: '{{ body.id }}'}}\n"
        "  - {name: result, method: GET, path: '/r/{rid}', kafka: {mode: result}}\n",
    )
    routes = config.state(KAFKA_ROUTES)
    assert routes["pay.ask"].mode == "request-reply" and routes["pay.ask"].location == "/pay/r/{id}"
    assert routes["pay.ask"].key({"body": {"id": 7}}) == 7
    assert routes["pay.result"].id_param == "rid"
    assert config.routes[0].upstream_template == "kafka://127.0.0.1:9092/ask"


def test_kafka_config_route_without_topic_is_located(tmp_path):
    text = _errors(tmp_path, "  - {name: ask, method: POST, path: /ask}\n")
    assert "routes.d/pay.yaml:5" in text and "needs `kafka.topic`" in text


def test_kafka_config_gateway_owned_header_is_refused(tmp_path):
    text = _errors(tmp_path, "  - {name: ask, method: POST, path: /ask, kafka: {topic: t, headers: {User-Id: x}}}\n")
    assert "'User-Id' is set by the gateway itself" in text


def test_kafka_config_bad_template_is_located(tmp_path):
    text = _errors(tmp_path, "  - {name: ask, method: POST, path: /ask, kafka: {topic: t, key: '{{ nope.x }}'}}\n")
    assert "routes.d/pay.yaml:5" in text and "nope" in text


def test_kafka_config_result_route_shape(tmp_path):
    text = _errors(tmp_path, "  - {name: result, method: POST, path: /r, kafka: {mode: result}}\n")
    assert "one path parameter" in text


def test_kafka_config_bad_brokers_and_security(tmp_path):
    route = "  - {name: ask, method: POST, path: /ask, kafka: {topic: t}}\n"
    assert "brokers must be host:port" in _errors(tmp_path / "a", route, brokers="127.0.0.1:9092,nohost")
    assert "needs kafka.sasl" in _errors(tmp_path / "b", route, ", kafka: {security_protocol: SASL_SSL}")
    sasl = ", kafka: {sasl: {username: u, password: p}}"
    assert "kafka.sasl needs security_protocol SASL_PLAINTEXT or SASL_SSL" in _errors(tmp_path / "c", route, sasl)


def test_kafka_config_partition_from_env_must_be_a_number(tmp_path):
    route = "  - {name: ask, method: POST, path: /ask, kafka: {topic: t}}\n"
    config = _load(tmp_path / "ok", route, ", kafka: {reply: {partition: '${PART}'}}", {"PART": "4"})
    assert config.routes[0].upstream.transport.settings.reply_partition == 4
    with pytest.raises(ConfigErrors) as info:
        _load(tmp_path / "bad", route, ", kafka: {reply: {partition: '${PART}'}}", {"PART": "four"})
    assert "partition must be a whole number" in str(info.value)


def test_kafka_config_kafka_key_on_an_http_backend_is_refused(tmp_path):
    text = "backend: web\nprefix: /web\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
    text += "  - {name: one, method: POST, path: /one, kafka: {topic: t}}\n"
    root = write_config(tmp_path / "cfg", "version: 1\n", {"web": text})
    with pytest.raises(ConfigErrors) as info:
        load_config(root, {})
    assert "applies only to a backend with `upstream.transport: kafka`" in str(info.value)


def test_kafka_config_feature_switched_off_names_the_transport_unknown(tmp_path, monkeypatch):
    real = feature_seam.entry_points
    monkeypatch.setattr(
        feature_seam,
        "entry_points",
        lambda *, group: [
            e for e in real(group=group) if not (e.group == feature_seam.ENTRY_POINT_GROUP and e.name == "kafka")
        ],
    )
    text = _errors(tmp_path, "  - {name: ask, method: POST, path: /ask, kafka: {topic: t}}\n")
    assert "unknown transport 'kafka'" in text


def test_kafka_config_the_bench_scenario_compiles():
    root = Path(__file__).resolve().parent.parent / "bench" / "configs" / "kafka"
    env = {"BENCH_KAFKA_BROKER": "127.0.0.1:9092", "BENCH_KAFKA_REQUEST_TOPIC": "q", "BENCH_KAFKA_REPLY_TOPIC": "r"}
    config = load_config(root, env)
    assert config.state(KAFKA_ROUTES)["bench-kafka.echo"].topic == "q"
    assert config.routes[0].upstream.transport.settings.reply_topic == "r"
