"""``webhooks.d/*.yaml`` → compiled sources and their endpoints; every problem a located ConfigError.

A source whose secrets (or forward URLs) are unset still compiles: its endpoint answers
503 naming the variables, as a backend with unset variables does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.config.documents import Document
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.env import Interpolation, referenced_names
from gateway_engine.config.schema import fill_defaults, schema
from gateway_engine.config.suggest import did_you_mean
from gateway_engine.config.templates import Render, TemplateError, compile_value, env_names
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.upstreams.auth import build_upstream_auth

from .actions import (
    TEMPLATE_NAMES,
    Action,
    EmitAction,
    ForwardAction,
    LogAction,
    PublishAction,
    WorkflowAction,
    identity_headers,
    service_identity,
)
from .dedupe import EventStore, open_store
from .endpoint import WebhookEndpoint
from .verify import Verifier, build_verifier, parse_signed_content

EVENT_NAMES = ("body", "headers", "source")
DEFAULT_ID = {"stripe": "{{ body.id }}", "standard-webhooks": "{{ headers['webhook-id'] }}"}
DEFAULT_TYPE = {"stripe": "{{ body.type }}", "standard-webhooks": "{{ body.type }}"}


@dataclass(frozen=True)
class Source:
    """One webhook source, ready to serve."""

    name: str
    file: str
    paths: tuple[str, ...]
    max_body: int
    body_format: str  # json, form or text: how the verified raw body is parsed, whatever its label
    verifier: Verifier | None  # None when its secrets are unset
    missing: tuple[str, ...]  # unset variables that leave it unconfigured (names, never values)
    event_id: Render | None
    event_type: Render | None
    window: float
    actions: tuple[Action, ...]
    dedupe_open: bool = False  # `dedupe.on_store_error: open`: an unreachable store runs the event unrecorded


class WebhookSet:
    """Every source of a config and its endpoints by full path (one dict lookup per request)."""

    def __init__(self, sources: Iterable[Source] = (), store: EventStore | None = None, lease: float = 60.0) -> None:
        self.sources = tuple(sources)
        self.store = store
        self.endpoints: dict[str, WebhookEndpoint] = {}
        if self.sources:
            assert store is not None  # compile_webhooks opens a store whenever it has sources
            self.endpoints = {path: WebhookEndpoint(s, store, lease) for s in self.sources for path in s.paths}

    async def aclose(self) -> None:
        for source in self.sources:
            for action in source.actions:
                if isinstance(action, ForwardAction):
                    await action.aclose()
        if self.store is not None:
            await self.store.aclose()


def settings_of(gateway_settings: Mapping[str, Any]) -> dict[str, Any]:
    """gateway.yaml's ``webhooks`` section with the schema's defaults, the store resolved."""
    section = schema("gateway")["properties"]["webhooks"]
    settings = fill_defaults(section, gateway_settings.get("webhooks") or {})
    settings["workflow_routes"] = fill_defaults(
        section["properties"]["workflow_routes"], settings.get("workflow_routes") or {}
    )
    if not settings.get("store"):
        shared = str(gateway_settings.get("rate_limit_storage") or "")
        settings["store"] = shared if shared.startswith(("redis://", "rediss://")) else "memory://"
    return settings


def compile_webhooks(
    docs: list[Document],
    routes: Iterable[Any],
    errors: list[ConfigError],
    *,
    router: Any,
    gateway: Any,
    environ: Mapping[str, str],
    note_unset: Callable[..., None],
    workflows: Any = None,
) -> WebhookSet:
    """Compile every webhook file; problems go to ``errors``. ``router`` catches paths a route already serves;
    ``workflows`` (the config's WorkflowCatalog) catches a start action naming no workflow."""
    if not docs:
        return WebhookSet()
    settings = settings_of(gateway.settings)
    known = workflows.names() if workflows is not None else []
    compiler = _SourceCompiler(
        {r.qualified_name: r for r in routes}, errors, environ, note_unset, settings["workflow_routes"], known
    )
    taken: dict[str, str] = {}
    names: dict[str, str] = {}
    sources = []
    for doc in docs:
        if doc.data["source"] in names:
            errors.append(
                doc.error(
                    ("source",),
                    f"webhook source {doc.data['source']!r} is already defined in {names[doc.data['source']]}",
                )
            )
            continue
        names[doc.data["source"]] = doc.file
        paths: list[tuple[str, tuple[str | int, ...]]] = [
            (settings["path"].rstrip("/") + "/" + doc.data["source"], ("source",))
        ]
        paths += [
            (gateway.base_path + alias.rstrip("/"), ("aliases", i))
            for i, alias in enumerate(doc.data.get("aliases", []))
        ]
        for path, where in paths:
            served = router.match(path)
            if path in taken:
                errors.append(doc.error(where, f"{path} is already the webhook endpoint of {taken[path]}"))
            elif served is not None:
                route = next(iter(served[0].values()))
                errors.append(
                    doc.error(where, f"{path} is already served by route {route.qualified_name} ({route.source_file})")
                )
            taken.setdefault(path, doc.file)
        source = compiler.source(doc, tuple(p for p, _ in paths))
        if source is not None:
            sources.append(source)
    store = open_store(settings["store"], str(gateway.config_dir), settings["memory_capacity"])
    return WebhookSet(sources, store, parse_duration(settings["lease"]))


class _SourceCompiler:
    def __init__(
        self,
        routes: dict[str, Any],
        errors: list[ConfigError],
        environ: Mapping[str, str],
        note_unset: Callable[..., None],
        workflow_routes: Mapping[str, str],
        workflows: list[str],
    ) -> None:
        self.routes, self.errors, self.environ = routes, errors, environ
        self.note_unset, self.workflow_routes, self.workflows = note_unset, workflow_routes, workflows

    def source(self, doc: Document, paths: tuple[str, ...]) -> Source | None:
        before = len(self.errors)
        data = doc.data
        secrets_env = Interpolation(self.environ)
        secrets = [s for s in secrets_env.tree(data["verify"]["secrets"]) if s]
        interp = Interpolation(self.environ)
        verify = interp.tree({k: v for k, v in data["verify"].items() if k != "secrets"})
        tolerance = parse_duration(verify.get("tolerance", "300s"))
        window = parse_duration(data.get("dedupe", {}).get("window", "24h"))
        if window < tolerance:
            self.errors.append(
                doc.error(
                    ("dedupe", "window"),
                    f"the window ({window:g}s) must be at least the tolerance "
                    f"({tolerance:g}s), or a replay inside the tolerance would run again",
                )
            )
        scheme = verify["scheme"]
        if scheme == "hmac":
            self._check(
                doc,
                ("verify", "signed_content"),
                lambda: parse_signed_content(verify.get("signed_content", "{body}"), "timestamp_header" in verify),
            )
        event = data.get("event", {})
        event_id = self._template(doc, ("event", "id"), event.get("id", DEFAULT_ID.get(scheme)), EVENT_NAMES)
        event_type = self._template(doc, ("event", "type"), event.get("type", DEFAULT_TYPE.get(scheme)), EVENT_NAMES)
        actions = [self._action(doc, ("actions", i), spec, interp) for i, spec in enumerate(data["actions"])]
        missing = list(interp.missing)
        missing += [
            n
            for spec in data["actions"]
            if "forward" in spec  # `template` auth reads env at load time
            for n in env_names(spec["forward"].get("auth", {}))
            if n not in self.environ and n not in missing
        ]
        if not secrets:
            missing += [
                n for n in secrets_env.missing or referenced_names(data["verify"]["secrets"]) if n not in missing
            ]
        self.note_unset(doc, interp)
        self.note_unset(doc, secrets_env)
        verifier = None
        if secrets and len(self.errors) == before:
            verifier = self._check(doc, ("verify", "secrets"), lambda: build_verifier(verify, secrets, tolerance))
        if len(self.errors) > before:
            return None
        compiled = tuple(a for a in actions if a is not None)
        assert len(compiled) == len(actions)  # an action that did not compile added an error: returned above
        return Source(
            name=data["source"],
            file=doc.file,
            paths=paths,
            max_body=data.get("max_body", 1048576),
            body_format=data.get("body_format", "json"),
            verifier=verifier,
            missing=tuple(missing),
            event_id=event_id,
            event_type=event_type,
            window=window,
            actions=compiled,
            dedupe_open=data.get("dedupe", {}).get("on_store_error", "closed") == "open",
        )

    def _action(self, doc: Document, path: tuple, spec: dict[str, Any], interp: Interpolation) -> Action | None:
        when = self._template(doc, path + ("when",), spec.get("when"), TEMPLATE_NAMES)
        if "workflow" in spec:
            return self._workflow(doc, path + ("workflow",), spec["workflow"], when, doc.data["source"])
        if "forward" in spec:
            return self._forward(doc, path + ("forward",), interp.tree(spec["forward"]), spec["forward"], when, interp)
        if "publish" in spec:
            return self._publish(doc, path + ("publish",), spec["publish"], when)
        if "emit" in spec:
            return self._emit(doc, path + ("emit",), spec["emit"], when)
        fields = self._template(doc, path + ("log", "fields"), spec["log"].get("fields", {}), TEMPLATE_NAMES)
        if fields is None:  # its template did not compile (an error says so); the schema makes fields an object
            return None
        return LogAction(
            when,
            level=spec["log"].get("level", "info"),
            message=spec["log"].get("message", "webhook event"),
            fields=fields,
        )

    def _workflow(
        self, doc: Document, path: tuple, spec: dict[str, Any], when: Render | None, source: str
    ) -> Action | None:
        kind = "start" if "start" in spec else "signal"
        route = self.workflow_routes[kind]
        if route not in self.routes:
            self.errors.append(
                doc.error(
                    path,
                    f"the workflow action calls route {route}, which no routes.d file defines"
                    f"{did_you_mean(route, self.routes)} (gateway.yaml webhooks.workflow_routes.{kind} names it)",
                )
            )
            return None
        if kind == "start" and spec["start"] not in self.workflows:
            known = ", ".join(self.workflows) or "none: workflows.d defines no workflow"
            self.errors.append(
                doc.error(
                    path + ("start",),
                    f"no workflow named {spec['start']!r}{did_you_mean(spec['start'], self.workflows)} (known: {known})",
                )
            )
            return None
        if kind == "signal" and "id" not in self.routes[route].template.names:
            self.errors.append(doc.error(path, f"route {route} has no {{id}} path parameter to name the workflow"))
            return None
        workflow_id = self._template(doc, path + ("id",), spec.get("id", "{{ source }}-{{ event.id }}"), TEMPLATE_NAMES)
        default = "{{ body }}" if kind == "start" else ["{{ body }}"]
        key = "input" if kind == "start" else "args"
        payload = self._template(doc, path + (key,), spec.get(key, default), TEMPLATE_NAMES)
        if workflow_id is None or payload is None:
            return None
        identity = service_identity(source)
        return WorkflowAction(
            when,
            route=route,
            start=spec.get("start"),
            signal=spec.get("signal"),
            workflow_id=workflow_id,
            payload=payload,
            identity=identity,
            headers=identity_headers(self.routes[route], identity),
            skip_unreceived=spec.get("unreceived") == "skip",
        )

    def _forward(
        self,
        doc: Document,
        path: tuple,
        spec: dict[str, Any],
        raw: dict[str, Any],
        when: Render | None,
        interp: Interpolation,
    ) -> Action | None:
        url = spec.get("url", "")
        unset = any(n in interp.missing for n in referenced_names(raw["url"]))  # then the source answers 503
        if not unset and not url.startswith(("http://", "https://")):
            self.errors.append(doc.error(path + ("url",), "the forward url must start with http:// or https://"))
            return None
        auth = self._check(doc, path + ("auth",), lambda: build_upstream_auth(spec.get("auth"), self.environ))
        body = self._template(doc, path + ("body",), spec.get("body", "{{ body }}"), TEMPLATE_NAMES)
        headers = self._template(doc, path + ("headers",), spec.get("headers", {}), TEMPLATE_NAMES)
        if auth is None or body is None or headers is None:
            return None
        return ForwardAction(
            when, url=url, auth=auth, body=body, headers=headers, timeout=parse_duration(spec.get("timeout", "10s"))
        )

    def _publish(self, doc: Document, path: tuple, spec: dict[str, Any], when: Render | None) -> Action | None:
        key = self._template(doc, path + ("key",), spec.get("key"), TEMPLATE_NAMES)
        value = self._template(doc, path + ("value",), spec.get("value", "{{ body }}"), TEMPLATE_NAMES)
        attributes = self._template(doc, path + ("attributes",), spec.get("attributes", {}), TEMPLATE_NAMES)
        if value is None or attributes is None or ("key" in spec and key is None):
            return None
        return PublishAction(when, topic=spec["topic"], key=key, value=value, attributes=attributes)

    def _emit(self, doc: Document, path: tuple, spec: dict[str, Any], when: Render | None) -> Action | None:
        data = self._template(doc, path + ("data",), spec.get("data", "{{ body }}"), TEMPLATE_NAMES)
        tenant = self._template(doc, path + ("tenant",), spec["tenant"], TEMPLATE_NAMES)
        if data is None or tenant is None:
            return None
        return EmitAction(when, event=spec["event"], data=data, tenant=tenant)

    def _template(self, doc: Document, path: tuple, value: Any, names: Iterable[str]) -> Render | None:
        if value is None:
            return None
        return self._check(doc, path, lambda: compile_value(value, names))

    def _check(self, doc: Document, path: tuple, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except (TemplateError, ValueError) as exc:
            self.errors.append(doc.error(path, str(exc)))
            return None
