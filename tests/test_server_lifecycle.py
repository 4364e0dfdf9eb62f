"""`spatialtwin serve` as an operator runs it: starts, answers, logs JSON, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_shuts_down_gracefully(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spatialtwin",
            "serve",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "data"),
            "--no-seed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        while not statuses or statuses[-1] == "loading":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    statuses.append(json.loads(r.read())["status"])
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        assert statuses[-1] == "ok", statuses
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/twins", timeout=5) as r:
            assert json.loads(r.read()) == {"twins": []}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [e for e in lines if e.get("msg") == "request"]
    assert {e["path"] for e in requests} >= {"/healthz", "/api/v1/twins"}
    assert all(isinstance(e["ms"], float) and e["status"] == 200 for e in requests)
    assert (tmp_path / "data" / "records").is_dir()


def test_serve_listens_before_seeding_and_reports_it(tmp_path):
    """A fresh data directory: the server answers while its services load (`loading`) and
    the samples are still being made (`seeding`), becomes `ok` when they are stored, and logs
    that it listened first."""
    port, data = free_port(), tmp_path / "data"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spatialtwin", "serve", "--port", str(port), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    statuses = []
    try:
        deadline = time.monotonic() + 600
        while not statuses or statuses[-1] in ("loading", "seeding"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    statuses.append(json.loads(r.read())["status"])
                    if len(statuses) == 1:
                        first_answer_s = time.monotonic() - started
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "seeding did not end"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/twins", timeout=5) as r:
            assert len(json.loads(r.read())["twins"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert statuses[0] in ("loading", "seeding") and statuses[-1] == "ok", statuses
    assert "seeding" in statuses, statuses
    assert statuses.index("seeding") > (statuses.index("loading") if "loading" in statuses else -1)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [e["msg"] for e in lines]
    assert messages.index("listening") < messages.index("seeding finished")
    print(f"first /healthz answer {first_answer_s:.2f} s after the process started")
