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

from tests.mirror_fixtures import TWIN
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


def stop_all(processes: Sequence[SpatialTwinProcess | NginxServer]) -> None:
    """SIGTERM every process at once, then wait for each (a server drains for up to 10 s:
    in turn, a fleet would take that many times as long to stop)."""
    for process in processes:
        if process.proc.poll() is None:
            process.proc.terminate()
    for process in processes:
        process.stop()


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


# --- data ---------------------------------------------------------------------------------------


@dataclass
class FleetKeys:
    """The signing keys every server of a fleet shares (`SPATIALTWIN_KEYS`) and an admin token
    made with them, for the requests only a merchandiser or an owner may make (uploads,
    looks, license changes). Empty where the checkout has no token authentication."""

    env: dict[str, str]
    headers: dict[str, str]


def fleet_keys(folder: Path) -> FleetKeys:
    try:
        from spatialtwin.services.auth import KeyRing
    except ImportError:
        return FleetKeys({}, {})
    ring, _ = KeyRing.init(folder)
    token = ring.issue("admin", None, subject="fleet-tests")
    return FleetKeys({"SPATIALTWIN_KEYS": str(folder)}, {"Authorization": f"Bearer {token}"})


async def prepare_levels_and_mirror(root: Path) -> tuple[dict[str, Any], str]:
    """On a data directory made by `tests.mirror_fixtures` (twin, skirt, look): build the twin's
    levels (bind-pose error sampling, as tests/test_lod_api.py, ~3 s) and register a mirror,
    in-process, before any server starts. Returns (the level manifest, the device token)."""
    from dataclasses import replace

    from spatialtwin.lod.levels import DEFAULTS
    from spatialtwin.services.context import Services
    from spatialtwin.services.lod import _key_options, cache_key, options_json, twin_inputs
    from spatialtwin.store.embedded import EmbeddedStore

    fast = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())
    store = EmbeddedStore(root)
    services = Services(store, settings={"lod_options": fast})
    twin = await services.twin_records.get(TWIN)
    key = cache_key(twin_inputs(twin), _key_options(fast))
    payload = {
        "subject": "twin",
        "id": TWIN,
        "channel": "ecommerce",
        "key": key,
        "options": options_json(fast),
    }
    await services.lod.build_job(payload, lambda *args, **kwargs: None)
    manifest = (await services.lod_records.get_set(key))["manifest"]
    _, token = await services.devices.register("Fleet test mirror", "test")
    await store.close()
    return manifest, token


async def copy_store(source: Any, target: Any) -> tuple[int, int]:
    """Every record and blob of one store into another (an embedded data directory into a
    fleet's Redis and blob folder), through the Store interface; (records, blobs) copied."""
    records = 0
    for kind in await source.list_kinds():
        for record_id in await source.list_ids(kind):
            record = await source.get_record(kind, record_id)
            if record is not None:
                await target.put_record(kind, record_id, record)
                records += 1
    blobs = 0
    for key, _stored_at_s in await source.list_blobs():
        data = await source.get_blob(key)
        if data is not None:
            got, _ = await target.put_blob(data)
            assert got == key
            blobs += 1
    return records, blobs
