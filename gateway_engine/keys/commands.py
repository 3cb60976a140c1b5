"""``gateway-engine keys|platforms|clients ...``: the admin API on the command line, on the same store.

For bootstrapping (the first operator key) and for scripts. The commands act as an
operator (every tenant, every scope) and print JSON; a new key's secret is printed
once, like the API shows it once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any, TextIO

import orjson

from gateway_engine.compiled.compiler import load_config
from gateway_engine.config.locations import add_config_option, config_dir
from gateway_engine.foundation.errors import ConfigErrors, GatewayError
from gateway_engine.store import DATA_ENV

from .caller import Caller
from .requests import AdminRequest

OPERATOR = Caller(consumer="cli", tenant=None, key_id=None, scopes=frozenset({"*"}))


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    keys = _group(commands, "keys", "stored API keys: create, list, show, revoke, rotate, usage")
    create = _action(keys, "create", "issue a key (printed once)")
    create.add_argument("--name", required=True, help="the key's name, shown in listings and logs")
    _key_options(create)
    create.add_argument("--platform", help="owner platform (id or code); default: an operator key")
    create.add_argument("--client", help="owner client id")
    _action(keys, "list", "list keys").add_argument("--platform", help="only this platform's keys (id or code)")
    for name in ("show", "revoke", "rotate", "usage"):
        _action(keys, name, f"{name} one key").add_argument("id", help="the key's id (never the key itself)")

    platforms = _group(commands, "platforms", "tenant platforms: create (with its key), list, show, deactivate")
    create = _action(platforms, "create", "register a platform and issue its key (printed once)")
    create.add_argument("--code", required=True, help="the platform's short unique code")
    create.add_argument("--name", required=True, help="the platform's display name")
    _key_options(create)
    _action(platforms, "list", "list platforms")
    for name in ("show", "deactivate"):
        _action(platforms, name, f"{name} one platform").add_argument("id", help="the platform's id or code")

    clients = _group(commands, "clients", "a platform's clients: create (with its key), list, show, deactivate")
    create = _action(clients, "create", "register a client and issue its key (printed once)")
    create.add_argument("--platform", required=True, help="the owner platform (id or code)")
    create.add_argument("--code", required=True, help="the client's short code, unique in its platform")
    create.add_argument("--name", required=True, help="the client's display name")
    create.add_argument("--external-id", help="the platform's own id of this client")
    _key_options(create)
    _action(clients, "list", "list clients").add_argument(
        "--platform", help="only this platform's clients (id or code)"
    )
    for name in ("show", "deactivate"):
        _action(clients, name, f"{name} one client").add_argument("id", help="the client's id")


def _group(commands: Any, name: str, help_text: str) -> Any:
    parser = commands.add_parser(name, help=help_text)
    return parser.add_subparsers(dest="action", required=True, help="what to do")


def _action(group: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    add_config_option(parser)
    parser.add_argument("--data", help="directory of the embedded SQLite store")
    parser.set_defaults(handler=_run)
    return parser


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scopes", default="", help="comma-separated, e.g. orders:read,orders:write (* for all)")
    parser.add_argument("--roles", default="", help="comma-separated")
    parser.add_argument("--rate-limit", type=int, help="requests per minute")
    parser.add_argument("--expires", help="ISO date-time")


def request_of(args: argparse.Namespace) -> AdminRequest:
    """The admin API request a command stands for."""
    noun, action = args.command, args.action
    base = "keys" if noun == "keys" else noun
    ident = getattr(args, "id", None)
    key_fields = {
        "scopes": [s for s in getattr(args, "scopes", "").split(",") if s],
        "roles": [s for s in getattr(args, "roles", "").split(",") if s],
        "rateLimit": getattr(args, "rate_limit", None),
        "expiresAt": getattr(args, "expires", None),
    }
    method, path, query, body = "GET", [base], {}, None
    if action == "list" and getattr(args, "platform", None):
        query["platformId"] = args.platform
    elif action == "show":
        path.append(ident)
    elif action in ("revoke", "deactivate"):
        method, path = "DELETE", [base, ident]
    elif action == "rotate":
        method, path = "POST", [base, ident, "rotate"]
    elif action == "usage":
        path = [base, ident, "usage"]
    elif action == "create":
        method = "POST"
        if noun == "keys":
            body = {"name": args.name, **key_fields, "platformId": args.platform, "clientId": args.client}
        elif noun == "platforms":
            body = {"code": args.code, "name": args.name, "key": {"name": f"{args.code} platform key", **key_fields}}
        else:
            body = {
                "platformId": args.platform,
                "code": args.code,
                "name": args.name,
                "externalId": args.external_id,
                **key_fields,
            }
        body = _without_none(body)
    return AdminRequest(method=method, path=path, query=query, body=body, caller=OPERATOR)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .runtime import KEYS
    from .transport import dispatch

    if args.data:
        os.environ[DATA_ENV] = os.path.abspath(args.data)
    try:
        config = load_config(config_dir(args.config))
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return 1
    runtime = config.state(KEYS)
    if runtime is None:
        err.write("gateway.yaml has no `keys` section: stored keys are off\n")
        return 1
    from .runtime import KeysRuntime  # SQLAlchemy loads only when a command runs

    fresh = KeysRuntime(runtime.settings, runtime.store_settings)

    async def run() -> Any:
        await fresh.start()
        try:
            return await dispatch(fresh, request_of(args))
        finally:
            await fresh.stop()

    try:
        _status, answer = asyncio.run(run())
    except GatewayError as exc:
        err.write(f"{exc.code}: {exc.message}\n")
        return 1
    out.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
