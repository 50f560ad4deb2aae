"""A throwaway PostgreSQL cluster for tests: Debian's `postgresql` server, initialized in a
temporary directory, on a free loopback port, run as an unprivileged user (the server refuses
to run as root, and CI runs as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.support.server import free_port
from tests.support.system import require_program

PG_BINARIES = "/usr/lib/postgresql/*/bin/initdb"
UNPRIVILEGED = "nobody"


class PostgresCluster:
    def __init__(self) -> None:
        initdb = require_program("initdb", "postgresql", also_in=PG_BINARIES)
        self.bin = Path(os.path.realpath(initdb)).parent
        # Not under pytest's temporary directory: that one is private to root.
        self.dir = Path(tempfile.mkdtemp(prefix="ovrunner-pg-"))
        self.port = free_port()
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self._run("initdb", "-D", "data", "-U", "ovrunner", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.log_path = self.dir / "postgres.log"
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", "data", "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1"],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=self.log_path.open("wb"),
            **self._as_user,
        )  # fmt: skip
        self._wait_ready()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://ovrunner@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """A fast shutdown and a start on the same data and port (connections are dropped)."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)
        self.process = subprocess.Popen(
            self.process.args, cwd=self.dir, stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("ab"), **self._as_user,
        )  # fmt: skip
        self._wait_ready()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([str(self.bin / program), *args], cwd=self.dir, check=True,
                       capture_output=True, **self._as_user)  # fmt: skip

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log_path.read_text()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
