"""A fleet on loopback: two `spatialtwin serve` processes on one store behind Debian's nginx,
run from the repository's own config (`deploy/nginx/`, `tests/nginx_server.py`).

What a shopper, a merchandiser and a mirror rely on: an upload through nginx is read back the
same through each server; level files are decided by a server and streamed by nginx
(X-Accel-Redirect: the bytes never pass through a server process) with their immutable caching
headers, ranges and 304s; nginx's micro-cache keeps a server's yes for one second and no longer
(a license change reaches level files within 2 s); a mirror's WebSocket upgrade
passes nginx both ways; an upload over the servers' limit is refused by nginx with the API's JSON
413; and `kill -9` of one server while shoppers download levels fails no request (nginx retries
on the other). The data (twin, skirt, look: `tests/mirror_fixtures.py`, levels built in-process)
is made once for the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from spatialtwin.server.app import MAX_UPLOAD_BYTES
from spatialtwin.server.requests import MULTIPART_SLACK_BYTES
from tests.mirror_fixtures import REPO, TWIN, MirrorClient, skirt_obj, standing_landmarks
from tests.nginx_server import (
    ACCEL_PREFIX,
    NGINX,
    FleetKeys,
    NginxServer,
    SpatialTwinProcess,
    copy_store,
    fleet_keys,
    prepare_levels_and_mirror,
    render_module,
    start_nginx,
    start_server,
    start_worker,
    stop_all,
    wait_ready,
)
from tests.redis_server import REDIS_SERVER, RedisServer, answering, free_port, stop_redis

SHA_URL = re.compile(r"/api/v1/lod/([0-9a-f]{64})\.(glb|bin|usdz)$")


DB = 9  # this module's database on the session's redis-server
FLEET_SETTINGS = ("--setting", "look_max_frames=40", "--setting", "garment_target_edge_m=0.05")


@dataclass
class FleetData:
    url: str  # the fleet's Redis
    blobs: Path  # the blob folder every server, the worker and nginx share
    manifest: dict
    token: str
    look: str
    garment: str
    keys: FleetKeys

    @property
    def admin(self) -> dict[str, str]:
        return self.keys.headers

    @property
    def store_args(self) -> list[str]:
        return ["--redis", self.url, "--blobs", str(self.blobs), *FLEET_SETTINGS]

    def level_urls(self) -> list[str]:
        """Every level file of the twin's manifest that the e-commerce channel may fetch."""
        urls = []
        for level in self.manifest["levels"]:
            urls += [level["url"], level["fallback"]["url"], level["quantized"]["url"]]
        return sorted(set(urls))

    def blob(self, url: str) -> Path:
        sha = SHA_URL.search(url).group(1)  # type: ignore[union-attr]
        return self.blobs / sha[:2] / sha


async def _into_redis(root: Path, url: str, blobs: Path) -> None:
    from spatialtwin.store.embedded import EmbeddedStore
    from spatialtwin.store.redis_store import RedisStore

    source, target = EmbeddedStore(root), RedisStore(url, blobs=blobs)
    try:
        records, copied = await copy_store(source, target)
        assert records >= 5 and copied >= 10, (records, copied)
    finally:
        await source.close()
        await target.close()


@pytest.fixture(scope="module")
def fleet_data(mirror_data, redis_server, tmp_path_factory) -> FleetData:
    """The mirror tests' data (twin, skirt, look) with the twin's levels and a mirror device,
    made on an embedded copy and put into Redis database `DB` and a shared blob folder."""
    import redis

    folder = tmp_path_factory.mktemp("fleet")
    shutil.copytree(mirror_data.root, folder / "embedded")
    manifest, token = asyncio.run(prepare_levels_and_mirror(folder / "embedded"))
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    asyncio.run(_into_redis(folder / "embedded", url, folder / "blobs"))
    keys = fleet_keys(folder / "keys")
    return FleetData(
        url, folder / "blobs", manifest, token, mirror_data.look, mirror_data.garment, keys
    )


@pytest.fixture(scope="module")
def fleet_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fleet-logs")


@pytest.fixture(scope="module")
def fleet_processes(fleet_data, fleet_logs):
    """Two `spatialtwin serve --redis` processes (started together, ready in ~4 s) and one
    `spatialtwin worker --redis`, started beside them so it is warm when a job comes."""
    store = fleet_data.store_args
    worker = start_worker(store, fleet_logs / "worker.log", env=fleet_data.keys.env)
    started = [
        start_server(
            fleet_data.store_args,
            fleet_logs / f"server{i}.log",
            wait=False,
            env=fleet_data.keys.env,
        )
        for i in range(2)
    ]
    try:
        for server in started:
            wait_ready(server)
        yield [*started, worker]
    finally:
        stop_all([*started, worker])


