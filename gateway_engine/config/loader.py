"""Reading a config directory: YAML files → located documents, checked against the schemas."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway_engine.config.documents import Document, load_document
from gateway_engine.config.env import malformed_references
from gateway_engine.config.schema import validate_document
from gateway_engine.foundation.errors import ConfigError

GATEWAY_FILE = "gateway.yaml"
ROUTES_DIR = "routes.d"


@dataclass
class RawConfig:
    """The documents of one config directory, with every error found while reading them."""

    root: Path
    gateway: Document | None = None
    backends: list[Document] = field(default_factory=list)
    folders: dict[str, list[Document]] = field(default_factory=dict)  # a feature's folder -> its documents
    errors: list[ConfigError] = field(default_factory=list)
    version: str = ""


def read_config_dir(root: str | os.PathLike[str], folders: Mapping[str, str] | None = None) -> RawConfig:
    """Parse and schema-check ``gateway.yaml``, ``routes.d/*.yaml`` and each of ``folders`` (folder -> schema
    name, e.g. the ``webhooks.d`` of a feature), reporting all errors, not the first."""
    root = Path(root)
    raw = RawConfig(root)
    digest = hashlib.sha256()
    gateway_path = root / GATEWAY_FILE
    if not gateway_path.is_file():
        raw.errors.append(
            ConfigError(
                f"{GATEWAY_FILE} not found in {root}: create a minimal config with `gateway-engine init {root}`, "
                "or point --config (or $GATEWAY_CONFIG) at a config directory",
                file=str(gateway_path),
            )
        )
    else:
        raw.gateway = _read(gateway_path, "gateway", raw, digest)
    wanted = [(ROUTES_DIR, "routes", raw.backends)]
    for folder, schema_name in sorted((folders or {}).items()):
        wanted.append((folder, schema_name, raw.folders.setdefault(folder, [])))
    for folder, schema_name, documents in wanted:
        if (root / folder).is_dir():
            for path in sorted([*(root / folder).glob("*.yaml"), *(root / folder).glob("*.yml")]):
                doc = _read(path, schema_name, raw, digest)
                if doc is not None:
                    documents.append(doc)
    raw.version = digest.hexdigest()[:12]
    return raw


def _read(path: Path, schema_name: str, raw: RawConfig, digest: "hashlib._Hash") -> Document | None:
    display = _display(path, raw.root)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raw.errors.append(ConfigError(f"cannot read file: {exc}", file=display))
        return None
    digest.update(display.encode() + b"\0" + text.encode() + b"\0")
    try:
        doc = load_document(text, display)
    except ConfigError as exc:
        raw.errors.append(exc)
        return None
    if not isinstance(doc.data, dict):
        raw.errors.append(ConfigError("the file must hold a YAML mapping", file=display, line=1, col=1))
        return None
    if schema_name == "gateway" and "version" in doc.data and doc.data["version"] != 1:
        raw.errors.append(
            doc.error(("version",), f"found version {doc.data['version']!r}; this engine reads version 1")
        )
        return None
    schema_errors = validate_document(doc, schema_name)
    for where, fragment in malformed_references(doc.data):
        schema_errors.append(
            doc.error(
                where,
                f"malformed variable reference {fragment!r}: write ${{NAME}} or ${{NAME:-default}} ($$ for a literal $)",
            )
        )
    raw.errors.extend(schema_errors)
    return None if schema_errors else doc


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
