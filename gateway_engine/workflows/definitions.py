"""workflows.d: sagas in YAML, checked against the routes they call, kept as plain JSON.

A definition travels to Temporal as the dict written in YAML (with the definitions of
the child workflows it may start) plus a content hash, so a run keeps the definition it
started with whatever happens to the YAML later. Nothing here imports temporalio.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from jinja2 import Environment, TemplateSyntaxError, nodes
from jsonschema import SchemaError

from gateway_engine.compiled.identity_forwarding import check_identity_forwarding
from gateway_engine.compiled.model import StateKey
from gateway_engine.config.bodies import BodyValidator, body_validator
from gateway_engine.config.documents import Document
from gateway_engine.config.templates import TemplateError, compile_value, template_strings
from gateway_engine.foundation.errors import ConfigError

from .access import IDENTITY_HEADERS

DEFAULT_TASK_QUEUE = "gateway-workflows"

#: names a workflow template may read
TEMPLATE_NAMES = ("input", "steps", "signals", "workflow")
_parser = Environment()  # parsing only, to see which ``steps.<name>`` a template reads


@dataclass(frozen=True)
class WorkflowDef:
    """One checked workflow: its YAML as plain data plus what the gateway needs at start time."""

    name: str
    task_queue: str
    spec: dict[str, Any]
    input_validator: BodyValidator | None
    signals: frozenset[str]
    children: tuple[str, ...]


class WorkflowCatalog:
    """Every workflow of a config, and the pinned bundle each one starts with."""

    def __init__(self, workflows: dict[str, WorkflowDef]) -> None:
        self.workflows = workflows
        self._closures = {name: self._closure(name) for name in workflows}
        self._bundles = {name: self._bundle(name) for name in workflows}

    def get(self, name: str) -> WorkflowDef | None:
        return self.workflows.get(name)

    def names(self) -> list[str]:
        return sorted(self.workflows)

    def task_queues(self) -> list[str]:
        return sorted({w.task_queue for w in self.workflows.values()})

    def signals_of(self, name: str) -> frozenset[str]:
        """The signals a run may wait for, its children's included (a parent passes them on)."""
        return frozenset().union(*(self.workflows[n].signals for n in self._closures[name]))

    def bundle(self, name: str) -> dict[str, Any]:
        """``{definitions: {name: spec, child: spec, ...}, hash}``: what a run is pinned to."""
        return self._bundles[name]

    def _closure(self, name: str) -> list[str]:
        """The workflow and every workflow it may start, directly or not."""
        seen: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.append(current)
                pending.extend(self.workflows[current].children)
        return sorted(seen)

    def _bundle(self, name: str) -> dict[str, Any]:
        definitions = {n: self.workflows[n].spec for n in self._closures[name]}
        digest = hashlib.sha256(orjson.dumps(definitions, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        return {"definitions": definitions, "hash": digest}


#: the config's WorkflowCatalog, as the workflows feature contributed it: ``config.state(CATALOG)``
CATALOG: StateKey[WorkflowCatalog] = StateKey("workflows")


def compile_workflows(docs: list[Document], routes: list[Any], errors: list[ConfigError]) -> WorkflowCatalog:
    """Check every workflow (routes exist, path parameters given, templates compile, steps read only
    earlier steps, children exist without cycles) and the workflows routes' identity forwarding."""
    by_name = {r.qualified_name: r for r in routes}
    found: dict[str, tuple[Document, WorkflowDef]] = {}
    before = len(errors)
    for doc in docs:
        name = doc.data["workflow"]
        if name in found:
            errors.append(doc.error(("workflow",), f"workflow {name!r} is already defined in {found[name][0].file}"))
            continue
        found[name] = (doc, _workflow(doc, by_name, errors))
    for doc, _ in found.values():
        for child, path in _children(doc.data):
            if child not in found:
                errors.append(
                    doc.error(path, f"unknown workflow {child!r}; workflows: {', '.join(sorted(found)) or 'none'}")
                )
    if len(errors) == before:
        _check_cycles(found, errors)
    temporal = [r for r in routes if r.upstream_template.startswith("temporal://")]
    check_identity_forwarding(temporal, IDENTITY_HEADERS, "workflows", errors)
    catalog = WorkflowCatalog({} if len(errors) > before else {n: wf for n, (_, wf) in found.items()})
    if not errors:  # a config that fails to load never reaches a live transport
        for route in routes:
            transport = getattr(route.upstream, "transport", None)
            transport = getattr(transport, "inner", transport)
            if transport is not None and hasattr(transport, "bind_catalog"):
                transport.bind_catalog(catalog)
    return catalog


def _workflow(doc: Document, routes: dict[str, Any], errors: list[ConfigError]) -> WorkflowDef:
    data = doc.data
    validator = None
    if "input" in data:
        try:
            validator = body_validator(data["input"])
        except SchemaError as exc:
            errors.append(doc.error(("input",) + tuple(exc.absolute_path), f"invalid input schema: {exc.message}"))
    earlier: list[str] = []
    signals = set()
    for i, step in enumerate(data["steps"]):
        path = ("steps", i)
        if step["name"] in earlier:
            errors.append(doc.error(path + ("name",), f"step name {step['name']!r} is used twice"))
        if "call" in step:
            _call(doc, path, step, routes, errors)
        if "compensate" in step:
            _call(doc, path + ("compensate",), step["compensate"], routes, errors)
        if "wait" in step:
            signals.add(step["wait"]["signal"])
        for key, readable in (
            ("with", earlier),
            ("when", earlier),
            ("switch", earlier),
            ("compensate", earlier + [step["name"]]),
            ("emit", earlier + [step["name"]]),
            ("publish", earlier + [step["name"]]),
        ):
            if key in step:
                _template(doc, path + (key,), step[key], readable, errors)
        earlier.append(step["name"])
    for key in ("result", "artifacts"):
        if key in data:
            _template(doc, (key,), data[key], earlier, errors)
    # as JSON (an unquoted YAML date becomes its ISO string): this is what travels to Temporal
    return WorkflowDef(
        name=data["workflow"],
        task_queue=data.get("task_queue", DEFAULT_TASK_QUEUE),
        spec=orjson.loads(orjson.dumps(data)),
        input_validator=validator,
        signals=frozenset(signals),
        children=tuple(sorted({c for c, _ in _children(data)})),
    )


def _call(doc: Document, path: tuple, spec: dict[str, Any], routes: dict[str, Any], errors: list[ConfigError]) -> None:
    route = routes.get(spec["call"])
    if route is None:
        close = difflib.get_close_matches(spec["call"], list(routes), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `gateway-engine routes`"
        errors.append(
            doc.error(path + ("call",), f"no route {spec['call']!r} (routes are named backend.route-name){hint}")
        )
        return
    params = spec.get("with", {}).get("params", {})
    if isinstance(params, dict):
        missing = [n for n in route.template.names if n not in params]
        if missing:
            errors.append(
                doc.error(
                    path + ("with",),
                    f"route {spec['call']} needs path parameter(s) {', '.join(missing)} in with.params",
                )
            )


def _template(doc: Document, path: tuple, value: Any, readable: list[str], errors: list[ConfigError]) -> None:
    try:
        compile_value(value, TEMPLATE_NAMES)
    except TemplateError as exc:
        errors.append(doc.error(path, str(exc)))
        return
    for source in template_strings(value):
        for name in _step_reads(source):
            if name not in readable:
                errors.append(
                    doc.error(
                        path,
                        f"reads steps.{name}, which is not an earlier step "
                        f"(earlier steps: {', '.join(readable) or 'none'})",
                    )
                )


def _step_reads(source: str) -> set[str]:
    try:
        ast = _parser.parse(source)
    except TemplateSyntaxError:
        return set()
    names: set[str] = set()
    # cast: jinja2's find_all types a tuple of node classes as their common base (Expr), which has no .node
    found = cast("Iterator[nodes.Getattr | nodes.Getitem]", ast.find_all((nodes.Getattr, nodes.Getitem)))
    for node in found:
        if isinstance(node.node, nodes.Name) and node.node.name == "steps":
            key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            if isinstance(key, str):
                names.add(key)
    return names


def _children(data: dict[str, Any]) -> Iterator[tuple[str, tuple]]:
    for i, step in enumerate(data["steps"]):
        switch = step.get("switch")
        if switch:
            for case, child in switch["cases"].items():
                yield child, ("steps", i, "switch", "cases", case)
            if "default" in switch:
                yield switch["default"], ("steps", i, "switch", "default")


def _check_cycles(found: dict[str, tuple[Document, WorkflowDef]], errors: list[ConfigError]) -> None:
    def visit(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return trail[trail.index(name) :] + [name]
        for child in found[name][1].children:
            cycle = visit(child, trail + [name])
            if cycle:
                return cycle
        return None

    for name, (doc, _) in found.items():
        cycle = visit(name, [])
        if cycle and cycle[0] == name:
            errors.append(doc.error(("steps",), f"workflows start each other in a cycle: {' -> '.join(cycle)}"))
