"""YAML reading that remembers where every value came from (for ``file:line:col`` errors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from gateway_engine.foundation.errors import ConfigError

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data and the 1-based line/column of every key path."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]]

    def where(self, path: Path) -> tuple[int, int]:
        """The position of ``path`` or of its closest ancestor that has one."""
        path = tuple(path)
        while path and path not in self.positions:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def error(self, path: Path, message: str) -> ConfigError:
        line, col = self.where(path)
        return ConfigError(message, file=self.file, line=line, col=col, path=dotted(path))


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_document(text: str, file: str) -> Document:
    """Parse one YAML document; syntax errors and duplicate keys become ConfigErrors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line, col=col) from None
    positions: dict[Path, tuple[int, int]] = {}
    if node is None:
        return Document(file, None, positions)
    data = _convert(node, (), positions, file)
    return Document(file, data, positions)


_constructor = yaml.SafeLoader("")  # used only to construct scalars (int, bool, null, ...) and merge keys


def _convert(node: yaml.Node, path: Path, positions: dict[Path, tuple[int, int]], file: str) -> Any:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)  # resolves `<<:` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError(
                    "mapping keys must be scalars",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    col=key_node.start_mark.column + 1,
                    path=dotted(path),
                )
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise ConfigError(
                    f"duplicate key {key!r}",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    col=key_node.start_mark.column + 1,
                    path=dotted(path + (key,)),
                )
            out[key] = _convert(value_node, path + (key,), positions, file)
            positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), positions, file) for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)
