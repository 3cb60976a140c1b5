"""gateway-engine: a declarative, config-driven API gateway.

The public API is what a plugin needs: the ``Plugin`` base class, the
``RequestContext`` it receives, the ``Reply`` it may change and the
``GatewayError`` it may return. Everything else is internal (``_``-prefixed).
"""

from gateway_engine.compiled.compiler import load_config
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.credentials import CredentialVerifier, VerifiedCredential
from gateway_engine.foundation.envelope import error_body, success_body, timestamp
from gateway_engine.foundation.errors import ConfigError, ConfigErrors, GatewayError
from gateway_engine.foundation.plugin import GatewayInfo, Plugin
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.server import create_app

__all__ = [
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
__version__ = "0.1.0"
