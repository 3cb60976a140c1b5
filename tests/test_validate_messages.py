"""`validate` says what to fix: "did you mean", patterns and alternatives in words, malformed `${VAR`,
`--strict` at the line that reads the variable."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from gateway_engine.cli.main import run
from tests.servers import write_config

REPO = Path(__file__).resolve().parent.parent
GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"


def backend(extra_upstream: str = "", route: str = "{name: get-one, method: GET, path: /x}") -> str:
    return f"backend: shop\nprefix: /shop\nupstream:\n  url: http://127.0.0.1:9\n{extra_upstream}routes:\n  - {route}\n"


def validate(root: Path, *flags: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run(["validate", "--config", str(root), *flags], stdout=out, stderr=out)
    return code, out.getvalue().splitlines()


def test_validate_messages_unknown_key_suggests_the_close_one(tmp_path):
    root = write_config(
        tmp_path / "c",
        GATEWAY + "trusted_proxy: 1\n",
        {"shop": backend(route="{name: a, method: GET, path: /x, upstream_pth: /y}")},
    )
    code, lines = validate(root)
    assert code == 1
    assert any(
        line.startswith(
            "gateway.yaml:4:1: trusted_proxy: unknown key 'trusted_proxy' (did you mean 'trusted_proxies'?)"
        )
        for line in lines
    ), lines
    assert any("unknown key 'upstream_pth' (did you mean 'upstream_path'?)" in line for line in lines), lines


def test_validate_messages_unknown_plugin_suggests_the_close_one(tmp_path):
    root = write_config(tmp_path / "c", GATEWAY.replace("request_id", "request_idd"), {"shop": backend()})
    code, lines = validate(root)
    assert code == 1 and any("unknown plugin 'request_idd' (did you mean 'request_id'?)" in line for line in lines)


def test_validate_messages_unknown_route_suggests_the_close_one(tmp_path):
    root = tmp_path / "city"
    shutil.copytree(REPO / "routes.d", root / "routes.d")
    shutil.copytree(REPO / "workflows.d", root / "workflows.d")
    shutil.copy(REPO / "gateway.yaml", root / "gateway.yaml")
    flow = root / "workflows.d" / "event-registration.yaml"
    flow.write_text(flow.read_text().replace("call: stripe.hold-payment", "call: stripe.hold-paymnt"))
    code, lines = validate(root)
    assert code == 1 and any(
        "no route 'stripe.hold-paymnt'" in line and "stripe.hold-payment" in line for line in lines
    )


def test_validate_messages_alternatives_and_patterns_in_words(tmp_path):
    root = write_config(
        tmp_path / "c", GATEWAY, {"shop": backend("  timeout: ten\n", "{name: Bad Name, method: GET, path: /x}")}
    )
    code, lines = validate(root)
    text = "\n".join(lines)
    assert code == 1 and "is not valid under any of the given schemas" not in text
    assert "routes.d/shop.yaml:5:3: upstream.timeout: 'ten' is not valid: A duration: a number of seconds" in text
    assert (
        "routes[0].name: 'Bad Name' is not valid: use only lower-case letters, digits, '_', '.' and '-', "
        "beginning with a lower-case letter or a digit" in text
    ), text


def test_validate_messages_wrong_type_lists_what_is_wanted(tmp_path):
    root = write_config(tmp_path / "c", GATEWAY, {"shop": backend("  timeout: [1]\n")})
    code, lines = validate(root)
    assert code == 1 and any("upstream.timeout: [1] is not valid" in line for line in lines), lines


def test_validate_messages_malformed_variable_is_an_error(tmp_path):
    routes = backend().replace("url: http://127.0.0.1:9", 'url: "${SHOP_URL"') + "  # fine: $$ and ${OK}\n"
    routes = routes.replace("routes:", "description: 'costs $${NOT_A_VAR} and ${SHOP_NAME:-x}'\nroutes:")
    root = write_config(tmp_path / "c", GATEWAY, {"shop": routes})
    code, lines = validate(root)
    assert code == 1 and len([line for line in lines if "malformed" in line]) == 1, lines
    assert lines[0].startswith("routes.d/shop.yaml:4:3: upstream.url: malformed variable reference '${SHOP_URL'")


def test_validate_messages_strict_points_at_the_line_reading_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    monkeypatch.delenv("SHOP_SECRET", raising=False)
    routes = backend(
        '  auth: {style: bearer, token: "${SHOP_TOKEN}"}\n',
        "{name: a, method: POST, path: /x, request: {headers: {X-S: '{{ env.SHOP_SECRET }}'}}}",
    )
    root = write_config(tmp_path / "c", GATEWAY, {"shop": routes})
    code, lines = validate(root, "--strict")
    assert code == 1
    assert (
        "routes.d/shop.yaml:5:25: upstream.auth.token: environment variable SHOP_TOKEN is referenced but not set"
        in lines
    )
    assert any(
        line.startswith("routes.d/shop.yaml:7:") and "SHOP_SECRET is referenced but not set" in line for line in lines
    ), lines
    assert not any(":1:1:" in line for line in lines)
