"""The schema and the loader never disagree: every schema key is exercised and loads,
every key the loader reads is in the schema, and every shipped YAML validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway_engine import load_config
from gateway_engine.config.documents import load_document
from gateway_engine.config.schema import schema, validate_document
from gateway_engine.kafka.feature import KAFKA_ROUTES
from gateway_engine.realtime.feature import REALTIME
from gateway_engine.realtime.hub import Limits
from gateway_engine.webhooks.feature import WEBHOOKS
from gateway_engine.workflows.definitions import CATALOG

ROOT = Path(__file__).resolve().parent.parent
KITCHEN = Path(__file__).resolve().parent / "fixtures" / "kitchen_sink"
# keys that only plugins read (their options are validated by each plugin's own schema)
PLUGIN_SECTIONS = {"auth", "rate_limit"}


def schema_paths(node: dict, prefix: tuple = ()) -> set[tuple]:
    """Every property path a schema allows (list items as '*')."""
    found: set[tuple] = set()
    for key, sub in node.get("properties", {}).items():
        found.add(prefix + (key,))
        found |= schema_paths(sub, prefix + (key,))
    if "items" in node:
        found |= schema_paths(node["items"], prefix + ("*",))
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        found |= schema_paths(branch, prefix)
    return found


def data_paths(value, prefix: tuple = ()) -> set[tuple]:
    found: set[tuple] = set()
    if isinstance(value, dict):
        for key, sub in value.items():
            found.add(prefix + (key,))
            found |= data_paths(sub, prefix + (key,))
    elif isinstance(value, list):
        for item in value:
            found |= data_paths(item, prefix + ("*",))
    return found


def _free_form(path: tuple) -> bool:
    # values under these keys are user data (templates, header maps, plugin options), not schema keys
    return any(p in ("headers", "body", "data", "meta", "set", "plugins") for p in path[:-1])


@pytest.mark.parametrize(
    "name, files",
    [
        ("gateway", [KITCHEN / "gateway.yaml"]),
        ("routes", sorted((KITCHEN / "routes.d").glob("*.yaml"))),
        ("webhooks", sorted((KITCHEN / "webhooks.d").glob("*.yaml"))),
        ("workflows", sorted((KITCHEN / "workflows.d").glob("*.yaml"))),
        ("channels", sorted((KITCHEN / "channels.d").glob("*.yaml"))),
        ("events", sorted((KITCHEN / "events.d").glob("*.yaml"))),
    ],
)
def test_schema_agreement_kitchen_sink_uses_every_key(name, files):
    used: set[tuple] = set()
    for f in files:
        used |= data_paths(yaml.safe_load(f.read_text()))
    allowed = {p for p in schema_paths(schema(name)) if not _free_form(p)}
    missing = sorted(p for p in allowed - used if p[0] not in PLUGIN_SECTIONS)
    assert not missing, f"schema keys not exercised by the kitchen sink: {missing}"


def test_schema_agreement_kitchen_sink_loads():
    config = load_config(KITCHEN, {"KS_KEY": "k", "KS_SECRET": "s"})
    route = next(r for r in config.routes if r.name == "create")
    assert route.methods == ("POST", "PUT") and route.upstream_method == "PATCH"
    assert route.request.encoding == "form" and route.request.query_allow == {"expand"}
    assert route.response.status == 201
    assert config.trusted_proxies == 1 and config.limits["error_details"] == 1024
    upstream = route.upstream
    assert upstream.timeouts.connect == 1 and upstream.timeouts.read == 5 and upstream.timeouts.total == 10
    assert upstream.headers == (("x-static", "static-value"),)
    assert type(upstream.transport).__name__ == "ResilientTransport"
    assert type(upstream.transport.inner).__name__ == "HttpxTransport"
    assert upstream.transport.retry.attempts == 3 and upstream.transport.retry.statuses == {502, 503}
    assert upstream.transport.breaker.policy.open_for == 10 and upstream.transport.bulkhead.max_concurrent == 20
    assert route.request.body_schema is not None and route.response.fail[0].code == "GONE"
    assert route.param_rules[0].pattern.pattern == "[a-z0-9-]+"
    storage = next(r for r in config.routes if r.backend == "storage")
    assert storage.request.presign.expires == 900 and storage.request.params({"query": {"key": "a.txt"}}) == {
        "key": "a.txt"
    }
    assert storage.param_rules[0].mapping == {"a.txt": "docs/a.txt"}
    assert upstream.auth.headers == [("authorization", "token k:s")]
    hooks = {s.name: s for s in config.state(WEBHOOKS).sources}
    assert set(config.state(WEBHOOKS).endpoints) == {"/hooks/ks-signed", "/api/gateway/ks/hooks", "/hooks/ks-standard"}
    signed = hooks["ks-signed"]
    assert signed.max_body == 65536 and signed.window == 3600 and signed.missing == ()
    assert signed.verifier.tolerance == 120 and signed.verifier.keys == [b"s"] and signed.verifier.prefix == "v1="
    assert [a.kind for a in signed.actions] == ["workflow", "workflow", "forward", "log"]
    assert signed.actions[0].route == "ks-workflows.start-run" and signed.actions[1].route == "ks-workflows.signal-run"
    assert (
        signed.actions[2].auth.headers == [("x-api-key", "Key k")] and signed.actions[2].transport.timeouts.total == 5
    )
    assert [a.auth.description for a in hooks["ks-standard"].actions[:5]] == [
        "bearer",
        "basic",
        "query key",
        "template Authorization",
        "none",
    ]
    page = next(r for r in config.routes if r.backend == "ks-aggregate")
    assert [name for name, _ in page.handler.calls()] == ["first", "second"] and page.handler.total == 10
    second = page.handler.declared[1]
    assert second.deps == ("first",) and second.fallback == {"found": False} and second.route.request.encoding == "form"
    assert page.handler.declared[0].shape.writes == {"id", "title"} and page.handler.declared[0].timeout == 2
    everything = config.state(CATALOG).get("Everything")
    assert (
        everything.task_queue == "kitchen-sink"
        and everything.children == ("Child",)
        and everything.signals == {"approve"}
    )
    assert set(config.state(CATALOG).bundle("Everything")["definitions"]) == {"Everything", "Child"}
    realtime = config.state(REALTIME)
    assert set(realtime.asgi) == {"/api/gateway/rt/ws", "/api/gateway/rt/socket.io", "/api/gateway/rt/socket.io/"}
    assert set(realtime.endpoints) == {"/api/gateway/rt/events", "/api/gateway/rt/tickets"}
    assert realtime.hub.limits == Limits(500, 3, 7, 32, "disconnect", 2048, 15.0, 99)
    assert realtime.tickets.ttl == 20 and type(realtime.backplane).__name__ == "LocalBackplane"
    kafka, redis_source, publish = realtime.sources
    assert kafka.start_at == "earliest" and kafka.options["sasl_plain_password"] == "s"
    assert redis_source.channel == "ks-events" and publish.topic == "ks-topic"
    assert realtime.socketio.settings.origins == ("https://ks.example",)
    kafka = next(r for r in config.routes if r.backend == "ks-kafka").upstream.transport.settings
    assert kafka.brokers == ("127.0.0.1:9092", "127.0.0.1:9093") and kafka.sasl_password == "s"
    assert kafka.reply_partition == 3 and kafka.retention == 90 and kafka.max_retained == 50
    assert kafka.security_protocol == "SASL_SSL" and kafka.ca_file == "/etc/ssl/ks-ca.pem"
    modes = {name: s.mode for name, s in config.state(KAFKA_ROUTES).items()}
    assert modes == {"ks-kafka.ask": "request-reply", "ks-kafka.tell": "fire-and-forget", "ks-kafka.result": "result"}


LOADER_SOURCES = [
    "compiled/compiler.py",
    "compiled/chains.py",
    "compiled/upstream_settings.py",
    "upstreams/auth.py",
    "config/loader.py",
    "webhooks/definitions.py",
    "webhooks/verify.py",
    "workflows/definitions.py",
    "store/settings.py",
    "keys/settings.py",
    "aggregation/definitions.py",
    "realtime/definitions.py",
    "kafka/settings.py",
    "kafka/definitions.py",
    "outbound/settings.py",
    "outbound/catalog.py",
]
_KEY_READ = re.compile(r"""(?:\.get\(|\[|\bin\s+)?["']([a-z_]+)["'](?=\s*(?:\]|,|\)|\s+in\b))""")


def test_schema_agreement_loader_reads_only_schema_keys():
    """A key the loader reads (``spec["x"]``, ``.get("x")``) must be a key some schema defines."""
    keys = {
        p[-1]
        for name in ("gateway", "routes", "webhooks", "workflows", "channels", "events")
        for p in schema_paths(schema(name))
    }
    read: set[str] = set()
    for source in LOADER_SOURCES:
        text = (ROOT / "gateway_engine" / source).read_text()
        read |= set(re.findall(r"""(?:\.get\(|\[)["']([a-z_]+)["']""", text))
    internal = {"_raw_params", "env", "properties"}  # not config keys (`properties`: reading a schema's defaults)
    unknown = sorted(read - keys - internal - {"none", "json", "form", "raw", "pass", "allow", "aiohttp", "template"})
    assert not unknown, f"the loader reads keys the schema lacks: {unknown}"


def shipped_yaml() -> list[Path]:
    files = [
        ROOT / "gateway.yaml",
        *sorted((ROOT / "routes.d").glob("*.yaml")),
        *sorted((ROOT / "webhooks.d").glob("*.yaml")),
        *sorted((ROOT / "workflows.d").glob("*.yaml")),
    ]
    for d in ["bench/configs", "examples", "deploy/config"]:
        if (ROOT / d).is_dir():
            files += sorted((ROOT / d).rglob("*.yaml"))
    return files


@pytest.mark.parametrize("path", shipped_yaml(), ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_agreement_shipped_yaml_validates(path):
    if path.name.endswith("-emit.yaml"):  # a route's `emit:` block, to paste into a route: checked in one
        data = yaml.safe_load(path.read_text())
        route = {"name": "r", "method": "PUT", "path": "/r", **data}
        text = yaml.safe_dump({"backend": "b", "prefix": "/b", "upstream": {"url": "http://h"}, "routes": [route]})
        assert validate_document(load_document(text, str(path)), "routes") == []
        return
    doc = load_document(path.read_text(), str(path))
    kind = (
        "gateway"
        if path.name == "gateway.yaml"
        else "routes"
        if path.parent.name == "routes.d"
        else path.parent.name[:-2]
    )
    assert validate_document(doc, kind) == []


def documentation_pages():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_schema_agreement_doc_examples_validate():
    """Every gateway.yaml, backend, webhook or workflow example in the README and the docs site validates."""
    checked: set[str] = set()
    for page in documentation_pages():
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            data = yaml.safe_load(block)
            if not isinstance(data, dict):
                continue
            kind = (
                "gateway"
                if "version" in data
                else "routes"
                if "backend" in data
                else "webhooks"
                if "source" in data
                else "workflows"
                if "workflow" in data
                else None
            )
            if kind:
                assert validate_document(load_document(block, str(page)), kind) == [], (page, block)
                checked.add(kind)
    assert checked == {"gateway", "routes", "webhooks", "workflows"}, "the docs show an example of every file kind"


def test_schema_agreement_every_property_is_described():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{'.'.join(path + [key])} has no description"
            walk(sub, path + [key])
        if "items" in node:
            walk(node["items"], path + ["[]"])
        for b in node.get("anyOf", []) + node.get("oneOf", []):
            walk(b, path)

    for name in ("gateway", "routes", "webhooks", "workflows"):
        s = schema(name)
        assert s["$schema"].endswith("2020-12/schema") and s["$id"]
        walk(s, [name])
