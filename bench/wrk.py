"""Running wrk and reading its report.

Measured runs use plain ``-H`` headers and no Lua: a Lua ``response()`` hook puts wrk on
its slow path, and the load generator must not be what limits the numbers. Only the soak,
which needs counts by status class, uses the counting script below.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .servers import pinned

# Counts responses by status class in each thread and prints the totals from done().
STATUS_LUA = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) c1, c2, c3, c4, c5 = 0, 0, 0, 0, 0 end
function response(status, headers, body)
  local k = "c" .. math.floor(status / 100)
  _G[k] = (_G[k] or 0) + 1
end
function done(summary, latency, requests)
  local t = {0, 0, 0, 0, 0}
  for _, thread in ipairs(threads) do
    for i = 1, 5 do t[i] = t[i] + (thread:get("c" .. i) or 0) end
  end
  io.write(string.format("STATUS 1xx=%d 2xx=%d 3xx=%d 4xx=%d 5xx=%d\\n", t[1], t[2], t[3], t[4], t[5]))
end
"""

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class WrkError(Exception):
    """wrk failed or printed no report (e.g. it could not connect)."""


def run(
    url: str, duration: float, connections: int, headers: dict[str, str], core: int | None, script: Path | None = None
) -> dict:
    """One ``wrk --latency -t1`` run, parsed. Bounded by wrk's own -d plus a 30 s margin."""
    cmd = [shutil.which("wrk") or "wrk", "--latency", "-t1", f"-c{connections}", f"-d{duration:g}s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    try:
        proc = subprocess.run(
            pinned([*cmd, url], core), capture_output=True, text=True, timeout=duration + 30, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk did not finish within {duration + 30:g}s") from None
    if proc.returncode != 0 or "Requests/sec:" not in proc.stdout:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise WrkError(f"wrk exit {proc.returncode}: {tail}")
    return parse(proc.stdout)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return round(float(value) * _UNITS_MS[unit], 6)


def parse(text: str) -> dict:
    """Numbers from a ``wrk --latency`` report; absent error lines mean zero errors."""
    out: dict = {
        "requests_per_sec": float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1)),
        "latency_ms": {
            m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+[a-z]+)\s*$", text, re.M)
        },
        "non_2xx_3xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    done = re.search(r"^\s+(\d+) requests in ([\d.]+[a-z]+), ([\d.]+)([KMGT]?)B read", text, re.M)
    out["requests"] = int(done.group(1))
    out["seconds"] = _ms(done.group(2)) / 1e3
    out["bytes_read"] = int(float(done.group(3)) * _BYTES[done.group(4)])
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        out["non_2xx_3xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    if m := re.search(r"^STATUS (.*)$", text, re.M):
        out["status_classes"] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    out["p50_ms"] = out["latency_ms"].get("50")
    out["p99_ms"] = out["latency_ms"].get("99")
    out["socket_errors_total"] = sum(out["socket_errors"].values())
    return out
