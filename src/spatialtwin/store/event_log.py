"""Append-only event logs: what happened, each event written durably before the caller goes on.

A log is a named stream of JSON events, each with its own `id`. `append` returns only once the
event is on disk (or, for a store on a server, acknowledged by it): a usage event is part of the
answer it meters, so a process killed right after a response leaves its event behind, and one
killed before leaves neither. `read` returns every event once, in the order appended; an event
appended twice under one id (a retry after a lost answer) counts once.

`JsonlEventLog` is the embedded store's: one JSON object per line in `DATA/events/<stream>.jsonl`,
appended under an exclusive `flock` (so processes sharing the data directory interleave whole
lines), `fsync`ed before `append` returns. A writer killed mid-line leaves a torn last line:
the next append starts a fresh line after it, and `read` skips lines that do not parse, so a
torn event is lost only if its append never returned (its response was never sent). A fleet's
store keeps the same interface over a Redis Stream (`XADD` / `XRANGE`, one entry per event).
"""

from __future__ import annotations

import abc
import asyncio
import fcntl
import json
import os
from pathlib import Path
from typing import Any


class EventLog(abc.ABC):
    @abc.abstractmethod
    async def append(self, event: dict[str, Any]) -> None:
        """Append `event` (a JSON object with an `id`), durable once this returns."""

    @abc.abstractmethod
    async def read(self) -> list[dict[str, Any]]:
        """Every event, in the order appended, each id once."""


class JsonlEventLog(EventLog):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size == 0:
                _fsync_dir(self.path.parent)  # the new file's name is durable too
            elif _last_byte(self.path, size) != b"\n":
                line = b"\n" + line  # after a torn line a killed writer left
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    async def append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, sort_keys=True, separators=(",", ":"), allow_nan=False)
        await asyncio.to_thread(self._append, line.encode() + b"\n")

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        events, seen = [], set()
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # a torn line: its append never returned
            if not isinstance(event, dict) or event.get("id") in seen:
                continue
            seen.add(event.get("id"))
            events.append(event)
        return events

    async def read(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._read)


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