@pytest.fixture(scope="module")
def servers(fleet_processes) -> list[SpatialTwinProcess]:
    return fleet_processes[:2]


@pytest.fixture(scope="module")
def worker(fleet_processes) -> SpatialTwinProcess:
    """Every job of the fleet runs there."""
    return fleet_processes[2]


@pytest.fixture(scope="module")
def nginx(servers, fleet_data, tmp_path_factory):
    """Every level request decided by a server (micro-cache off)."""
    proxy = start_nginx(
        tmp_path_factory.mktemp("nginx"), [s.address for s in servers], fleet_data.blobs
    )
    yield proxy
    proxy.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries_for(proxy: NginxServer, path: str) -> list[dict[str, str]]:
    return [e for e in proxy.log_entries() if e["request"].split(" ")[1].startswith(path)]


# --- the config ------------------------------------------------------------------------------


def test_the_rendered_config_passes_nginx_and_matches_the_servers_upload_limit(tmp_path):
    render = render_module()
    conf = render.write_standalone(
        tmp_path / "ngx",
        listen="127.0.0.1:1",
        servers=["127.0.0.1:2", "127.0.0.1:3"],
        blobs=tmp_path / "blobs",
        level_cache_s=1,
    )
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (make system-deps)")
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path / "ngx"), "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    site = (tmp_path / "ngx" / "spatialtwin.conf").read_text()
    assert render.PLACEHOLDER.search(site) is None
    size = re.search(r"client_max_body_size (\d+)m;", site)
    assert size is not None and int(size.group(1)) << 20 == MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES
    assert f"location {ACCEL_PREFIX} {{\n        internal;" in site
    assert site.count("server 127.0.0.1:") == 2 and "max_fails=1 fail_timeout=5s" in site
    with pytest.raises(ValueError, match="missing"):
        render.fill("x ${SPATIALTWIN_NOT_GIVEN} y", {})
    with pytest.raises(ValueError, match="host:port"):
        render.upstream_lines(["127.0.0.1:80; evil"])


@pytest.mark.parametrize(
    "prefix", ["_blobs/", "/_blobs", "/a/../b/", "/./", "/a b/", "/x/;evil/", "//", "/é/"]
)
def test_serve_refuses_an_accel_redirect_prefix_that_is_not_a_plain_url_path(prefix, capsys):
    from spatialtwin.cli import build_parser

    argv = ["serve", "--accel-redirect", prefix]
    with pytest.raises(SystemExit) as exited:
        build_parser(argv).parse_args(argv)
    assert exited.value.code == 2
    assert "not a URL path like /_spatialtwin_blobs/" in capsys.readouterr().err
    good = ["serve", "--accel-redirect", ACCEL_PREFIX]
    assert build_parser(good).parse_args(good).accel_redirect == ACCEL_PREFIX


def test_envsubst_renders_the_template_as_render_py_does(tmp_path):
    """The official nginx image (deploy/docker-compose.yml) renders the template with envsubst:
    the same values must give the same site, nginx's own `$variables` untouched."""
    if shutil.which("envsubst") is None:
        pytest.skip("envsubst (gettext-base) is not installed")
    render = render_module()
    values = render.site_values(
        listen="127.0.0.1:8080",
        servers=["10.0.0.7:8081"],
        blobs=tmp_path / "blobs",
        cache=tmp_path / "cache",
        fill_socket=tmp_path / "fill.sock",
        access_log="/dev/stdout",
        includes=tmp_path / "site.d",
    )
    shell_format = " ".join("${" + name + "}" for name in values)
    out = subprocess.run(
        ["envsubst", shell_format],
        input=render.SITE_TEMPLATE.read_text(),
        env={"PATH": "/usr/bin:/bin", **values},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == render.render_site(values)
    assert "proxy_set_header Upgrade $http_upgrade;" in out


def test_the_systemd_units_verify(tmp_path):
    """`systemd-analyze verify` on the units, with the install paths pointed at this checkout
    (it checks that ExecStart is executable and every option is known)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = REPO / "deploy" / "systemd"
    for name in ("spatialtwin-server@.service", "spatialtwin-worker@.service"):
        text = (units / name).read_text()
        assert "Restart=on-failure" in text and "NoNewPrivileges=yes" in text
        assert "ProtectSystem=strict" in text
        assert re.search(r"^CapabilityBoundingSet=$", text, re.M)  # no capabilities at all
        text = text.replace("/opt/spatialtwin/.venv", str(REPO / ".venv")).replace(
            "/etc/spatialtwin/spatialtwin.env", str(units / "spatialtwin.env.example")
        )
        (tmp_path / name.replace("@.", "@8081.")).write_text(text)
    shutil.copy(units / "spatialtwin.target", tmp_path)
    check = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stderr.strip() == "", check.stderr


def start_redis_with(conf: Path, folder: Path, port: int) -> RedisServer:
    """redis-server reading `conf`, with only the port, folder and log file overridden."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (make system-deps)")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf), "--port", str(port), "--dir", str(folder),
         "--logfile", str(log), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return answering(RedisServer(port, proc, folder), log)


