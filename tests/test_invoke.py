"""Calling a route in-process by name: same transport, upstream auth and mapping as over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from gateway_engine import load_config
from gateway_engine.runtime.invoke import find_route, invoke
from tests.servers import write_config


def test_invoke_runs_the_route_pipeline(tmp_path, upstream, recorder):
    root = write_config(
        tmp_path,
        "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n",
        {
            "shop": f"""
backend: shop
prefix: /shop
upstream: {{url: "{upstream}", auth: {{style: bearer, token: "${{TOKEN}}"}}}}
routes:
  - name: create-order
    method: POST
    path: "/carts/{{id}}/complete"
    upstream_path: "/store/carts/{{id}}/complete"
    params: {{id: {{allow_encoded_slash: true}}}}
    request: {{body: {{note: "{{{{ body.note }}}}", user: "{{{{ identity.sub }}}}"}}, encoding: form}}
"""
        },
    )
    config = load_config(root, {"TOKEN": "t0k"})

    async def run():
        try:
            return await invoke(
                config, "shop.create-order", params={"id": "c/1"}, body={"note": "hi"}, identity={"sub": "user-7"}
            )
        finally:
            await config.shutdown()

    result = asyncio.run(run())
    assert result.ok and result.body["success"] is True
    assert recorder.last["raw_path"] == "/store/carts/c%2F1/complete"
    assert recorder.last["body"] == "note=hi&user=user-7"
    assert recorder.last["headers"]["authorization"] == "Bearer t0k"


def test_invoke_unknown_route_names_the_convention(tmp_path):
    root = write_config(tmp_path, "version: 1\n", {})
    with pytest.raises(KeyError, match="backend.route-name"):
        find_route(load_config(root, {}), "nope.nothing")
