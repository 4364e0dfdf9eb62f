"""Keep the native libraries' chatter (TFLite, XNNPACK, MediaPipe's absl/glog) off the terminal.

MediaPipe's C++ core writes straight to file descriptor 2 — "INFO: Created TensorFlow Lite
XNNPACK delegate", glog lines like "W0000 00:00:… inference_feedback_manager.cc:121] …" —
bypassing Python's logging, and neither `GLOG_minloglevel` nor `TF_CPP_MIN_LOG_LEVEL` silences
it (measured with mediapipe 1.2.2). A user of `spatialtwin track` or a bench should see the
program's own output, so a process (never a library: only the CLI, the server and the benches
call this) may route fd 2 through a pipe: a thread forwards every line to the real stderr
except the native libraries' informational and warning lines, which are dropped (not
logged: a log handler on stderr would feed them back through the filter). Their errors (glog
`E`/`F` lines) and everything Python writes pass unchanged. `--verbose` skips the filter.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Lines the native libraries print at info/warning level.
NOISE = re.compile(
    rb"^(?:"
    rb"(?:INFO|WARNING): (?:Created TensorFlow Lite|Read-only tensor|Logging before InitGoogle"
    rb"|Initialized TensorFlow Lite|Replacing \d+ node)"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "  # absl/glog info and warnings
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb")"
)
MAX_LINE_BYTES = 1 << 16

_installed = False
_lock = threading.Lock()


def is_noise(line: bytes) -> bool:
    """True for a native library's info or warning line (see `NOISE`)."""
    return NOISE.match(line) is not None


def quiet_native_logs() -> bool:
    """Filter fd 2 of this process from now on (once; later calls do nothing).

    Returns True if the filter was installed by this call.
    """
    global _installed
    with _lock:
        if _installed:
            return False
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        thread = threading.Thread(
            target=_forward, args=(read_fd, real), name="spatialtwin-stderr", daemon=True
        )
        thread.start()
        atexit.register(_restore, real, thread)
        _installed = True
        return True


def _restore(real_fd: int, thread: threading.Thread) -> None:
    """At exit: give fd 2 back (the pipe's last writer closes, so the thread drains it)."""
    sys.stderr.flush()
    os.dup2(real_fd, 2)
    thread.join(timeout=1.0)


def _forward(read_fd: int, real_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _emit(line + b"\n", real_fd)
            if len(pending) > MAX_LINE_BYTES:  # no newline for a long time: pass it on
                _emit(pending, real_fd)
                pending = b""
        if pending:
            _emit(pending, real_fd)


def _emit(line: bytes, real_fd: int) -> None:
    if is_noise(line):
        return
    view = memoryview(line)
    while view:
        try:
            written = os.write(real_fd, view)
        except OSError:
            return
        view = view[written:]
