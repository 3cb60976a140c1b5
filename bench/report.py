"""Summaries, the printed table, the Targets check and the JSON files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

GATEWAY_TARGETS = (
    "gateway bare",
    "gateway full",
    "gateway full-jwt",
    "gateway full-stored",
    "gateway aggregate",
    "gateway full --workers 2",
)


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    # the interpreter build matters (a PGO+LTO CPython is ~20% faster than one built without them): name it
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "interpreter": os.path.realpath(sys.executable),
        "kernel": platform.release(),
        "cpu_busy_pct_before_start": cpu_busy_pct(),
    }


def cpu_busy_pct(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (/proc/stat): anything else running skews the figures."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round(100 * (1 - (idle1 - idle0) / max(total1 - total0, 1)), 1)


def header(info: dict, settings: dict) -> str:
    text = (
        f"gateway-engine bench — {info['nproc']} cores, {info['cpu_model']}, Python {info['python']}"
        f" ({info['interpreter']})\n" + ", ".join(f"{k}={v}" for k, v in settings.items())
    )
    if info["cpu_busy_pct_before_start"] > 10:
        text += (
            f"\nWARNING: the CPU was {info['cpu_busy_pct_before_start']:.0f}% busy before the start:"
            " other processes will skew the figures"
        )
    return text


def summarize(target: dict) -> None:
    """Median/min/max over the rounds; latency percentiles are the median of the rounds' values."""
    runs = [r for r in target["runs"] if "error" not in r]
    if not runs:
        return
    rps = [r["requests_per_sec"] for r in runs]
    target.update(
        median_rps=statistics.median(rps),
        min_rps=min(rps),
        max_rps=max(rps),
        p50_ms=statistics.median(r["p50_ms"] for r in runs),
        p99_ms=statistics.median(r["p99_ms"] for r in runs),
        non_2xx=sum(r["non_2xx_3xx"] for r in runs),
        socket_errors=sum(r["socket_errors_total"] for r in runs),
    )


def add_ratios(targets: list[dict]) -> None:
    ceiling = next((t.get("median_rps") for t in targets if t["name"] == "ceiling"), None)
    for t in targets:
        t["ratio_to_ceiling"] = t["median_rps"] / ceiling if ceiling and "median_rps" in t else None


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = ("target", "median req/s", "min–max req/s", "p50 ms", "p99 ms", "non-2xx", "sock err", "ratio")
REFERENCE_COLUMN = "full-jwt ×"  # how many times this target's req/s the reference (the full chain with JWT) made


def _cells(t: dict, reference: bool = False) -> list[str]:
    extra = [_fmt(t.get("ratio_to_reference"), ".2f")] if reference else []
    return [
        t["name"],
        f"{t['median_rps']:,.0f}",
        f"{t['min_rps']:,.0f}–{t['max_rps']:,.0f}",
        f"{t['p50_ms']:.2f}",
        f"{t['p99_ms']:.2f}",
        str(t["non_2xx"]),
        str(t["socket_errors"]),
        _fmt(t["ratio_to_ceiling"], ".3f"),
        *extra,
    ]


