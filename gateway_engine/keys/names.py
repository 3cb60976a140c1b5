"""The names the keys runtime is looked up by, apart from it: the runtime loads SQLAlchemy (~28 MB with
Alembic), which a config without a ``keys`` section never needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway_engine.compiled.model import StateKey

if TYPE_CHECKING:
    from .runtime import KeysRuntime

RUNTIME = "keys.runtime"  # GatewayInfo.shared key of the config's runtime
KEYS: StateKey[KeysRuntime] = StateKey("keys")  # config.state(KEYS): the config's runtime
