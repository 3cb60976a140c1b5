"""The public API is what plugins may import; pinning it makes any change to it deliberate."""

import gateway_engine


def test_public_api_is_pinned():
    assert sorted(gateway_engine.__all__) == [
        "ConfigError",
        "ConfigErrors",
        "CredentialVerifier",
        "GatewayError",
        "GatewayInfo",
        "Plugin",
        "Reply",
        "RequestContext",
        "VerifiedCredential",
        "create_app",
        "error_body",
        "load_config",
        "success_body",
        "timestamp",
    ]
    for name in gateway_engine.__all__:
        assert getattr(gateway_engine, name) is not None


def test_public_api_plugins_import_only_the_public_api():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "plugins"
    for path in root.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"gateway_engine\._|from gateway_engine\.\w", text), (
            f"{path.name} reaches into engine internals"
        )
