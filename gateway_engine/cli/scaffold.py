"""``gateway-engine init`` and ``gateway-engine schema``: a first config, and the JSON Schemas an editor reads.

``init`` copies the installed schemas into ``DIR/schemas/`` and points every file's
``# yaml-language-server: $schema=`` line at them by a relative path: the config then
carries the schemas of the engine that wrote it, works in any editor without knowing
where the package is installed, and survives a new venv. ``init --schemas-only``
refreshes them after an upgrade.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TextIO

SCHEMA_PACKAGE = "gateway_engine_schemas"
SUFFIX = ".schema.json"

GATEWAY_YAML = """\
# yaml-language-server: $schema=schemas/gateway.schema.json
# The gateway: its base path and the plugin chain every route runs (`gateway-engine schema gateway` lists every key).
version: 1
base_path: /api/gateway
plugins:
  - request_id              # x-request-id on every answer and in every log line
  - logging: {format: json} # one JSON access line per answer; the server's own lines are JSON too
  # - auth: {accept: [api_key]}   # then list keys under `auth: {api_keys: [...]}`
  - envelope                # {success, data | error, meta} for every answer
metrics:
  allow_ips: [127.0.0.1/32, "::1/128"]   # /metrics answers loopback scrapers only
"""

EXAMPLE_YAML = """\
# yaml-language-server: $schema=../schemas/routes.schema.json
# One backend: its routes appear under {base_path}{prefix}. Until EXAMPLE_URL is set they answer
# 503 BACKEND_NOT_CONFIGURED naming it; e.g. EXAMPLE_URL=http://127.0.0.1:9000 gateway-engine serve
backend: example
prefix: /example
upstream:
  url: ${EXAMPLE_URL}
  timeout: 10s
routes:
  - name: get-item
    method: GET
    path: /items/{id}
    upstream_path: /items/{id}
"""


def add_scaffold_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    init = sub.add_parser("init", help="write a minimal working config (and the JSON Schemas) into DIR")
    init.add_argument("dir", nargs="?", default=".", help="directory to create or fill")
    init.add_argument("--force", action="store_true", help="overwrite files that already exist")
    init.add_argument("--schemas-only", action="store_true", help="only (re)write DIR/schemas/, e.g. after an upgrade")
    init.set_defaults(handler=_init)
    schema = sub.add_parser("schema", help="print an installed JSON Schema, or where the schemas are")
    schema.add_argument("name", nargs="?", help="schema name (gateway, routes, ...); omitted: list them")
    schema.add_argument("--path", action="store_true", help="print the file's path (or the folder's) instead")
    schema.set_defaults(handler=_schema)


def installed_schemas() -> dict[str, Traversable]:
    """Every shipped schema by name (``gateway``, ``routes``, and the features' folders)."""
    folder = resources.files(SCHEMA_PACKAGE)
    return {
        entry.name.removesuffix(SUFFIX): entry
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(SUFFIX)
    }


def _schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    schemas = installed_schemas()
    if args.name is None:
        if args.path:
            out.write(f"{resources.files(SCHEMA_PACKAGE)}\n")
        else:
            for name, entry in schemas.items():
                out.write(f"{name}\t{entry}\n")
        return 0
    found = schemas.get(args.name)
    if found is None:
        err.write(f"schema: no schema {args.name!r}; installed: {', '.join(schemas)}\n")
        return 1
    out.write(f"{found}\n" if args.path else found.read_text("utf-8"))
    return 0


def _init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root = Path(args.dir)
    files: dict[Path, str] = {
        Path("schemas") / entry.name: entry.read_text("utf-8") for entry in installed_schemas().values()
    }
    if not args.schemas_only:
        files[Path("gateway.yaml")] = GATEWAY_YAML
        files[Path("routes.d") / "example.yaml"] = EXAMPLE_YAML
        existing = [str(p) for p in files if (root / p).exists() and p.parts[0] != "schemas"]
        if existing and not args.force:
            err.write(f"init: {', '.join(existing)} already exist(s) in {root}; nothing written (--force overwrites)\n")
            return 1
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
    if args.schemas_only:
        out.write(f"wrote {len(files)} schema(s) to {root / 'schemas'}\n")
        return 0
    shown = os.path.relpath(root)
    out.write(
        f"wrote a minimal config to {shown}: gateway.yaml, routes.d/example.yaml, schemas/\n"
        f"next: gateway-engine validate --config {shown}\n"
        f"      EXAMPLE_URL=http://127.0.0.1:9000 gateway-engine serve --config {shown}\n"
        f"      curl http://127.0.0.1:8080/api/gateway/health\n"
    )
    return 0
