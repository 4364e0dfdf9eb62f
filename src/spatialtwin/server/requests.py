"""Reading request bodies into plain values, bounded, with errors that name the problem.

A body's size is checked from `Content-Length` before a byte is read (413 at once, so a client
declaring 300 MB is not waited for) and again while reading (a chunked body has no length).
JSON bodies are small (`MAX_JSON_BYTES`) and parsed strictly (`validate.parse_json`); a body
large enough to take more than a moment is parsed in a thread, off the event loop. Uploads
are streamed part by part into temporary files (`Upload`), never held whole in memory; a
handler reads the bytes when it uses them and discards the files when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.keys import STORE
from spatialtwin.server.validate import parse_json, require_object

MAX_JSON_BYTES = 1 << 20  # 1 MiB: the largest request (a look with a full pose) is ~10 kB
MAX_METADATA_BYTES = 256 * 1024
PARSE_IN_THREAD_BYTES = 64 * 1024  # ~1 ms of parsing; above it the loop hands it to a thread
CHUNK_BYTES = 1 << 20
MULTIPART_SLACK_BYTES = 1 << 20  # part headers, metadata and boundaries beside the files
MAX_PARTS = 16


def too_large(what: str, limit_bytes: int, code: str = "payload_too_large") -> SpatialTwinError:
    return SpatialTwinError(
        code,
        f"{what} is limited to {_human(limit_bytes)}",
        {"limit_bytes": limit_bytes},
        status=413,
    )


def _human(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


def check_declared_length(request: web.Request, limit_bytes: int, what: str) -> None:
    """413 before reading when the request says its body is larger than `limit_bytes`."""
    declared = request.content_length
    if declared is not None and declared > limit_bytes:
        raise too_large(what, limit_bytes)


async def read_bounded(request: web.Request, limit_bytes: int, what: str) -> bytes:
    """The whole body, refused (413) as soon as it passes `limit_bytes`."""
    check_declared_length(request, limit_bytes, what)
    chunks, size = [], 0
    while chunk := await request.content.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit_bytes:
            raise too_large(what, limit_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, max_bytes: int = MAX_JSON_BYTES) -> Any:
    raw = await read_bounded(request, max_bytes, "a JSON request body")
    if not raw:
        raise SpatialTwinError("empty_body", "the request needs a JSON body")
    if len(raw) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse_json, raw)
    return parse_json(raw)


@dataclass
class Upload:
    """One uploaded file part, kept in a temporary file until the handler is done with it."""

    filename: str
    path: Path
    size_bytes: int

    async def read(self) -> bytes:
        return await asyncio.to_thread(self.path.read_bytes)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class UploadForm:
    """A multipart form: the `file` part, optional extra file parts, the `metadata` object."""

    file: Upload
    metadata: dict[str, Any]
    extras: dict[str, Upload] = field(default_factory=dict)

    def discard(self) -> None:
        for upload in (self.file, *self.extras.values()):
            upload.discard()


async def _stream_part(
    part: BodyPartReader, scratch: Path | None, max_bytes: int, name: str
) -> Upload:
    fd, tmp = tempfile.mkstemp(prefix=f"upload-{os.getpid()}-", suffix=".part", dir=scratch)
    path = Path(tmp)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large("uploads", max_bytes, "file_too_large")
                await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Upload(part.filename or name, path, size)


async def _read_metadata(part: BodyPartReader) -> dict[str, Any]:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > MAX_METADATA_BYTES:
            raise too_large("the metadata part", MAX_METADATA_BYTES)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    metadata = parse_json(raw, "metadata", "invalid_metadata")
    return require_object(metadata, "metadata", "invalid_metadata")


def _malformed(exc: BaseException) -> SpatialTwinError:
    return SpatialTwinError(
        "invalid_multipart",
        "the request is not a well-formed multipart/form-data body",
        {"reason": str(exc)[:200]},
    )


async def multipart_upload(
    request: web.Request, max_bytes: int, extra_files: tuple[str, ...] = ()
) -> UploadForm:
    """A multipart form with a `file` part and a `metadata` JSON part (and, with
    `extra_files`, those optional file parts), the files streamed into the store's scratch
    directory. The caller owns the returned files: `form.discard()` (or use `upload_form`)."""
    scratch = request.app[STORE].scratch_dir()
    files = 2 if extra_files else 1  # `file` and at most one extra part
    check_declared_length(request, files * max_bytes + MULTIPART_SLACK_BYTES, "an upload")
    ctype = request.headers.get(hdrs.CONTENT_TYPE, "")
    if not request.content_type.startswith("multipart/") or "boundary=" not in ctype:
        raise SpatialTwinError(
            "invalid_multipart",
            "uploads are multipart/form-data with a boundary",
            {"content_type": ctype[:200]},
        )
    uploads: dict[str, Upload] = {}
    metadata: dict[str, Any] = {}
    try:
        try:
            reader = await request.multipart()
            await _read_parts(reader, uploads, extra_files, scratch, max_bytes, metadata)
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            raise _malformed(exc) from exc
        if "file" not in uploads:
            raise SpatialTwinError("missing_file", "the form needs a 'file' part")
    except BaseException:
        for upload in uploads.values():
            upload.discard()
        raise
    file = uploads.pop("file")
    return UploadForm(file, metadata, uploads)


async def _read_parts(
    reader: MultipartReader,
    uploads: dict[str, Upload],
    extra_files: tuple[str, ...],
    scratch: Path | None,
    max_bytes: int,
    metadata: dict[str, Any],
) -> None:
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_PARTS:
            raise SpatialTwinError(
                "too_many_parts", f"a form has at most {MAX_PARTS} parts", {"limit": MAX_PARTS}
            )
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file" or part.name in extra_files:
            if part.name in uploads:
                raise SpatialTwinError(
                    "duplicate_part", f"the form has two {part.name!r} parts", status=422
                )
            uploads[part.name] = await _stream_part(part, scratch, max_bytes, part.name)
        elif part.name == "metadata":
            metadata.clear()
            metadata.update(await _read_metadata(part))


@contextlib.asynccontextmanager
async def upload_form(
    request: web.Request, max_bytes: int, extra_files: tuple[str, ...] = ()
) -> AsyncIterator[UploadForm]:
    """`multipart_upload` whose files are discarded when the block ends."""
    form = await multipart_upload(request, max_bytes, extra_files)
    try:
        yield form
    finally:
        form.discard()
