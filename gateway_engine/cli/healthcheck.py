"""``python -m gateway_engine.cli.healthcheck``: the Docker image's HEALTHCHECK, with no curl in the image.

It asks the liveness endpoint of the config the container serves (the first ``health.views`` entry with
``report: liveness``, else ``{base_path}/health``), on the port
``serve`` listens on (``$GATEWAY_PORT``, as ``serve`` reads it) and exits 0 on a 200, 1 otherwise. The base
path and views come from ``gateway.yaml`` in ``$GATEWAY_CONFIG``; only those keys are read (no config load), so a
probe costs milliseconds and never fails on a config the running gateway rejected on reload.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def health_url(environ: Mapping[str, str]) -> str:
    """The liveness URL of the gateway ``serve`` runs with this environment."""
    root = Path(environ.get("GATEWAY_CONFIG") or ".")
    path = root if root.suffix in {".yaml", ".yml"} else root / "gateway.yaml"
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        doc = None
    base = doc.get("base_path") if isinstance(doc, dict) else None
    base = base.rstrip("/") if isinstance(base, str) else ""
    live = "/health"
    views = (doc.get("health") or {}).get("views") if isinstance(doc, dict) else None
    for view in views if isinstance(views, list) else ():
        if isinstance(view, dict) and view.get("report") == "liveness" and isinstance(view.get("path"), str):
            live = view["path"]
            break
    host = environ.get("GATEWAY_HOST", "127.0.0.1")
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{int(environ.get('GATEWAY_PORT', '8080'))}{base}{live}"


def probe(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds; never through a proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):  # refused, timed out, an HTTP error status (HTTPError is an OSError)
        return False


def main() -> int:
    url = health_url(os.environ)
    if probe(url):
        return 0
    print(f"unhealthy: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
