"""A real `ovrunner serve` process on a free loopback port, for integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    # Every server a test session started, so the session can scan all their logs at the end.
    started: list[ServerProcess] = []

    def __init__(
        self,
        store_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_dir: Path | None = None,  # the store's own by default; a read-only store needs one
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        logs = log_dir or store_dir
        self.log_path = logs / f"server-{self.port}-{len(ServerProcess.started)}.log"
        command = [sys.executable, "-m", "ovrunner.cli", "serve", "--port", str(self.port),
                   "--store-dir", str(store_dir), *args]  # fmt: skip
        self._log = self.log_path.open("wb")
        ServerProcess.started.append(self)
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait_ready(self, timeout: float = 180.0) -> ServerProcess:
        """Poll /healthz until it answers; fail at once if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout} s:\n{self.log()}")

    def wait_idle(self, timeout: float) -> float:
        """Seconds until the first runner holds no request, in ovrunner or in its pipeline;
        fails after `timeout`."""
        started = time.monotonic()
        while True:
            stats = httpx.get(f"{self.base_url}/engines/ps").json()["runners"][0]["stats"]
            if stats["admitted"] == 0 and not stats["pipeline_busy"]:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, stats
            time.sleep(0.02)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
