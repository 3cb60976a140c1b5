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


class Server:
    """One PostgreSQL server in its own directory: ``start()``, ``stop()`` (fast, like a crash), ``url``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data = self.root / "data"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
        self.port = free_port()
        self.url = f"postgresql://gw@127.0.0.1:{self.port}"
        subprocess.run(
            _as_postgres([str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "gw"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        command = [
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "log"),
            "-w",
            "start",
        ]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _installed() -> None:
    if not (BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL 15 is not installed (CI installs it: apt-get install postgresql-15)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://gw@127.0.0.1:PORT`` of a server started for this session (fsync off: tests only)."""
    _installed()
    server = Server()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def stoppable_postgres() -> Iterator[Server]:
    """A server of this test's own, which the test may stop (and start again) to see the gateway without it."""
    _installed()
    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def create_database(server_url: str) -> str:
    name = "t_" + uuid.uuid4().hex[:16]
    host, port = server_url.rsplit("@", 1)[1].split(":")
    subprocess.run(
        [str(BIN / "createdb"), "-h", host, "-p", port, "-U", "gw", name], check=True, capture_output=True, timeout=60
    )
    return f"{server_url}/{name}"


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server: ``postgresql://gw@127.0.0.1:PORT/t_...``."""
    return create_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request) -> str | None:
    """Run a test on both stores: None means the SQLite default (the data dir), else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")