def table(targets: list[dict]) -> str:
    """One row per target; a target with no successful run shows why instead of numbers."""
    reference = any(t.get("ratio_to_reference") is not None for t in targets)
    columns = (*COLUMNS, REFERENCE_COLUMN) if reference else COLUMNS
    rows = [_cells(t, reference) for t in targets if "median_rps" in t]
    widths = [max([len(col), *(len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    widths[0] = max([widths[0], *(len(t["name"]) for t in targets)])

    def line(cells) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    out = [line(columns), line(["-" * w for w in widths])]
    for t in targets:
        errors = [r["error"] for r in t["runs"] if "error" in r]
        if "median_rps" in t:
            out.append(line(_cells(t, reference)))
            if errors:
                out.append(f"  ({len(errors)} of {len(t['runs'])} runs failed: {errors[-1]})")
        else:
            out.append(f"{t['name'].ljust(widths[0])}  {t['error'] or (errors or ['not measured'])[-1]}")
    return "\n".join(out)


def rss_lines(targets: list[dict]) -> str:
    out = []
    for t in targets:
        if rss := t.get("rss"):
            per = ", ".join(f"{p['role']} {p['pid']}: {p['rss_mb']:.1f}" for p in rss["processes"])
            out.append(f"  {t['name']}: {rss['total_mb']:.1f} MB total ({per})")
    return "Gateway RSS after the run (MB):\n" + ("\n".join(out) or "  (no gateway ran)")


def checks(targets: list[dict]) -> list[dict]:
    by = {t["name"]: t for t in targets}

    def check(name: str, ok: bool, value: str) -> dict:
        return {"check": name, "result": "PASS" if ok else "FAIL", "value": value}

    def ratio(name: str, floor: float) -> dict:
        r = by.get(name, {}).get("ratio_to_ceiling")
        return check(f"{name} ratio ≥ {floor}", r is not None and r >= floor, _fmt(r, ".3f"))

    full_p99 = by.get("gateway full", {}).get("p99_ms")
    # three backends for one request: each extra backend may cost at most one full-chain request's CPU
    full_rps, agg_rps = (by.get(n, {}).get("median_rps") for n in ("gateway full", "gateway aggregate"))
    agg_share = agg_rps / full_rps if full_rps and agg_rps else None
    gw = [by[n] for n in GATEWAY_TARGETS if n in by]
    measured = [t for t in gw if "median_rps" in t]
    errors = sum(t["non_2xx"] + t["socket_errors"] for t in measured)
    failed_runs = sum("error" in r for t in gw for r in t["runs"])
    rss = [p["rss_mb"] for t in gw for p in t.get("rss", {}).get("processes", []) if p["role"] != "resource_tracker"]
    full, stored = by.get("gateway full", {}).get("median_rps"), by.get("gateway full-stored", {}).get("median_rps")
    stored_ratio = stored / full if full and stored else None
    return [
        check(
            "gateway full-stored ≥ 0.9 × gateway full (stored key vs YAML key)",
            stored_ratio is not None and stored_ratio >= 0.9,
            _fmt(stored_ratio, ".3f"),
        ),
        ratio("gateway full", 0.18),
        ratio("gateway bare", 0.25),
        check("gateway full p99 ≤ 15 ms", full_p99 is not None and full_p99 <= 15, _fmt(full_p99, ".2f") + " ms"),
        check(
            "gateway aggregate (3 backends) ≥ 1/3 of full chain req/s",
            agg_share is not None and agg_share >= 1 / 3,
            _fmt(agg_share, ".3f") + " of full",
        ),
        check(
            "gateway targets: zero non-2xx / socket errors",
            bool(measured) and len(measured) == len(gw) and errors == 0 and failed_runs == 0,
            f"{errors} errors, {failed_runs} failed runs, {len(measured)}/{len(gw)} targets measured",
        ),
        check(
            "gateway RSS ≤ 120 MB per worker",
            bool(rss) and max(rss) <= 120,
            f"max {max(rss):.1f} MB" if rss else "not measured",
        ),
    ]


# issue 21's targets for the full chain with JWT: (peer, how many times its req/s the full chain must make)
PEER_FLOORS = (("forwarder (Starlette + aiohttp)", 1.0), ("express (typical)", 5.0), ("express (KeyObject)", 1.8))


def peer_checks(targets: list[dict]) -> list[dict]:
    by = {t["name"]: t for t in targets}
    ref = by.get("gateway full-jwt", {})

    def check(name: str, ok: bool, value: str) -> dict:
        return {"check": name, "result": "PASS" if ok else "FAIL", "value": value}

    results = []
    for peer, floor in PEER_FLOORS:
        r = by.get(peer, {}).get("ratio_to_reference")
        results.append(check(f"full-jwt ≥ {floor} × {peer}", r is not None and r >= floor, _fmt(r, ".2f")))
    ceiling = ref.get("ratio_to_ceiling")
    results.append(check("full-jwt ≥ 0.22 × ceiling", ceiling is not None and ceiling >= 0.22, _fmt(ceiling, ".3f")))
    p99 = ref.get("p99_ms")
    results.append(check("full-jwt p99 ≤ 10 ms", p99 is not None and p99 <= 10, _fmt(p99, ".2f") + " ms"))
    errors = ref.get("non_2xx", 0) + ref.get("socket_errors", 0) if "median_rps" in ref else None
    results.append(check("full-jwt: zero non-2xx / socket errors", errors == 0, _fmt(errors, "d") + " errors"))
    return results


def checks_text(results: list[dict]) -> str:
    return "Targets:\n" + "\n".join(f"  {c['result']}  {c['check']}  ({c['value']})" for c in results)


def write_json(data: dict, out_dir: Path, suffix: str = "") -> Path:
    """Write ``<UTC timestamp><suffix>.json`` and ``latest<suffix>.json``; return the first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path = out_dir / f"{stamp}{suffix}.json"
    path.write_text(text)
    (out_dir / f"latest{suffix}.json").write_text(text)
    return path
