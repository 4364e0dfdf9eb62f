"""The native libraries' chatter stays off stderr unless --verbose; real messages get through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spatialtwin.native_logs import is_noise

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "people" / "pose.jpg"
CLI = [sys.executable, "-m", "spatialtwin"]

# Lines as mediapipe 1.2.2 prints them (copied from a `spatialtwin track` run).
NOISE_LINES = [
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"WARNING: Logging before InitGoogle() is written to STDERR",
    b"WARNING: Read-only tensor #1 (model_1/model/zero_padding2d/Pad/paddings) has an unaligned"
    b" buffer (0x7f9c2e3c3e96, required alignment 4); copying to an aligned heap buffer.",
    b"W0000 00:00:1796206036.873532    6198 inference_feedback_manager.cc:121] Feedback manager"
    b" requires a model with a single signature inference.",
    b"I0000 00:00:1796206036.873532    6198 gl_context.cc:369] GL version: 3.2",
]
KEPT_LINES = [
    b"E0000 00:00:1796206036.873532    6198 calculator_graph.cc:887] INTERNAL: model failed",
    b"spatialtwin: error: no person found (frame 3)",
    b'{"level": "WARNING", "logger": "spatialtwin.server", "message": "slow request"}',
    b"WARNING:root:a warning from Python logging",
]


def test_noise_lines_are_recognised_and_errors_are_not() -> None:
    assert [is_noise(line) for line in NOISE_LINES] == [True] * len(NOISE_LINES)
    assert [is_noise(line) for line in KEPT_LINES] == [False] * len(KEPT_LINES)


def test_filter_drops_noise_and_forwards_the_rest_through_fd_2() -> None:
    lines = NOISE_LINES + KEPT_LINES
    script = (
        "import os, sys, time\n"
        "from spatialtwin.native_logs import quiet_native_logs\n"
        "assert quiet_native_logs() and not quiet_native_logs()\n"
        f"for line in {lines!r}:\n"
        "    os.write(2, line + b'\\n')\n"
        "print('python stderr', file=sys.stderr, flush=True)\n"
        "os.write(2, b'no newline at the end')\n"
        "time.sleep(0.2)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = done.stderr.splitlines()
    assert got == [*KEPT_LINES, b"python stderr", b"no newline at the end"]


def test_track_cli_is_quiet_unless_verbose(tmp_path: Path) -> None:
    out = tmp_path / "poses.json"
    quiet = subprocess.run(
        [*CLI, "track", str(PHOTO), "-o", str(out)], capture_output=True, timeout=300, cwd=ROOT
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == b"", quiet.stderr.decode()
    assert b"1 frames, person found in 1" in quiet.stdout
    loud = subprocess.run(
        [*CLI, "--verbose", "track", str(PHOTO), "-o", str(out)],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    assert loud.returncode == 0, loud.stderr
    assert b"XNNPACK" in loud.stderr or b"W0000" in loud.stderr