def test_the_redis_config_keeps_what_was_acknowledged_through_a_kill_9(tmp_path):
    """deploy/redis/redis.conf as given (AOF on, fsync every second, no eviction): a write
    acknowledged 1.5 s before a SIGKILL is there after the restart."""
    conf = REPO / "deploy" / "redis" / "redis.conf"
    port = free_port()
    server = start_redis_with(conf, tmp_path / "redis", port)
    try:
        assert "yes" in server.command("CONFIG", "GET", "appendonly")
        assert "everysec" in server.command("CONFIG", "GET", "appendfsync")
        assert "noeviction" in server.command("CONFIG", "GET", "maxmemory-policy")
        assert "+OK" in server.command("SET", "fleet:look", "kept")
        time.sleep(1.5)
    finally:
        server.proc.kill()  # SIGKILL: no save at shutdown, only what the AOF holds
        server.proc.wait(10)
    restarted = start_redis_with(conf, tmp_path / "redis", port)
    try:
        assert "kept" in restarted.command("GET", "fleet:look")
    finally:
        stop_redis(restarted)


# --- uploads ---------------------------------------------------------------------------------


async def test_an_upload_through_nginx_is_read_alike_through_each_server(
    nginx, servers, fleet_data, average_body
):
    form = aiohttp.FormData()
    form.add_field("file", skirt_obj(average_body, 200), filename="fleet_skirt.obj")
    metadata = {
        "sku": "FLEET-SKIRT",
        "name": "Fleet skirt",
        "category": "skirt",
        "size_label": "S",
        "fabric": "cotton-poplin",
        "units": "m",
    }
    form.add_field("metadata", json.dumps(metadata), content_type="application/json")
    async with aiohttp.ClientSession() as http:
        r = await http.post(nginx.url + "/api/v1/garments", data=form, headers=fleet_data.admin)
        assert r.status == 201, await r.text()
        created = await r.json()
        reads = []
        for server in servers:
            r = await http.get(
                f"{server.url}/api/v1/garments/{created['id']}", headers=fleet_data.admin
            )
            assert r.status == 200, await r.text()
            reads.append(await r.json())
    assert reads[0] == reads[1]
    assert reads[0]["sku"] == "FLEET-SKIRT" and reads[0]["id"] == created["id"]
    upload = entries_for(nginx, "/api/v1/garments")[-1]
    assert upload["status"] == "201" and upload["upstream"] in {s.address for s in servers}


