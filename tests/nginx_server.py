"""A fleet on loopback for the tests and the fleet benchmark: Debian's nginx in front of real
`spatialtwin serve` (and `spatialtwin worker`) processes, each on a free port.

    servers = [start_server(data, tmp_path / f"s{i}.log") for i in range(2)]
    nginx = start_nginx(tmp_path / "nginx", [s.address for s in servers], data / "blobs")
    ...  # requests to nginx.url
    nginx.stop(); [s.stop() for s in servers]

nginx runs from the repository's own config (`deploy/nginx/spatialtwin.conf.template`, rendered
by `deploy/nginx/render.py`) as a private instance: `nginx -p PREFIX -c PREFIX/nginx.conf
-g 'daemon off;'`, pid, logs, temporary files and cache under PREFIX, so nothing of the machine's
own nginx is touched. Its access log (format `spatialtwin_upstream`) says, per request, which
server answered (`upstream=`, a retry lists both), how many bytes came from a server
(`upstream_bytes=`) and how many nginx sent (`body=`). Without `/usr/sbin/nginx` (`make
system-deps`) the tests that need it are skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONSOLE = Path(sys.executable).with_name("spatialtwin")
ACCEL_PREFIX = "/_spatialtwin_blobs/"
LOG_FIELD = re.compile(r"(\w+)=(\S+)")


def render_module() -> ModuleType:
    """deploy/nginx/render.py (a standalone script, not a package module)."""
    spec = importlib.util.spec_from_file_location(
        "spatialtwin_nginx_render", REPO / "deploy" / "nginx" / "render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port} within {timeout_s} s")
        time.sleep(0.02)


@dataclass
class NginxServer:
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def log_entries(self) -> list[dict[str, str]]:
        """The access log, one dict per request: `request` ("GET /path HTTP/1.1"), `status`
        and the `key=value` fields of the log format."""
        entries = []
        if not self.access_log.exists():
            return entries
        for line in self.access_log.read_text().splitlines():
            request = re.search(r'"([^"]*)" (\d{3}) ', line)
            if request is None:
                continue
            entry = {"request": request.group(1), "status": request.group(2)}
            # `upstream=a:1, b:2` (a retry) holds ", ": join it back before splitting fields
            entry.update(LOG_FIELD.findall(re.sub(r",\s+", ",", line[request.end() :])))
            entries.append(entry)
        return entries

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is being sent
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_nginx(
    prefix: Path,
    servers: Sequence[str],
    blobs: Path,
    *,
    level_cache_s: int = 0,
    workers: int | str = 1,
    site_extra: str = "",
) -> NginxServer:
    """nginx on a free loopback port in front of `servers` ("host:port"), serving blobs from
    `blobs` by X-Accel-Redirect; `site_extra` is put in the server block (`site.d/`)."""
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (make system-deps)")
    port = free_port()
    conf = render_module().write_standalone(
        prefix,
        listen=f"127.0.0.1:{port}",
        servers=servers,
        blobs=blobs,
        level_cache_s=level_cache_s,
        workers=workers,
    )
    if site_extra:
        (prefix / "site.d" / "extra.conf").write_text(site_extra)
    check = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t refused {conf}: {check.stderr}")
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = NginxServer(prefix.resolve(), port, proc)
    try:
        wait_for_port(port, proc, "nginx", 10)
    except RuntimeError as exc:
        server.stop()
        log = prefix / "error.log"
        raise RuntimeError(log.read_text()[-2000:] if log.exists() else str(exc)) from exc
    return server


# --- SpatialTwin processes ----------------------------------------------------------------------


@dataclass
class SpatialTwinProcess:
    """A `spatialtwin serve` or `spatialtwin worker` process."""

    args: list[str]
    log: Path
    port: int | None
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def kill(self) -> None:
        """kill -9: no cleanup, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _spawn(args: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(CONSOLE), *args], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )


def start_server(
    store_args: Sequence[str],
    log: Path,
    *,
    accel_redirect: bool = True,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> SpatialTwinProcess:
    """`spatialtwin serve --no-seed` on a free port over `store_args` (`--data DIR`, or
    `--redis URL --blobs DIR`); with `wait`, returns once `/healthz` says ok (services ready)."""
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-seed", *store_args]
    if accel_redirect:
        args += ["--accel-redirect", ACCEL_PREFIX]
    server = SpatialTwinProcess(args, log, port, _spawn(args, log, env), dict(env or {}))
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: SpatialTwinProcess, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll `/healthz` until its status is `ok`; the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise RuntimeError(f"server exited {code}: {server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as answer:
                body = json.loads(answer.read())
                if body.get("status") == "ok":
                    return body
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready in {timeout_s} s: {server.log_text()[-3000:]}")
        time.sleep(0.1)


def start_worker(
    store_args: Sequence[str], log: Path, *, env: dict[str, str] | None = None
) -> SpatialTwinProcess:
    """`spatialtwin worker` over `store_args` (`--redis URL --blobs DIR`)."""
    args = ["worker", *store_args]
    return SpatialTwinProcess(args, log, None, _spawn(args, log, env), dict(env or {}))
