"""The cluster test, short: three gateway processes behind nginx on one Redis and one PostgreSQL, restarted one at
a time under wrk load (``bench/cluster.py``; ``python -m bench.cluster`` is the full run, with the 1 s bound on
revocation). Here the bounds are generous: a loaded CI machine is slow, and timed budgets belong in the bench.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from bench.cluster import Options, run
from bench.cluster_services import PG_BIN

MISSING = [tool for tool in ("nginx", "wrk", "redis-server") if shutil.which(tool) is None]
if not (PG_BIN / "pg_ctl").exists():
    MISSING.append("postgresql-15")

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING} (.ci/run installs them with apt-get)")


def test_three_instances_survive_rolling_restarts_and_share_their_state(tmp_path: Path) -> None:
    options = Options(duration=6.0, connections=6, rate_limit=7, gap=0.5, revocation_bound=10.0, workdir=tmp_path)
    r = run(options)
    detail = f"see {tmp_path}: {r['restarts']}, LB {r['lb_upstream_errors']}"

    for method, load in r["load"].items():  # zero failed requests while every instance was restarted in turn
        assert load["requests"] > 0, method
        assert load["non_2xx_3xx"] == 0 and load["socket_errors_total"] == 0, (method, load, detail)
    assert [x["exit_code"] in (0, -15) for x in r["restarts"]] == [True] * 3, detail  # each drained and exited
    assert r["log_errors"] == [], r["log_errors"]

    assert r["rate_limit"]["admitted"] == 7 and r["rate_limit"]["refused"] == 14  # one counter for all three

    lags = r["revocation"]["lags_s"]
    assert len(lags) == 3 and None not in lags, lags  # every instance refuses the revoked key

    written = [status for status in r["webhooks"]["emits"] if status == 200]
    assert len(written) == len(r["webhooks"]["emits"]) == 4
    deliveries = Counter(r["webhooks"]["ids"])
    assert len(deliveries) == 4 and set(deliveries.values()) == {1}, deliveries  # each event exactly once

    realtime = r["realtime"]  # published through instance 3, received on a socket on instance 1
    assert realtime["delivered"] and realtime["extra_frames"] == 0, realtime
    assert realtime["duplicate_refused"], realtime  # the same webhook on instance 2: a duplicate (Redis)
