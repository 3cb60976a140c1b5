"""Built-in services trust only the identity the auth plugin forwards: a route to one without auth, with
optional auth, or without the identity headers is refused at load, naming its file and line."""

from __future__ import annotations

import pytest

from gateway_engine.compiled.compiler import load_config
from gateway_engine.foundation.errors import ConfigErrors
from tests.servers import write_config

GATEWAY = "version: 1\nplugins: [request_id, envelope]\nauth:\n  api_keys:\n    - {name: ops, key: '${OPS_KEY}', scopes: ['*']}\n"
KEYS_GATEWAY = GATEWAY + "keys: {prefix: gk}\n"
SERVICES = {
    "key admin": (KEYS_GATEWAY, "keys://admin", "keys"),
    "webhooks-admin": (GATEWAY, "webhooks-admin://subs", "webhooks_admin"),
    "workflows": (GATEWAY, "temporal://127.0.0.1:7233/default", "temporal"),
}
CHAINS = {
    "no auth": "",
    "optional auth": "plugins:\n  auth: {optional: true, forward_identity: {enabled: true}}\n",
    "auth forwarding nothing": "plugins:\n  auth: {}\n",
}


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("what", SERVICES)
def test_identity_forwarding_a_service_route_without_forwarded_identity_is_refused(tmp_path, what, chain):
    gateway, url, transport = SERVICES[what]
    backend = f"backend: svc\nprefix: /svc\nupstream: {{url: '{url}', transport: {transport}}}\n{CHAINS[chain]}"
    backend += "routes:\n  - {name: one, method: GET, path: /one}\n"
    root = write_config(tmp_path / "cfg", gateway, {"svc": backend})
    with pytest.raises(ConfigErrors) as raised:
        load_config(root, {"OPS_KEY": "k" * 32})
    message = str(raised.value)
    assert f"a {what} route needs the auth plugin (not optional) with forward_identity enabled" in message
    assert "routes.d/svc.yaml:" in message
