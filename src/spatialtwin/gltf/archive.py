"""Reading uploaded zip archives without trusting them.

A merchandiser's zip (an OBJ with its MTL and textures) is untrusted input: it may claim to hold
far more than it does (a zip bomb), or name entries like `../../etc/passwd` or absolute paths
(path traversal), or hold symlinks. Nothing here writes to disk: entries are read into memory
after every check has passed, and reading stops the moment the declared sizes are exceeded,
because a bomb can lie in its central directory.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from spatialtwin.errors import SpatialTwinError


@dataclass(frozen=True)
class ArchiveLimits:
    """Ceilings for one archive; defaults suit a garment with a few textures."""

    max_entries: int = 64
    max_total_bytes: int = 256 * 1024 * 1024
    max_entry_bytes: int = 128 * 1024 * 1024
    max_ratio: float = 200.0  # uncompressed / compressed, per entry and overall


ARCHIVE_DEFAULTS = ArchiveLimits()


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _safe_name(name: str) -> str:
    """The entry's normalised relative path, or a refusal if it could escape its folder."""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in path.parts:
        raise SpatialTwinError(
            "unsafe_archive_path",
            f"the archive entry {name!r} points outside the archive",
            {"entry": name},
            status=422,
        )
    return str(path)


def read_zip(data: bytes, limits: ArchiveLimits = ARCHIVE_DEFAULTS) -> dict[str, bytes]:
    """Entries of a zip as {relative path: bytes}, after refusing bombs and traversal."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise SpatialTwinError(
            "corrupt_file", f"the zip archive cannot be read: {exc}", {"format": "zip"}, status=422
        ) from exc
    with archive:
        if any(not i.filename for i in archive.infolist()):
            raise SpatialTwinError(
                "corrupt_file",
                "the zip archive has an entry without a name",
                {"format": "zip"},
                status=422,
            )
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_entries:
            raise SpatialTwinError(
                "archive_too_many_entries",
                f"the archive holds {len(infos)} files; at most {limits.max_entries} are allowed",
                {"entries": len(infos), "limit": limits.max_entries},
                status=413,
            )
        declared = 0
        for info in infos:
            _safe_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SpatialTwinError(
                    "unsafe_archive_path",
                    f"the archive entry {info.filename!r} is a symbolic link",
                    {"entry": info.filename},
                    status=422,
                )
            declared += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.max_entry_bytes or ratio > limits.max_ratio:
                raise _bomb(info.filename, info.file_size, info.compress_size, limits)
        if declared > limits.max_total_bytes or declared > limits.max_ratio * max(len(data), 1):
            raise _bomb("(all entries)", declared, len(data), limits)
        out: dict[str, bytes] = {}
        total = 0
        for info in infos:
            if info.flag_bits & 0x1:
                raise SpatialTwinError(
                    "encrypted_archive",
                    f"the archive entry {info.filename!r} is encrypted; send it unencrypted",
                    {"entry": info.filename},
                    status=422,
                )
            chunks = []
            size = 0
            try:
                with archive.open(info) as fh:
                    # Read at most one byte past the declared size: a lying header is a bomb.
                    while chunk := fh.read(min(1 << 20, info.file_size + 1 - size)):
                        size += len(chunk)
                        total += len(chunk)
                        if size > info.file_size or total > limits.max_total_bytes:
                            raise _bomb(info.filename, size, info.compress_size, limits)
                        chunks.append(chunk)
                        if size == info.file_size:
                            break
            except (
                zipfile.BadZipFile,
                EOFError,
                NotImplementedError,
                OSError,
                ValueError,  # a local header offset that seeks before the file's start
                RuntimeError,
                zlib.error,  # a deflate stream that is not one (an invalid block type)
            ) as exc:
                raise SpatialTwinError(
                    "corrupt_file",
                    f"the archive entry {info.filename!r} cannot be read: {exc}",
                    {"entry": info.filename},
                    status=422,
                ) from exc
            out[_safe_name(info.filename)] = b"".join(chunks)
        return out


def _bomb(name: str, size: int, compressed: int, limits: ArchiveLimits) -> SpatialTwinError:
    return SpatialTwinError(
        "zip_bomb",
        f"the archive entry {name!r} expands to {size} bytes from {compressed}; "
        f"refusing (limits: {limits.max_total_bytes} bytes, ratio {limits.max_ratio:g})",
        {"entry": name, "uncompressed_bytes": size, "compressed_bytes": compressed},
        status=413,
    )
