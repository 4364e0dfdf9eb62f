"""A least-recently-used cache bounded by bytes, keyed by content.

Services keep what is slow to rebuild and never changes for a given content hash — a twin's
body read from its NPZ blob, a garment's meshes, a body's landmarks — under a key made of the
blob's SHA-256 (or a record's revision), never a record id (a re-import changes the content
under the same id) nor `id(obj)` (a freed object's id is reused). The bound is the entries'
own array bytes, so a cache of full-resolution bodies cannot grow without limit.

    cache = ByteLRU(max_bytes=256 << 20)
    body = cache.get(("body", sha)) or cache.put(("body", sha), read(sha))
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_SCALAR_BYTES = 64  # a small object's own overhead, so entries without arrays still count


def payload_bytes(value: Any, depth: int = 4) -> int:
    """Bytes an object holds in NumPy arrays (and bytes), through dataclass fields, mappings
    and sequences down to `depth` levels; small objects count `_SCALAR_BYTES`."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if depth <= 0:
        return _SCALAR_BYTES
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _SCALAR_BYTES + sum(
            payload_bytes(getattr(value, f.name), depth - 1) for f in dataclasses.fields(value)
        )
    if isinstance(value, dict):
        return _SCALAR_BYTES + sum(payload_bytes(v, depth - 1) for v in value.values())
    if isinstance(value, list | tuple):
        return _SCALAR_BYTES + sum(payload_bytes(v, depth - 1) for v in value)
    return _SCALAR_BYTES


class ByteLRU:
    """`get`/`put` by a hashable content key; evicts least recently used past `max_bytes`.
    Used from the event loop only (no locking)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0  # gets answered / not, since the cache was made (`/metrics` reads them)
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        hit = self._entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: T, nbytes: int | None = None) -> T:
        size = payload_bytes(value) if nbytes is None else int(nbytes)
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return value  # larger than the whole cache: hand it back, keep nothing
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted
        return value

    def keys_held(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries
