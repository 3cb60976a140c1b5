"""The ``gateway-engine`` command: serve, validate, routes. Drivable from tests via ``run``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from gateway_engine.cli.scaffold import add_scaffold_commands
from gateway_engine.cli.store_commands import add_data_option, add_store_commands, apply_data_option
from gateway_engine.cli.worker import add_worker_command
from gateway_engine.compiled.compiler import load_config
from gateway_engine.compiled.features import installed_features
from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.config.loader import read_config_dir
from gateway_engine.config.locations import CONFIG_HELP, config_dir, config_path
from gateway_engine.foundation.errors import ConfigErrors

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: ...)`` after each flag's help, except where there is none (the help then says what applies)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every (sub)command shows each flag's default in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gateway-engine")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway-engine", description="A declarative, config-driven API gateway.")
    parser.add_argument("--version", action="version", version=f"gateway-engine {_version()}")
    sub: Any = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the gateway under uvicorn")
    serve.add_argument("--config", type=config_path, help=CONFIG_HELP)
    serve.add_argument(
        "--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"), help="address to bind ($GATEWAY_HOST)"
    )
    serve.add_argument(
        "--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8080")), help="port to bind ($GATEWAY_PORT)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes, each with its own event loop")
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="level of the process's log lines")
    serve.add_argument(
        "--no-watch", action="store_true", help="do not reload when the config directory changes (SIGHUP still does)"
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests may take to finish on shutdown or reload",
    )
    add_data_option(serve)
    validate = sub.add_parser("validate", help="check every config file; exit 1 on any error")
    validate.add_argument("--config", type=config_path, help=CONFIG_HELP)
    validate.add_argument("--strict", action="store_true", help="also fail on referenced but unset env vars")
    validate.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    routes = sub.add_parser("routes", help="print the generated route table")
    routes.add_argument("--config", type=config_path, help=CONFIG_HELP)
    routes.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    explain = sub.add_parser("explain", help="show the upstream request and client response of one request, offline")
    explain.add_argument("method", help="the client's HTTP method")
    explain.add_argument("path", help="public path with optional ?query, e.g. /api/gateway/erp/invoices/1")
    explain.add_argument("--config", type=config_path, help=CONFIG_HELP)
    explain.add_argument("--body", help="the client's JSON body")
    explain.add_argument("-H", "--header", action="append", default=[], help="a client header, 'Name: value'")
    explain.add_argument("--upstream-response", help="file holding a sample upstream JSON body")
    explain.add_argument("--upstream-status", type=int, default=200, help="status of the sample upstream answer")
    explain.add_argument(
        "--call-response",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="for a route that makes several upstream calls: the sample body of call NAME (else --upstream-response)",
    )
    hash_key = sub.add_parser("hash-key", help="print the SHA-256 of an API key read from stdin, for `key_sha256:`")
    hash_key.add_argument(
        "--keep-newline", action="store_true", help="hash the input exactly, including a final newline"
    )
    add_scaffold_commands(sub)
    add_store_commands(sub)
    add_worker_command(sub)
    for feature in installed_features():  # e.g. `openapi` (endpoints), `keys` (keys)
        feature.add_commands(sub)
    return parser


def run(argv: list[str] | None = None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "config") and args.config is None and os.environ.get("GATEWAY_CONFIG"):
        args.config = os.environ["GATEWAY_CONFIG"]  # a directory or a gateway.yaml, as --config
    if isinstance(getattr(args, "config", None), str):  # a feature's own --config may take a gateway.yaml too
        try:
            args.config = config_path(args.config)
        except argparse.ArgumentTypeError as exc:
            stderr.write(f"gateway-engine: error: {exc}\n")
            return 2
    if args.command == "validate":
        return _validate(config_dir(args.config), args.strict, args.format, stdout)
    if args.command == "explain":
        return _explain(args, stdout, stderr)
    if args.command == "hash-key":
        return _hash_key(sys.stdin, stdout, stderr, args.keep_newline)
    if args.command == "routes":
        return _routes(config_dir(args.config), args.format, stdout, stderr)
    if args.command == "serve":
        return _serve(args, stderr)
    return int(args.handler(args, stdout, stderr))  # a feature's or the scaffold's command


def _validate(root: str, strict: bool, fmt: str, out: TextIO) -> int:
    try:
        config = load_config(root, strict=strict)
    except ConfigErrors as exc:
        errors = exc.errors
        if fmt == "json":
            out.write(orjson.dumps({"valid": False, "errors": [e.as_dict() for e in errors]}).decode() + "\n")
        else:
            for err in errors:
                out.write(f"{err}\n")
            out.write(f"{len(errors)} error(s) in {root}\n")
        return 1
    if fmt == "json":
        out.write(
            orjson.dumps(
                {
                    "valid": True,
                    "routes": len(config.routes),
                    "version": config.version,
                    "unset_env": list(config.unset_env),
                }
            ).decode()
            + "\n"
        )
    else:
        files = len(read_config_dir(root).backends) + 1  # gateway.yaml and routes.d
        out.write(f"ok: {files} file(s), {len(config.routes)} route(s), config version {config.version}\n")
        if config.unset_env:
            out.write(
                f"note: unset env vars (their backends answer 503 BACKEND_NOT_CONFIGURED): {', '.join(config.unset_env)}\n"
            )
    return 0


def _explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from gateway_engine.cli.explain import explain

    config = _load(config_dir(args.config), err)
    if config is None:
        return 1
    headers = []
    for item in args.header:
        name, _, value = item.partition(":")
        headers.append((name.strip(), value.strip()))
    sample = None
    if args.upstream_response:
        with open(args.upstream_response, "rb") as f:
            sample = f.read()
    samples = {}
    for item in args.call_response:
        name, _, path = item.partition("=")
        with open(path, "rb") as f:
            samples[name] = f.read()
    result = explain(
        config,
        args.method,
        args.path,
        body=args.body.encode() if args.body is not None else None,
        headers=headers,
        upstream_status=args.upstream_status,
        upstream_body=sample,
        call_bodies=samples,
    )
    out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if result["route"] else 1


def _hash_key(stdin: TextIO, out: TextIO, err: TextIO, keep_newline: bool) -> int:
    """Hash a key without it ever appearing in argv (and so in shell history or ``ps``)."""
    import hashlib

    key = stdin.read()
    if not keep_newline and key.endswith("\n"):
        key = key[:-1].removesuffix("\r")
    if not key.strip():  # the hash of nothing would accept an empty key header
        err.write('hash-key: no key on stdin (pipe the key in, e.g. `printf %s "$KEY" | gateway-engine hash-key`)\n')
        return 1
    out.write(hashlib.sha256(key.encode()).hexdigest() + "\n")
    return 0


def _routes(root: str, fmt: str, out: TextIO, err: TextIO) -> int:
    config = _load(root, err)
    if config is None:
        return 1
    rows = route_table(config)
    if fmt == "json":
        out.write(orjson.dumps(rows).decode() + "\n")
        return 0
    headers = ["METHOD", "PATH", "BACKEND", "ROUTE", "UPSTREAM", "PLUGINS"]
    table = [
        [",".join(r["methods"]), r["path"], r["backend"], r["name"], r["upstream"], ",".join(r["plugins"])]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    for row in [headers, *table]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    return 0


def _load(root: str, err: TextIO) -> CompiledConfig | None:
    """The loaded config, or None after writing every error to ``err``."""
    try:
        return load_config(root)
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return None


def route_table(config: CompiledConfig) -> list[dict]:
    """The routes as rows, then what features list (webhook endpoints: backend ``webhooks``, upstream the source's file).
    Upstream URLs are shown as written (``${VAR}``), never resolved: no secret leaks."""
    rows = []
    for route in sorted(config.routes, key=lambda r: (r.path, r.methods)):
        rows.append(
            {
                "methods": list(route.methods),
                "path": route.path,
                "backend": route.backend,
                "name": route.name,
                "upstream": route.upstream_template,
                "configured": route.configured,
                "plugins": [p.name for p in route.plugins],
            }
        )
    for contribution in config.contributions.values():
        rows.extend(contribution.listing)
    return rows


WORKER_HEALTHCHECK = 30  # seconds; see _serve


def _serve(args: argparse.Namespace, err: TextIO) -> int:
    import shutil
    import tempfile

    import uvicorn

    from gateway_engine.cli.logs import log_config, log_format
    from gateway_engine.config.server_settings import ENV_VAR
    from gateway_engine.runtime.protocol import GatewayHttpProtocol
    from gateway_engine.runtime.websocket_protocol import websocket_protocol

    root = os.path.abspath(config_dir(args.config))
    apply_data_option(args)
    config = _load(root, err)
    if config is None:  # fail fast, with every error, before binding the port
        return 1
    server = config.server
    metrics_dir = None
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:  # the operator's directory (a Kubernetes emptyDir): kept, but emptied of an earlier run's files
        _wipe_metrics(Path(given))
    elif args.workers > 1:
        # each worker writes its metrics here and a scrape sums them; fresh, so nothing stale from an earlier run
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["GATEWAY_CONFIG"] = root
    os.environ["GATEWAY_WATCH"] = "0" if args.no_watch else "1"
    os.environ["GATEWAY_DRAIN_TIMEOUT"] = str(args.drain_timeout)
    os.environ[ENV_VAR] = server.to_env()  # each worker's protocol reads its limits from here
    try:
        uvicorn.run(
            "gateway_engine.runtime.server:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http=GatewayHttpProtocol,
            access_log=False,
            log_level=args.log_level,
            log_config=log_config(log_format(config), args.log_level),
            server_header=False,
            date_header=True,
            proxy_headers=False,
            lifespan="on",
            timeout_graceful_shutdown=args.drain_timeout,
            limit_concurrency=server.max_connections,
            ws=websocket_protocol(server.websocket_implementation),
            ws_max_size=server.websocket_max_bytes,
            ws_per_message_deflate=server.websocket_compression,
            timeout_keep_alive=max(1, round(server.keep_alive_timeout)),
            # a worker must answer the supervisor's ping within this, or it is killed and started again: a
            # spawned worker imports the engine before it can answer, which takes over uvicorn's 5 s on a
            # busy machine, and then every replacement is killed the same way and the server never serves
            timeout_worker_healthcheck=WORKER_HEALTHCHECK,
        )  # uvicorn takes whole seconds
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _wipe_metrics(directory: Path) -> None:
    """prometheus_client sums every ``*.db`` in the directory: files of a previous run (a restarted
    container keeps its emptyDir) would be counted again, so they go before any worker starts."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def main() -> None:
    sys.exit(run())
