"""Parsing request bodies into plain values, with errors that name the problem."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web

from spatialtwin.errors import SpatialTwinError


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise SpatialTwinError("empty_body", "the request needs a JSON body")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpatialTwinError(
            "invalid_json",
            f"request body is not JSON: {exc.msg}",
            {"line": exc.lineno, "column": exc.colno},
        ) from exc


async def _read_file_part(part: BodyPartReader, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(1 << 20):
        size += len(chunk)
        if size > max_bytes:
            raise SpatialTwinError(
                "file_too_large",
                f"uploads are limited to {max_bytes // (1 << 20)} MiB",
                {"limit_bytes": max_bytes},
                status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def multipart_upload(
    request: web.Request, max_bytes: int, extra_files: tuple[str, ...] = ()
) -> tuple[str, bytes, dict[str, Any]] | tuple[str, bytes, dict[str, Any], dict[str, Any]]:
    """(filename, file bytes, metadata JSON) from a multipart form with `file` and `metadata`;
    with `extra_files` also {part name: (filename, bytes)} of those optional file parts."""
    reader = await request.multipart()
    filename, data, metadata = None, None, {}
    extras: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            filename = part.filename or "upload"
            data = await _read_file_part(part, max_bytes)
        elif part.name in extra_files:
            if part.name in extras:
                raise SpatialTwinError(
                    "duplicate_part", f"the form has two {part.name!r} parts", status=422
                )
            extras[part.name] = (part.filename or part.name, await _read_file_part(part, max_bytes))
        elif part.name == "metadata":
            text = await part.text()
            try:
                metadata = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as exc:
                raise SpatialTwinError(
                    "invalid_metadata", f"metadata is not JSON: {exc.msg}"
                ) from exc
            if not isinstance(metadata, dict):
                raise SpatialTwinError("invalid_metadata", "metadata must be a JSON object")
    if data is None or filename is None:
        raise SpatialTwinError("missing_file", "the form needs a 'file' part")
    if extra_files:
        return filename, data, metadata, extras
    return filename, data, metadata