async def test_a_look_job_sent_to_one_server_is_run_by_the_worker_and_followed_on_the_other(
    servers, worker, nginx, fleet_data
):
    request = {"twin": TWIN, "garments": [fleet_data.garment], "channel": "ecommerce"}
    admin = fleet_data.admin
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            servers[0].url + "/api/v1/looks", json=request, headers=fleet_data.admin
        )
        assert r.status == 202, await r.text()
        link = (await r.json())["links"]["job"]
        seen: list[tuple[str, float]] = []
        deadline = time.monotonic() + 60
        while True:
            r = await http.get(servers[1].url + link, headers=fleet_data.admin)  # the other one
            state = await r.json()
            seen.append((state["status"], state["progress"]))
            if state["status"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, f"the look job did not end: {state}"
            await asyncio.sleep(0.05)
        assert state["status"] == "done", state
        look_id = state["result"]["id"]
        r = await http.get(f"{nginx.url}/api/v1/looks/{look_id}/look.glb", headers=admin)
        glb = await r.read()
        assert r.status == 200 and glb[:4] == b"glTF" and len(glb) > 10_000
    progress = [p for status, p in seen if status == "running"]
    assert any(0.0 < p < 1.0 for p in progress), seen  # the worker's progress, seen through B
    assert progress == sorted(progress)
    ran = [
        json.loads(line)
        for line in worker.log_text().splitlines()
        if line.startswith("{") and '"job message"' in line
    ]
    assert any(e.get("jobId") == link.rsplit("/", 1)[1] and e["outcome"] == "ran" for e in ran)


async def test_a_body_over_the_servers_limit_is_refused_by_nginx_with_json_413(nginx):
    limit = MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port)
    writer.write(
        (
            "POST /api/v1/garments HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary=b\r\nContent-Length: {limit + 1}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head, _, body = (await asyncio.wait_for(reader.read(65536), 5)).partition(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 413")
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and error["detail"]["limit_bytes"] == limit
    # nginx logs the request once the connection is done with (after its lingering close)
    deadline = time.monotonic() + 5
    while not (
        refused := [e for e in entries_for(nginx, "/api/v1/garments") if e["status"] == "413"]
    ):
        assert time.monotonic() < deadline, "the 413 was not logged"
        await asyncio.sleep(0.05)
    assert refused[-1]["upstream"] == "-"  # no server saw it


# --- level files -----------------------------------------------------------------------------


async def test_level_files_are_decided_by_a_server_and_streamed_by_nginx(
    nginx, servers, fleet_data
):
    url = fleet_data.level_urls()[0]
    sha = SHA_URL.search(url).group(1)  # type: ignore[union-attr]
    on_disk = fleet_data.blob(url).read_bytes()
    async with aiohttp.ClientSession() as http:
        direct = await http.get(servers[0].url + url)  # what a server itself answers
        assert direct.status == 200 and await direct.read() == b""
        assert direct.headers["X-Accel-Redirect"] == f"{ACCEL_PREFIX}{sha[:2]}/{sha}"

        r = await http.get(nginx.url + url)
        body = await r.read()
        assert r.status == 200 and body == on_disk and sha256(body) == sha
        assert r.headers["X-SpatialTwin-Streamed-By"] == "nginx"
        assert r.headers["ETag"] == f'"{sha}"'
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Type"] == "model/gltf-binary"
        assert "X-Accel-Redirect" not in r.headers

        r = await http.get(nginx.url + url, headers={"Range": "bytes=100-199"})
        assert r.status == 206 and await r.read() == on_disk[100:200]
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(on_disk)}"

        r = await http.get(nginx.url + url, headers={"If-None-Match": f'"{sha}"'})
        assert r.status == 304 and await r.read() == b""

        # the internal location is nginx's alone; the access door is still the server's
        r = await http.get(f"{nginx.url}{ACCEL_PREFIX}{sha[:2]}/{sha}")
        assert r.status == 404
        usdz = fleet_data.manifest["ar"]["usdz"]["url"]  # the twin is not licensed for `ar`
        r = await http.get(nginx.url + usdz)
        assert r.status == 403 and (await r.json())["error"]["code"] == "channel_not_licensed"
        r = await http.get(nginx.url + "/api/v1/lod/" + "0" * 64 + ".glb")
        assert r.status == 404 and (await r.json())["error"]["code"] == "lod_file_not_found"

    full = [e for e in entries_for(nginx, url) if e["status"] == "200"][-1]
    # a server sent nothing of the file (an empty redirect); nginx sent all of it
    assert full["upstream_bytes"] == "0" and full["body"] == str(len(on_disk))
    assert full["upstream"] in {s.address for s in servers}


