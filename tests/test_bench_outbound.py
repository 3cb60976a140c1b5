"""bench.outbound stays runnable: its dispatcher drain and its emit config work (a smoke run, no figures)."""

import asyncio
import sys
from pathlib import Path

import pytest

from gateway_engine import load_config
from tests.outbound_support import Receiver
from tests.servers import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not part of the installed package

from bench import outbound  # noqa: E402


def test_bench_outbound_dispatcher_drains_every_delivery(tmp_path):
    receiver = Receiver()
    with serve(receiver) as url:
        url_db = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
        result = asyncio.run(outbound.dispatcher_rate(url_db, url, messages_count=20, endpoint_count=2))
    assert result["deliveries"] == result["expected"] == 40 == len(receiver.received)


def test_bench_outbound_config_emits_on_one_route_only():
    config = load_config(outbound.CONFIG, {"BENCH_UPSTREAM_URL": "http://127.0.0.1:9"})
    hooked = {r.name: bool(r.after_answer) for r in config.routes}
    assert hooked == {"items": False, "emit": True}


def test_bench_outbound_engine_part_measures_both_routes_and_the_emits_are_written():
    """``--only engine``: the in-process comparison runs the real emit path (its events reach the outbox)."""
    import argparse

    cost = outbound.engine_cost(argparse.Namespace(rounds=1, requests=2000))
    assert set(cost["rounds"]) == {"items", "emit"} and all(len(v) == 1 for v in cost["rounds"].values())
    assert cost["emitted"] == 2 * 2000  # a warm-up batch and a measured one, every answer emitting


def test_the_emit_ratio_is_the_median_of_each_rounds_own_ratio():
    # the machine slowed down by half between rounds: each round's own ratio still says 0.9
    assert outbound.paired_ratio([90.0, 45.0, 99.0], [100.0, 50.0, 100.0]) == 0.9
    assert outbound.paired_ratio([50.0, 45.0], [100.0, 50.0]) == (0.5 + 0.9) / 2


def test_callgrind_total_reads_the_summary_line_of_a_dump_and_refuses_a_dump_without_one(tmp_path):
    """The instructions part divides this by wrk's request count: a dump read wrong is a wrong figure."""
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("version: 1\ncmd: python\nevents: Ir\nsummary: 4468678767\nfn=(1) main\n16 3\ntotals: 4468678767\n")
    assert outbound.callgrind_total(dump) == 4_468_678_767
    dump.write_text("version: 1\nevents: Ir\nfn=(1) main\n16 3\ntotals: 1234\n")
    assert outbound.callgrind_total(dump) == 1234
    dump.write_text("version: 1\nevents: Ir\n")
    with pytest.raises(ValueError, match="no summary or totals"):
        outbound.callgrind_total(dump)


def test_a_routes_body_flag_is_derived_from_its_hooks_and_follows_them_through_a_replace():
    """``CompiledRoute.after_answer_body`` (copy the answer's body for a hook) is never passed in: it is
    derived from ``after_answer``, so a route replaced with other hooks can never keep a stale one."""
    import dataclasses

    config = load_config(outbound.CONFIG, {"BENCH_UPSTREAM_URL": "http://127.0.0.1:9"})
    route = next(r for r in config.routes if r.name == "emit")
    [hook] = route.after_answer
    assert (hook.needs_body, route.after_answer_body) == (False, False)  # constant data: no body read
    reader = type("Reader", (), {"needs_body": True, "__call__": lambda self, ctx, reply, body: None})()
    assert dataclasses.replace(route, after_answer=(hook, reader)).after_answer_body is True
    assert dataclasses.replace(route, after_answer=()).after_answer_body is False
    with pytest.raises(ValueError):  # not a parameter: it cannot be set apart from the hooks
        dataclasses.replace(route, after_answer_body=True)
