"""Atomic writes, as the store has always named them; they live in the ground (`files`)."""

from spatialtwin.files import (
    STALE_AFTER_S,
    TEMP_SUFFIX,
    create_bytes_exclusive,
    is_leftover,
    json_bytes,
    owner_pid,
    write_bytes_atomic,
    write_json_atomic,
)

__all__ = [
    "STALE_AFTER_S",
    "TEMP_SUFFIX",
    "create_bytes_exclusive",
    "is_leftover",
    "json_bytes",
    "owner_pid",
    "write_bytes_atomic",
    "write_json_atomic",
]
