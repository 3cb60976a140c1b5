"""``python -m bench --peers``: the gateway's full chain with JWT beside the peers it is measured against.

In one interleaved run: the ceiling, a bare Starlette + aiohttp forwarder (``forwarder.py``),
the gateway's full chain authenticating a HS256 JWT (``configs/full-jwt``), and the Express
gateway of ``bench/peers/express`` (a copy of the shared peer) twice (the JWT secret as a string, as typical code
passes it, and as a prepared KeyObject). The Express folder is read-only: it is copied into
a cache directory keyed by its lock file and installed there once with ``npm ci``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt

from . import servers

EXPRESS_FILES = ("gateway.js", "package.json", "package-lock.json")
EXPRESS_PATH = "/api/v1/commerce/items"  # the peer rewrites it to the upstream's /api/items
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gateway-bench"
REFERENCE = "gateway full-jwt"


class PeerError(Exception):
    """A peer could not be found or installed."""


def express_source() -> Path:
    """``$BENCH_EXPRESS_DIR``, else the copy in ``bench/peers/express`` (the project's shared peer, vendored so a
    fresh clone benchmarks and tests it without the shared folder beside it)."""
    if configured := os.environ.get("BENCH_EXPRESS_DIR"):
        if not (Path(configured) / "package-lock.json").is_file():
            raise PeerError(f"BENCH_EXPRESS_DIR={configured} has no package-lock.json")
        return Path(configured)
    vendored = servers.REPO / "bench" / "peers" / "express"
    if (vendored / "package-lock.json").is_file():
        return vendored
    raise PeerError("no bench/peers/express in the repo; set BENCH_EXPRESS_DIR")


def install_express(source: Path, cache: Path = CACHE) -> Path:
    """A copy of ``source`` with its node_modules from ``npm ci``, reused while the lock file is unchanged.

    It is installed in a temporary sibling and renamed into place, so a concurrent or an
    interrupted install never leaves a half-filled directory behind under the final name.
    """
    digest = hashlib.sha256((source / "package-lock.json").read_bytes()).hexdigest()[:16]
    target = cache / f"express-{digest}"
    if (target / "node_modules").is_dir():
        return target
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PeerError("node and npm are needed for the Express peer (apt-get install nodejs npm)")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="express-", dir=cache))
    try:
        for name in EXPRESS_FILES:
            shutil.copyfile(source / name, staging / name)
        done = subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=staging, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise PeerError(f"npm ci failed: {(done.stderr or done.stdout).strip()[-400:]}")
        try:
            staging.rename(target)
        except OSError:  # installed meanwhile by another run
            if not (target / "node_modules").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def express(installed: Path, workdir: Path, env: dict, *, keyobject: bool, core: int | None) -> servers.Server:
    port = servers.free_port()
    slug = "express-keyobject" if keyobject else "express-typical"
    peer_env = {
        **env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "UPSTREAM_URL": env["BENCH_UPSTREAM_URL"],
        "JWT_SECRET": env["BENCH_JWT_SECRET"],
        "JWT_KEYOBJECT": "1" if keyobject else "0",
        "ACCESS_LOG": str(workdir / f"{slug}-access.log"),
        "NODE_ENV": "production",
    }
    cmd = [shutil.which("node") or "node", str(installed / "gateway.js")]
    return servers.Server(slug, servers.pinned(cmd, core), port, "/health", workdir, peer_env)


def forwarder(workdir: Path, env: dict, core: int | None) -> servers.Server:
    port = servers.free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.forwarder:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *servers.UVICORN_FLAGS,
    ]
    return servers.Server("forwarder", servers.pinned(cmd, core), port, "/api/gateway/health", workdir, env)


def bench_token(secret: str) -> str:
    """A HS256 token that both the gateway's ``configs/full-jwt`` and the Express peer accept for a day."""
    now = int(time.time())
    return jwt.encode({"sub": "bench-user", "role": "user", "iat": now, "exp": now + 86400}, secret, "HS256")


def add_ratios_to(targets: list[dict], reference: str = REFERENCE) -> None:
    """``ratio_to_reference``: each target's median req/s over the reference target's, from the same run."""
    ref = next((t.get("median_rps") for t in targets if t["name"] == reference), None)
    for t in targets:
        t["ratio_to_reference"] = ref / t["median_rps"] if ref and t.get("median_rps") else None
