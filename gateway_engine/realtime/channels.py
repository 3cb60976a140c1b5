"""Channel patterns (``payments:{user}``) and who may subscribe to a concrete channel of one.

A pattern's parameters are bound to fields of the authenticated identity (``{user}`` must be the caller's
``user_id``), or the channel is open to holders of a scope. Nothing the client says about itself counts:
the identity comes from the handshake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.foundation.errors import GatewayError

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: what a parameter value may be: no separators or spaces, so a value can never make another channel's name
_VALUE = r"[A-Za-z0-9._@+=-]{1,128}"
MAX_NAME = 256


def parameters(pattern: str) -> tuple[str, ...]:
    return tuple(_PARAM.findall(pattern))


@dataclass(frozen=True)
class Channel:
    """One declared channel pattern, compiled."""

    pattern: str
    params: tuple[str, ...]
    regex: re.Pattern[str]
    identity: Mapping[str, str]  # parameter -> identity field it must equal
    scopes: frozenset[str]  # holders of any of these may subscribe to every channel of the pattern
    history: int  # messages kept per concrete channel, for resuming
    description: str = ""

    def match(self, name: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(name)
        return found.groupdict() if found else None

    def name(self, values: Mapping[str, Any]) -> str | None:
        """The concrete channel for ``values`` (None when a value is missing or not a safe name part)."""
        name = self.pattern
        for param in self.params:
            value = values.get(param)
            text = str(value) if value is not None and not isinstance(value, (dict, list)) else ""
            if not re.fullmatch(_VALUE, text):
                return None
            name = name.replace("{" + param + "}", text)
        return name

    def allows(self, identity: Mapping[str, Any], values: Mapping[str, str]) -> bool:
        held = set(identity.get("scopes") or ())
        if self.scopes and ("*" in held or held & self.scopes):
            return True
        if not self.identity:
            return not self.scopes  # no binding: open to every authenticated caller unless scopes are required
        return all(_field(identity, self.identity[p]) == values.get(p) for p in self.params)


def compile_channel(
    pattern: str, identity: Mapping[str, str], scopes: list[str], history: int, description: str = ""
) -> Channel:
    """Raises ValueError naming what is wrong with the declaration."""
    params = parameters(pattern)
    if len(set(params)) != len(params):
        raise ValueError(f"channel {pattern!r} names a parameter twice")
    unknown = sorted(set(identity) - set(params))
    if unknown:
        raise ValueError(f"subscribe.identity binds {', '.join(unknown)}, which {pattern!r} does not have")
    unbound = [p for p in params if p not in identity]
    if unbound and not scopes:
        raise ValueError(
            f"parameter(s) {', '.join(unbound)} of {pattern!r} are bound to no identity field and no scope "
            "restricts the channel: anyone could read anyone's messages (bind them in subscribe.identity)"
        )
    return Channel(
        pattern, params, re.compile(_regex(pattern)), dict(identity), frozenset(scopes), history, description
    )


def _regex(pattern: str) -> str:
    out, at = [], 0
    for found in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[at : found.start()]))
        out.append(f"(?P<{found.group(1)}>{_VALUE})")
        at = found.end()
    out.append(re.escape(pattern[at:]))
    return "".join(out)


def _field(identity: Mapping[str, Any], name: str) -> str | None:
    value = identity.get(name)
    return str(value) if value not in (None, "") and not isinstance(value, (dict, list)) else None


class Catalog:
    """Every declared channel; finds the pattern a concrete name belongs to and checks a subscription."""

    def __init__(self, channels: list[Channel]) -> None:
        self.channels = tuple(channels)
        self.by_pattern = {c.pattern: c for c in channels}

    def resolve(self, name: Any) -> tuple[Channel, dict[str, str]] | None:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            return None
        for channel in self.channels:
            values = channel.match(name)
            if values is not None:
                return channel, values
        return None

    def authorize(self, identity: Mapping[str, Any], name: Any) -> Channel | GatewayError:
        """The channel when ``identity`` may subscribe to ``name``; otherwise the error to tell the client."""
        found = self.resolve(name)
        if found is None:
            return GatewayError(404, "UNKNOWN_CHANNEL", "No channel of that name is declared.")
        channel, values = found
        if not channel.allows(identity, values):
            return GatewayError(403, "FORBIDDEN", "This identity may not subscribe to that channel.")
        return channel
