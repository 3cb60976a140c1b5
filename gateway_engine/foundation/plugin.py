"""The plugin protocol: what a plugin is and what the engine promises it."""

from __future__ import annotations

from typing import Any, ClassVar

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.credentials import CredentialVerifier
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply


class GatewayInfo:
    """Gateway-wide facts and shared resources handed to every plugin constructor."""

    def __init__(
        self, *, base_path: str, settings: dict[str, Any], config_dir: str, written: dict[str, Any] | None = None
    ) -> None:
        self.base_path = base_path
        self.settings = settings  # the gateway.yaml top-level sections (auth, rate_limit_storage, ...)
        self.written = written or {}  # the same, as written: before ${VAR} interpolation dropped unset values
        self.config_dir = config_dir
        self._shared: dict[Any, Any] = {}
        #: credential verifiers features lend the auth plugin, by name (see ``credentials.py``)
        self.verifiers: dict[str, CredentialVerifier] = {}

    def shared(self, key: Any, factory: Any) -> Any:
        """One object per key for the whole config (a storage, a key table, a file)."""
        if key not in self._shared:
            self._shared[key] = factory()
        return self._shared[key]


class Plugin:
    """Base class of every plugin, built-in or third-party.

    A plugin class declares ``name``, a ``priority`` (higher runs earlier in the
    request phase and later in the response phase, as in Kong) and an
    ``options_schema`` (JSON Schema; the engine validates options and fills
    defaults before ``__init__``). One instance serves every route with the same
    options, so per-request state belongs in ``ctx.state``.

    ``on_request`` may return a ``Reply`` or a ``GatewayError`` to answer without
    calling the upstream; the response phase then runs for the plugins that
    already ran. Errors are values: return a ``GatewayError`` rather than raise.
    """

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False, "properties": {}}
    #: set when the plugin must see the buffered response body (``reply.read``)
    needs_response_body: ClassVar[bool] = False
    #: set when the plugin (from the gateway-wide chain) must also see requests no route matched
    #: (404, 405): ids, security and CORS headers and access logs belong on every answer
    runs_unrouted: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any], gateway: GatewayInfo) -> None:
        self.options = options
        self.gateway = gateway

    async def on_request(self, ctx: RequestContext) -> Reply | GatewayError | None:
        return None

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        return None

    async def startup(self) -> None:
        """Open resources (files, connections) once the server runs."""

    async def shutdown(self) -> None:
        """Release resources; called once when the config is retired."""

    def process_log_format(self) -> str | None:
        """The format this plugin asks of the process's own log lines (the server's, the engine's), e.g. ``"json"``,
        so they match its own; None (the default) has no say."""
        return None

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Semantic checks beyond the schema; return messages (empty when fine)."""
        return []

    def openapi_security(self) -> dict[str, Any] | None:
        """How clients authenticate on routes using this plugin, for the generated OpenAPI document.

        ``{"schemes": {name: OpenAPI securityScheme}, "requirement": [{name: []}, ...]}``:
        the requirement lists alternatives (any one suffices; ``{}`` means anonymous
        is allowed). None (the default) means the plugin asks nothing of the client.
        """
        return None
