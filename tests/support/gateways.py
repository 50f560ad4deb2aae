"""The gateways people put in front of model-server replicas, run for real on loopback:
LiteLLM's proxy (from the package index, in a virtual environment of its own that `make test`
creates, since its pins conflict with ours) and nginx (Debian's package)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import free_port
from tests.support.system import require_program

ROOT = Path(__file__).parents[2]
LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_KEY = "sk-" + secrets.token_hex(16)  # what clients of the test's proxy send


class Gateway:
    """A gateway process on a free loopback port, its output in `log_path`."""

    def __init__(self, command: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "gateway.log"
        self._command = command
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 120) -> Gateway:
        command = [part.replace("{port}", str(self.port)) for part in self._command]
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **(self._env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def litellm_proxy(
    workdir: Path, replicas: list[str], model: str, **router_overrides: Any
) -> Gateway:
    """LiteLLM's proxy on the router settings of `deploy/litellm/config.yaml` (but for
    `router_overrides`), with one deployment per replica URL under the model name `model`."""
    litellm = LITELLM_VENV / "bin" / "litellm"
    if not litellm.exists():
        message = "LiteLLM's proxy is installed by `make test` into .venv-litellm"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    shipped = yaml.safe_load((ROOT / "deploy" / "litellm" / "config.yaml").read_text())
    deployments = [{"model_name": model,
                    "litellm_params": {"model": f"openai/{model}", "api_base": f"{url}/v1",
                                       "api_key": "unused"}} for url in replicas]  # fmt: skip
    router = {**shipped["router_settings"], **router_overrides}
    config = {**shipped, "model_list": deployments, "router_settings": router}
    (workdir / "litellm.yaml").write_text(yaml.safe_dump(config))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True",
           "LITELLM_MASTER_KEY": LITELLM_KEY}  # fmt: skip
    command = [str(litellm), "--config", "litellm.yaml", "--host", "127.0.0.1", "--port", "{port}",
               "--num_workers", "1"]  # fmt: skip
    return Gateway(command, workdir, env).start("/health/liveliness", timeout=180)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{upstream}
}}
"""


def nginx(replicas: list[str]) -> Gateway:
    """nginx run by hand (no service, no system config) on `deploy/nginx/ovrunner.conf`, its
    `server` lines pointed at `replicas` (host:port) and its `listen` at a free port."""
    program = require_program("nginx", "nginx", also_in="/usr/sbin/nginx")
    # Not under pytest's temporary directory: nginx's workers may not be able to reach it.
    workdir = Path(tempfile.mkdtemp(prefix="ovrunner-nginx-"))
    gateway = Gateway([program, "-c", str(workdir / "nginx.conf"), "-p", str(workdir)], workdir)
    shipped = (ROOT / "deploy" / "nginx" / "ovrunner.conf").read_text()
    lines = [f"    server {r} max_fails=1 fail_timeout=10s;" for r in replicas]
    blocks = re.sub(r"(    server \S+ max_fails=\S+ fail_timeout=\S+;\n)+",
                    "\n".join(lines) + "\n", shipped)  # fmt: skip
    blocks = re.sub(r"listen \S+;", f"listen 127.0.0.1:{gateway.port};", blocks)
    user = "user root;" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, user=user, upstream=blocks))
    return gateway.start("/healthz", timeout=30)
