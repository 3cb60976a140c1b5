"""``request_log``: writes one row per answered request to the store's request log (batched by the runtime).

Put it early in the chain (it runs late in the response phase, after the envelope): it
records the final status, the error code, the duration and who asked (the tenant and
key ids the auth plugin found). Never a body, a header, a query string or a key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.plugin import GatewayInfo, Plugin
from gateway_engine.foundation.reply import Reply

from .names import RUNTIME

if TYPE_CHECKING:
    from .runtime import KeysRuntime


class RequestLogPlugin(Plugin):
    name = "request_log"
    priority = 89_000  # just inside `logging`: sees the answer every other plugin shaped
    runs_unrouted = True

    def __init__(self, options: dict[str, Any], gateway: GatewayInfo) -> None:
        super().__init__(options, gateway)
        self._runtime: KeysRuntime | None = None

    def runtime(self) -> KeysRuntime | None:
        if self._runtime is None:
            self._runtime = self.gateway.shared(RUNTIME, lambda: None)
        return self._runtime

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        runtime = self.runtime()
        if runtime is None or runtime.requests is None or runtime.store is None:
            return
        identity = ctx.identity or {}
        runtime.requests.add(
            {
                "at": time.time(),
                "request_id": ctx.request_id,
                "method": ctx.method,
                "path": ctx.path[:500],
                "route": ctx.route.qualified_name if ctx.route is not None else None,
                "status": reply.status,
                "duration_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
                "platform_id": identity.get("tenant"),
                "client_id": identity.get("client_id") if identity.get("tenant") else None,
                "key_id": identity.get("key_id"),
                "consumer": (ctx.consumer or "")[:200] or None,
                "ip": ctx.client_ip,
                "error_code": ctx.state.get("error_code"),
            }
        )