async def test_the_micro_cache_keeps_a_servers_yes_for_a_second_and_no_longer(
    servers, fleet_data, tmp_path
):
    proxy = start_nginx(
        tmp_path / "nginx", [s.address for s in servers], fleet_data.blobs, level_cache_s=1
    )
    url = fleet_data.level_urls()[1] + "?channel=ecommerce"
    sha = SHA_URL.search(url.split("?")[0]).group(1)  # type: ignore[union-attr]
    license_url = f"{proxy.url}/api/v1/twins/{TWIN}/license"
    try:
        async with aiohttp.ClientSession() as http:
            bodies = [await (await http.get(proxy.url + url)).read() for _ in range(3)]
            assert {sha256(b) for b in bodies} == {sha}
            r = await http.get(proxy.url + url, headers={"If-None-Match": f'"{sha}"'})
            assert r.status == 304
            # past the validity (1-2 s: nginx's cache clock ticks in whole seconds) nginx asks
            # a server again, conditionally, and gets a 304: no bytes copied
            deadline = time.monotonic() + 3.0
            while (log := entries_for(proxy, "/api/v1/lod/"))[-1]["cache"] == "HIT":
                assert time.monotonic() < deadline, "the cached yes was never asked again"
                await asyncio.sleep(0.1)
                r = await http.get(proxy.url + url)
                assert r.status == 200 and sha256(await r.read()) == sha
            assert [e["cache"] for e in log[:4]] == ["MISS", "HIT", "HIT", "HIT"]
            assert log[-1]["cache"] == "REVALIDATED"
            assert log[-1]["upstream_status"] == "304" and log[-1]["upstream_bytes"] == "0"

            r = await http.patch(
                license_url, json={"channels": ["mirror"]}, headers=fleet_data.admin
            )
            assert r.status == 200, await r.text()
            changed = time.monotonic()
            try:
                while (r := await http.get(proxy.url + url)).status == 200:
                    await r.read()
                    assert time.monotonic() - changed < 3.0, "still served 3 s after the change"
                    await asyncio.sleep(0.05)
                refused_after_s = time.monotonic() - changed
                assert r.status == 403
                assert (await r.json())["error"]["code"] == "channel_not_licensed"
            finally:
                r = await http.patch(
                    license_url,
                    json={"channels": ["ecommerce", "mirror"]},
                    headers=fleet_data.admin,
                )
                assert r.status == 200, await r.text()
            r = await http.get(proxy.url + url)  # refusals are never kept
            assert r.status == 200 and sha256(await r.read()) == sha
    finally:
        proxy.stop()
    print(f"level file refused through the micro-cache {refused_after_s:.2f} s after the change")
    # nginx's cache clock ticks in whole seconds: a 1 s validity lasts 1-2 s
    assert refused_after_s <= 2.2


# --- mirrors ---------------------------------------------------------------------------------


async def test_a_mirror_session_opens_through_nginx_and_streams_both_ways(
    nginx, fleet_data, average_body
):
    marks = standing_landmarks(average_body)
    async with aiohttp.ClientSession() as http:
        client = await MirrorClient(http, nginx.ws_url + "/api/v1/mirror/sessions").connect()
        welcome = await client.hello(fleet_data.token, look=fleet_data.look, input="landmarks")
        assert welcome["look"] == fleet_data.look and welcome["twin"]["id"] == TWIN
        for frame_id in range(10):
            await client.send_landmarks(frame_id, marks, 1000.0 * time.perf_counter())
            await asyncio.sleep(1 / 30)
        await client.wait_for(lambda got: len(got.results) >= 3, 20)
        await client.send_json({"type": "bye"})
        code = await client.wait_closed()
    assert code == 1000 and client.received.messages[-1] == {"type": "ended", "reason": "bye"}
    assert not client.decode_errors
    assert client.received.results[0].frame_id == 0
    deadline = time.monotonic() + 5  # logged once nginx has closed both ends of the tunnel
    while not (upgrades := entries_for(nginx, "/api/v1/mirror/sessions")):
        assert time.monotonic() < deadline, "the WebSocket was not logged"
        await asyncio.sleep(0.05)
    assert upgrades[-1]["status"] == "101"


# --- faults: last, since it kills a server ---------------------------------------------------


async def test_kill_9_of_a_server_while_shoppers_download_levels_fails_no_request(
    nginx, servers, fleet_data
):
    urls = fleet_data.level_urls()
    expected = {u: SHA_URL.search(u).group(1) for u in urls}  # type: ignore[union-attr]
    failures: list[str] = []
    done: list[float] = []
    killed_at: list[float] = []
    stop = asyncio.Event()

    async def shopper(http: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        while not stop.is_set():
            url = urls[i % len(urls)]
            i += 1
            try:
                async with http.get(nginx.url + url) as r:
                    body = await r.read()
                    if r.status != 200 or sha256(body) != expected[url]:
                        failures.append(f"{url}: {r.status} {len(body)} B")
            except aiohttp.ClientError as exc:
                failures.append(f"{url}: {exc!r}")
            done.append(time.monotonic())

    async def killer(victim: SpatialTwinProcess) -> None:
        await asyncio.sleep(1.0)
        victim.kill()
        killed_at.append(time.monotonic())
        await asyncio.sleep(2.0)
        stop.set()

    connector = aiohttp.TCPConnector(limit=8, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(killer(servers[0]), *(shopper(http, k) for k in range(8)))
    after = [t for t in done if t > killed_at[0]]
    print(f"{len(done)} downloads, {len(after)} after the kill, failures: {failures[:5]}")
    assert not failures
    assert len(after) > 50
    log = entries_for(nginx, "/api/v1/lod/")
    retried = [e for e in log if "," in e["upstream"]]
    assert retried, "no request was retried on the surviving server"
    assert all(e["status"] == "200" for e in log[-len(after) :])
    survivor = servers[1].address
    assert all(e["upstream"].split(",")[-1] == survivor for e in retried)
