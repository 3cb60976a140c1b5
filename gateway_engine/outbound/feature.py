"""The outbound feature: ``events.d`` event types, route ``emit:``, the ``webhooks-admin`` transport, the dispatcher."""

from __future__ import annotations

from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.identity_forwarding import check_identity_forwarding
from gateway_engine.compiled.model import Contribution
from gateway_engine.compiled.workers import Worker
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.upstreams.seam import Transport

from .catalog import compile_catalog
from .service import OUTBOUND, Outbound
from .settings import IN_PROCESS, delivery_settings

__all__ = ["OUTBOUND", "OutboundFeature"]
SCHEME = "webhooks-admin://"
SECTION = "outbound_webhooks"


def admin_transport(**options: Any) -> Transport:
    from .transport import AdminTransport

    return AdminTransport(**options)


admin_transport.schemes = (SCHEME,)  # type: ignore[attr-defined]


class OutboundFeature(Feature):
    name = "outbound"
    order = 60
    folder = "events.d"
    schema = "events"
    transports = {"webhooks_admin": admin_transport}
    route_keys = frozenset({"emit"})

    def compile(self, given: FeatureInput) -> Contribution:
        from .emit import compile_emits

        core = given.core
        before = len(given.errors)
        catalog = compile_catalog(given.documents, given.errors)
        try:
            settings = delivery_settings(core.gateway.settings.get(SECTION) or {})
        except ValueError as exc:
            given.errors.append(ConfigError(f"{SECTION}: {exc}", file="gateway.yaml", path=SECTION))
            return Contribution()
        service = Outbound(catalog, settings, core.gateway)
        admin_routes = [r for r in core.routes if r.upstream_template.startswith(SCHEME)]
        hooks = compile_emits(core.routes, catalog, service, given.errors)
        if admin_routes:  # the API's modules load SQLAlchemy: only for a config that serves it
            from .admin import Admin
            from .transport import TENANT_HEADERS

            check_identity_forwarding(admin_routes, TENANT_HEADERS, "webhooks-admin", given.errors)
        used = bool(given.documents or admin_routes or hooks)
        if len(given.errors) == before:  # a config that fails to load never reaches a live transport
            for route in admin_routes:
                transport = getattr(route.upstream, "transport", None)
                transport = getattr(transport, "inner", transport)
                if transport is not None and hasattr(transport, "bind_admin"):
                    transport.bind_admin(Admin(service))
        return Contribution(
            startup=[service.start] if used else [],
            shutdown=[service.stop] if used else [],
            state=service,
            after_answer=hooks,
            openapi_webhooks=catalog.openapi() if used else {},
            workers={"outbound": Worker(service.run_dispatcher, in_process=settings.dispatch == IN_PROCESS)}
            if used
            else {},
        )
