"""A real Debian `redis-server` for the tests: started once per session on a free loopback port.

    def test_x(redis_server):
        store = RedisStore(redis_server.url(db=3), blobs=tmp_path / "blobs")

Nothing is saved (no RDB, no AOF) and the server ends with the session. Each test module
takes its own database number (`url(db=)`) and each store its own namespace, so tests never
see each other's keys. `redis-server` comes from `make system-deps`; without it the tests
that need it are skipped with that reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    folder: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self, *args: str) -> str:
        """A `redis-cli`-free command over a plain socket (RESP inline), for fixtures."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall((" ".join(args) + "\r\n").encode())
            return conn.recv(65536).decode(errors="replace")


def start_redis(folder: Path, port: int | None = None, *extra: str) -> RedisServer:
    """`redis-server` on `port` (a free one by default) with its files in `folder`, answering
    PING before this returns."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (make system-deps)")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(folder / "redis.log"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    return answering(RedisServer(port, proc, folder), folder / "redis.log")


def answering(server: RedisServer, log: Path, timeout_s: float = 10.0) -> RedisServer:
    """`server` once it answers PING; its process killed and its log's tail raised if it
    exits or stays silent for `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if "PONG" in server.command("PING"):
                return server
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.proc.kill()
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"redis-server did not start on {server.port}: {tail}")
        time.sleep(0.02)


def stop_redis(server: RedisServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        stop_redis(server)
