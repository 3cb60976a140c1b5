"""The bench's wrk-report parser, on reports captured from real ``wrk --latency`` runs (no wrk is run)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not part of the installed package

from bench.wrk import parse

# wrk 4.1.0 (Debian) against a server answering 500 to every third request and resetting connections.
ERRORS_REPORT = """\
Running 4s test @ http://127.0.0.1:18931/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   256.40us  248.82us   2.93ms   90.31%
    Req/Sec    14.80k    20.01k   28.95k   100.00%
  Latency Distribution
     50%  203.00us
     75%  334.00us
     90%  502.00us
     99%  756.00us
  2931 requests in 4.10s, 224.21KB read
  Socket errors: connect 0, read 76, write 111467, timeout 0
  Non-2xx or 3xx responses: 977
Requests/sec:    714.88
Transfer/sec:     54.69KB
"""

# The same kind of server with the soak's status-counting Lua script (the STATUS line) and
# slow answers, so the distribution mixes us, ms and s (wrk pads "1.05s " with a space, written \x20 here).
LUA_REPORT = """\
Running 3s test @ http://127.0.0.1:18932/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   250.09ms  433.22ms   1.51s    81.86%
    Req/Sec    14.40k     6.61k   24.06k    75.00%
  Latency Distribution
     50%  170.00us
     75%  374.45ms
     90%    1.05s\x20
     99%    1.46s\x20
  29399 requests in 3.00s, 2.20MB read
  Socket errors: connect 0, read 600, write 0, timeout 0
  Non-2xx or 3xx responses: 9799
Requests/sec:   9787.00
Transfer/sec:    748.68KB
STATUS 1xx=0 2xx=19600 3xx=0 4xx=0 5xx=9799
"""

# Against the bench's nginx upstream: no error lines at all.
NO_ERRORS_REPORT = """\
Running 2s test @ http://127.0.0.1:57507/items
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   662.69us  129.71us   1.88ms   78.61%
    Req/Sec    37.83k     2.45k   41.58k    55.00%
  Latency Distribution
     50%  650.00us
     75%  724.00us
     90%  811.00us
     99%    1.03ms
  75253 requests in 2.00s, 32.15MB read
Requests/sec:  37577.93
Transfer/sec:     16.06MB
"""


def test_errors_report():
    r = parse(ERRORS_REPORT)
    assert r["requests_per_sec"] == pytest.approx(714.88)
    assert r["requests"] == 2931
    assert r["seconds"] == pytest.approx(4.10)
    assert r["bytes_read"] == int(224.21 * 1024)
    assert r["p50_ms"] == pytest.approx(0.203)
    assert r["p99_ms"] == pytest.approx(0.756)
    assert r["latency_ms"] == pytest.approx({"50": 0.203, "75": 0.334, "90": 0.502, "99": 0.756})
    assert r["non_2xx_3xx"] == 977
    assert r["socket_errors"] == {"connect": 0, "read": 76, "write": 111467, "timeout": 0}
    assert r["socket_errors_total"] == 111543
    assert "status_classes" not in r


def test_lua_report_units_and_status_classes():
    r = parse(LUA_REPORT)
    assert r["requests_per_sec"] == pytest.approx(9787.0)
    assert r["latency_ms"] == pytest.approx({"50": 0.17, "75": 374.45, "90": 1050.0, "99": 1460.0})
    assert r["non_2xx_3xx"] == 9799
    assert r["socket_errors_total"] == 600
    assert r["status_classes"] == {"1xx": 0, "2xx": 19600, "3xx": 0, "4xx": 0, "5xx": 9799}


def test_clean_report_has_zero_errors():
    r = parse(NO_ERRORS_REPORT)
    assert r["requests_per_sec"] == pytest.approx(37577.93)
    assert r["requests"] == 75253
    assert r["bytes_read"] == int(32.15 * 1024 * 1024)
    assert r["p50_ms"] == pytest.approx(0.65)
    assert r["p99_ms"] == pytest.approx(1.03)
    assert r["non_2xx_3xx"] == 0
    assert r["socket_errors_total"] == 0
