"""A real PostgreSQL 15 for tests: one server per test session (so per xdist worker), one database per test.

The server refuses to run as root, so when the tests run as root its data directory
is owned by, and the server runs as, the ``postgres`` user (``runuser``). CI installs
it: ``apt-get install postgresql-15``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://gw@127.0.0.1:PORT`` of a server started for this session (fsync off: tests only)."""
    if not (BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL 15 is not installed (CI installs it: apt-get install postgresql-15)")
    root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "gw"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql://gw@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server: ``postgresql://gw@127.0.0.1:PORT/t_...``."""
    name = "t_" + uuid.uuid4().hex[:16]
    host, port = postgres_server.rsplit("@", 1)[1].split(":")
    subprocess.run(
        [str(BIN / "createdb"), "-h", host, "-p", port, "-U", "gw", name], check=True, capture_output=True, timeout=60
    )
    return f"{postgres_server}/{name}"
