"""Writes that are either complete or absent: a temp file in the same folder, then rename.

Temporary files are named `.<target>.<pid>.<random>.tmp`, so a process starting on the same
folder can tell the leftovers of a killed writer (its pid no longer runs) from a write in
flight (`is_leftover`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 3600.0  # no write takes an hour: older temp files are leftovers whoever owns them


def _temp_beside(target: Path) -> tuple[int, str]:
    return tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
    )


def _write_temp(target: Path, data: bytes) -> str:
    """A complete, fsynced temporary copy of `data` beside `target`; returns its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            # mkstemp creates 0600; give the file the mode an ordinary write would have.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    target = Path(path)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def create_bytes_exclusive(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write `data` to `path` only if nothing is there; False when `path` exists.

    The complete file is hard-linked into place: `link` fails on an existing name, so of two
    writers racing for one name exactly one wins, and no reader sees half a file.
    """
    target = Path(path)
    tmp = _write_temp(target, data)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def json_bytes(value: Any) -> bytes:
    """The bytes a JSON record is stored as (sorted keys: equal records, equal bytes)."""
    return json.dumps(value, indent=2, sort_keys=True).encode()


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> Path:
    return write_bytes_atomic(path, json_bytes(value))


def pid_running(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def owner_pid(name: str) -> int | None:
    """The writer's pid in a temp file's name: `.<target>.<pid>.<random>.tmp` (this module)
    or `<prefix>-<pid>-<random><suffix>` (scratch files such as uploads); None otherwise."""
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
        token = parts[1] if len(parts) == 3 else ""
    else:
        parts = name.split("-", 2)
        token = parts[1] if len(parts) == 3 else ""
    return int(token) if token.isdigit() and len(token) <= 10 else None


def is_leftover(path: Path, now_s: float | None = None) -> bool:
    """True for a temp file whose writer is gone: its pid no longer runs, or it is older than
    `STALE_AFTER_S`. A file of this very pid is a write in flight unless it is that old."""
    try:
        age_s = (now_s or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age_s > STALE_AFTER_S:
        return True
    pid = owner_pid(path.name)
    return pid is not None and pid != os.getpid() and not pid_running(pid)
