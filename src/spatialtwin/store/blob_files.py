"""Blob files as both stores keep them: `<root>/<aa>/<sha256>`, written whole or not at all.

    target = blob_target(root, key)
    write_blob(target, data)                  # bytes, or the path of an upload in transit
    async for chunk in read_range(target, 1000, 5000): ...

A blob file appears by rename of a complete, fsynced temporary file beside it
(`.<sha>.<pid>.<random>.tmp`, so a store opening the folder can tell a dead writer's
leftover). Its modification time is set from `time.time_ns()` (`stamp_now`) before the rename:
`os.utime` without times and a fresh file's own mtime come from the kernel's coarse clock, up
to a tick (~4 ms) behind `time.time()`, so a blob put just after a deleter's cutoff could read
as stored before it and be deleted (the embedded store keeps `stored_at_s` in the mtime).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from spatialtwin.files import TEMP_SUFFIX

SHA256 = re.compile(r"^[0-9a-f]{64}$")
HASH_CHUNK_BYTES = 1 << 20


def blob_target(root: Path, key: str) -> Path:
    """Where the blob `key` (a checked SHA-256 hex) lives under `root`."""
    return root / key[:2] / key


def existing_blob(root: Path, key: str) -> Path | None:
    """The blob's file when `key` is a SHA-256 hex and the file is there, else None."""
    if not isinstance(key, str) or not SHA256.match(key):
        return None
    path = blob_target(root, key)
    return path if path.exists() else None


def stamp_now(path: Path) -> None:
    """Set the file's times to now at full clock precision (see the module doc)."""
    now_ns = time.time_ns()
    os.utime(path, ns=(now_ns, now_ns))


def hash_file(path: Path) -> str:
    """SHA-256 hex of a file, read in chunks (an upload of any size, never held whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def write_blob(target: Path, source: bytes | Path) -> None:
    """Place `source` (bytes, or a file copied in chunks) at `target`: a temporary file beside
    it, fsynced, mode 0644, stamped now, renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                with open(source, "rb") as fh:
                    shutil.copyfileobj(fh, out, HASH_CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        stamp_now(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def file_size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return (await asyncio.to_thread(path.stat)).st_size
    except FileNotFoundError:
        return None


async def read_range(
    path: Path | None, start: int, count: int | None, chunk_bytes: int
) -> AsyncIterator[bytes]:
    """`count` bytes of the file from `start` (to its end when None) in chunks of at most
    `chunk_bytes`, each read on a thread; nothing when the file is missing."""
    if path is None:
        return
    try:
        fh = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        return
    try:
        await asyncio.to_thread(fh.seek, start)
        left = count
        while left is None or left > 0:
            size = chunk_bytes if left is None else min(chunk_bytes, left)
            chunk = await asyncio.to_thread(fh.read, size)
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)
