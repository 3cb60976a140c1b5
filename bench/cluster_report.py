"""The cluster run's targets, and its figures as a table."""

from __future__ import annotations

from collections import Counter
from typing import Any


def checks(r: dict[str, Any], options: Any) -> list[dict[str, Any]]:
    """Issue 20's targets: zero failed requests, N admitted, revoked within the bound, once, cross-instance."""
    failed = {m: w["non_2xx_3xx"] + w["socket_errors_total"] for m, w in r["load"].items()}
    lags = r["revocation"].get("lags_s", [])
    ids = Counter(r["webhooks"]["ids"])
    written = sum(e == 200 for e in r["webhooks"]["emits"])
    rt = r["realtime"]
    return [
        _check(
            "zero failed requests through the rolling restarts",
            not any(failed.values()),
            ", ".join(f"{m} {n}" for m, n in failed.items()),
        ),
        _check(
            "every instance drained and exited cleanly",
            all(x["exit_code"] in (0, -15) for x in r["restarts"]),
            ", ".join(f"{x['instance']}: {x['exit_code']}" for x in r["restarts"]),
        ),
        _check("no error lines in the gateway logs", not r["log_errors"], "; ".join(r["log_errors"][:3]) or "none"),
        _check(
            f"a {options.rate_limit}/minute key admits {options.rate_limit} across the instances",
            r["rate_limit"]["admitted"] == options.rate_limit and r["rate_limit"]["other"] == 0,
            f"admitted {r['rate_limit']['admitted']} of {r['rate_limit']['sent']}, other {r['rate_limit']['other']}",
        ),
        _check(
            f"a revoked key is refused by every instance within {options.revocation_bound:g} s",
            bool(lags) and all(x is not None and x <= options.revocation_bound for x in lags),
            ", ".join("never" if x is None else f"{x * 1000:.0f} ms" for x in lags),
        ),
        _check(
            "every emitted event delivered exactly once",
            written == len(r["webhooks"]["emits"]) and len(ids) == written and all(n == 1 for n in ids.values()),
            f"{written} emitted, {len(ids)} delivered, {sum(ids.values())} deliveries",
        ),
        _check(
            "a socket on instance 1 gets what instance 3 published (once)",
            rt["delivered"] and rt["duplicate_refused"] and rt["extra_frames"] == 0,
            f"latency {rt['latency_ms']} ms, replay on instance 2 a duplicate: {rt['duplicate_refused']}",
        ),
    ]


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def table(r: dict[str, Any]) -> str:
    lb, o = r["lb"], r["options"]
    lines = [
        f"cluster: 3 gateways behind nginx, Redis, PostgreSQL; wrk -c{o['connections']} through the LB "
        f"(half GET, half POST), started in {r['startup_s']} s",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    for method, w in r["load"].items():
        errors = ", ".join(f"{k} {v}" for k, v in w["socket_errors"].items())
        lines += [
            f"| {method} through the LB | {w['requests']} in {w['seconds']:.1f} s ({w['requests_per_sec']:.0f} req/s), "
            f"p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms |",
            f"| {method} non-2xx / socket errors (wrk) | {w['non_2xx_3xx']} / {errors} |",
        ]
    lines += [
        f"| answered by a second instance (LB retried) | {lb['retried']} of {lb['requests']} |",
        "| why the LB retried (its error log) | "
        + ", ".join(f"{k} {v}" for k, v in r["lb_upstream_errors"].items())
        + " |",
    ]
    for x in r["restarts"]:
        lines.append(
            f"| restart {x['instance']} | drained and exited in {x['drain_s']} s (code {x['exit_code']}), "
            f"healthy {x['start_s']} s later |"
        )
    rl, lags = r["rate_limit"], r["revocation"].get("lags_s", [])
    lines += [
        f"| error lines in gateway logs | {len(r['log_errors'])} |",
        f"| per-key limit {rl['limit']}/minute, {rl['sent']} calls round-robin | {rl['admitted']} admitted, "
        f"{rl['refused']} refused (429) |",
        "| key revoked: refused after, per instance (from sending the DELETE) | "
        + ", ".join("never" if x is None else f"{x * 1000:.0f} ms" for x in lags)
        + f" (the DELETE itself took {r['revocation'].get('delete_s', 0) * 1000:.0f} ms) |",
        f"| events emitted / delivered / deliveries | {sum(e == 200 for e in r['webhooks']['emits'])} / "
        f"{len(set(r['webhooks']['ids']))} / {len(r['webhooks']['ids'])} |",
        f"| realtime: instance 3 → socket on instance 1 | {r['realtime']['latency_ms']} ms |",
        "",
    ]
    lines += [f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}" for c in r.get("checks", [])]
    return "\n".join(lines)
