"""gateway-engine: a declarative, config-driven API gateway.

The public API is what a plugin needs: the ``Plugin`` base class, the
``RequestContext`` it receives, the ``Reply`` it may change and the
``GatewayError`` it may return. Everything else is internal (``_``-prefixed).
"""

from ._context import RequestContext
from ._errors import ConfigError, ConfigErrors, GatewayError
from ._plugin import GatewayInfo, Plugin
from ._reply import Reply
from ._respond import error_body, success_body, timestamp
from ._server import create_app
from ._compile import load_config

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "GatewayError",
    "GatewayInfo",
    "Plugin",
    "Reply",
    "RequestContext",
    "create_app",
    "error_body",
    "load_config",
    "success_body",
    "timestamp",
]
__version__ = "0.1.0"
