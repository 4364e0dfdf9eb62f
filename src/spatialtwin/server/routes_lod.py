"""HTTP routes for LOD streaming: a twin's level manifest and the immutable level files.

`GET /api/v1/twins/{id}/lod/manifest.json?channel=` checks the license, then answers from the
LOD cache (building the set once, in the executor, on first request). `GET /api/v1/lod/
{sha256}.glb|.bin` streams a level file from the store's blob path with sendfile: strong
`ETag` = the content hash, `304` on a matching `If-None-Match`, `206` for `Range`, and
`Cache-Control: immutable`, since a URL's bytes can never change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.license import check_use, provenance
from spatialtwin.server import keys
from spatialtwin.store.lod_cache import LodCache, ServedFile, cache_key

LOD_CACHE = web.AppKey("lod_cache", LodCache)
FILE_PREFIX = "/api/v1/lod/"
IMMUTABLE = "public, max-age=31536000, immutable"

routes = web.RouteTableDef()


class ImmutableFileResponse(web.StreamResponse):
    """A content-addressed file sent with sendfile: strong ETag = its hash, Range/206/416.

    aiohttp's FileResponse stats and opens the file in the thread pool and closes it there too,
    two thread hops per request, and derives its ETag from mtime and size. A level file never
    changes once written, so its size is known (`ServedFile.size`) and its hash is the ETag;
    the file is opened on the loop (a local, page-cache-hot open costs microseconds, less than
    a hop) and handed to `loop.sendfile`, so no request holds the file in memory.
    """

    def __init__(self, served: ServedFile) -> None:
        super().__init__(
            headers={
                "Cache-Control": IMMUTABLE,
                "Content-Type": served.media_type,
                "Accept-Ranges": "bytes",
                "ETag": f'"{served.sha256}"',
            }
        )
        self._served = served

    def _byte_range(self, request: web.BaseRequest) -> tuple[int, int] | None:
        """(start, count) to send, or None when the Range cannot be satisfied."""
        size = self._served.size
        try:
            rng = request.http_range
        except ValueError:
            return None
        start, stop = rng.start, rng.stop
        if start is None and stop is None:
            return 0, size
        if start is not None and start < 0:  # suffix range "bytes=-N": the last N bytes
            start, stop = max(size + start, 0), size
        start = start or 0
        stop = size if stop is None else min(stop, size)
        if start >= size or stop <= start:
            return None
        self.set_status(206)
        self.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        return start, stop - start

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        span = self._byte_range(request)
        if span is None:
            self.set_status(416)
            self.headers["Content-Range"] = f"bytes */{self._served.size}"
            self.content_length = 0
            return await super().prepare(request)
        start, count = span
        self.content_length = count
        writer = await super().prepare(request)
        if request.method == "HEAD" or count == 0:
            return writer
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        with open(self._served.path, "rb") as fobj:  # on the loop: see the class docstring
            try:
                await asyncio.get_running_loop().sendfile(transport, fobj, start, count)
            except NotImplementedError:  # a transport without sendfile (TLS): stream chunks
                fobj.seek(start)
                while count > 0:
                    chunk = fobj.read(min(count, 256 * 1024))
                    if not chunk:
                        break
                    await writer.write(chunk)
                    count -= len(chunk)
        await self.write_eof()
        return writer


def _matches(request: web.Request, etag: str) -> bool:
    tags = request.if_none_match
    return tags is not None and any(t.value in (etag, "*") for t in tags)


def _not_modified(etag: str, cache_control: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": f'"{etag}"', "Cache-Control": cache_control})


def lod_inputs(record: dict[str, Any]) -> dict[str, str]:
    """Content hashes of everything a twin's levels depend on."""
    prov = json.dumps(provenance(record), sort_keys=True).encode()
    return {"twinBody": record["blobs"]["body_npz"], "provenance": hashlib.sha256(prov).hexdigest()}


@routes.get("/api/v1/twins/{twin_id}/lod/manifest.json")
async def twin_lod_manifest(request: web.Request) -> web.StreamResponse:
    from spatialtwin.lod.levels import DEFAULTS
    from spatialtwin.lod.scene import scene_from_twin_body
    from spatialtwin.lod.simplifier import backend_name
    from spatialtwin.services.lod import PIPELINE_VERSION, build_lod_for_scene

    twins = request.app[keys.TWINS]
    record = await twins.get(request.match_info["twin_id"])
    check_use(record, request.query.get("channel", "ecommerce"))
    inputs = lod_inputs(record)
    level_options = request.app[keys.SETTINGS].get("lod_options", DEFAULTS)
    options = {**asdict(level_options), "pipeline": PIPELINE_VERSION, "simplifier": backend_name()}
    key = cache_key(inputs, options)
    if _matches(request, key):
        return _not_modified(key, "private, no-cache")

    async def build() -> tuple[dict[str, Any], dict[str, bytes]]:
        # Read the body by the blob key the cache key was made from, not through the twin
        # repository's per-id body cache, which would hand back an old body after a re-import.
        data = await request.app[keys.STORE].get_blob(inputs["twinBody"])
        if data is None:
            raise SpatialTwinError(
                "twin_body_missing",
                "the twin's body data is missing",
                {"id": record["id"]},
                status=500,
            )
        loop = asyncio.get_running_loop()

        def run() -> tuple[dict[str, Any], dict[str, bytes]]:
            from spatialtwin.gltf.body_arrays import body_from_npz

            body = body_from_npz(data)
            scene = scene_from_twin_body(body, name=record["id"], extras=provenance(record))
            done = build_lod_for_scene(scene, level_options, url_prefix=FILE_PREFIX, inputs=inputs)
            return done.manifest, done.files

        return await loop.run_in_executor(request.app[keys.EXECUTOR], run)

    manifest, _ = await request.app[LOD_CACHE].get_or_build(key, [record["id"]], build)
    return web.json_response(
        {**manifest, "twinId": record["id"], "key": key},
        headers={"ETag": f'"{key}"', "Cache-Control": "private, no-cache"},
    )


@routes.get("/api/v1/looks/{look_id}/lod/manifest.json")
async def look_lod_manifest(request: web.Request) -> web.StreamResponse:
    """Levels of a look (twin + draped garments), keyed by the look GLB's content hash.

    A new drape is a new look GLB, so its levels get new content-hashed URLs while the old
    ones stay valid for clients that hold them.
    """
    from spatialtwin.gltf.read_glb import read_glb_scene
    from spatialtwin.lod.levels import DEFAULTS
    from spatialtwin.lod.simplifier import backend_name
    from spatialtwin.server.routes_looks import LOOKS
    from spatialtwin.services.lod import PIPELINE_VERSION, build_lod_for_scene

    channel = request.query.get("channel", "ecommerce")
    look = await request.app[LOOKS].get(request.match_info["look_id"], channel)
    if look.get("pose"):
        raise SpatialTwinError(
            "lod_needs_rest_pose",
            "levels are built for looks draped in the twin's rest pose; this look is posed "
            "(pose the levels on the client through the joints instead)",
            {"lookId": look["id"]},
            status=422,
        )
    twin = await request.app[keys.TWINS].get(look["twin"])
    prov = json.dumps(provenance(twin), sort_keys=True).encode()
    inputs = {"lookGlb": look["blobs"]["glb"], "provenance": hashlib.sha256(prov).hexdigest()}
    level_options = request.app[keys.SETTINGS].get("lod_options", DEFAULTS)
    options = {**asdict(level_options), "pipeline": PIPELINE_VERSION, "simplifier": backend_name()}
    key = cache_key(inputs, options)
    if _matches(request, key):
        return _not_modified(key, "private, no-cache")

    async def build() -> tuple[dict[str, Any], dict[str, bytes]]:
        data = await request.app[keys.STORE].get_blob(inputs["lookGlb"])
        if data is None:
            raise SpatialTwinError(
                "look_glb_missing", "the look's GLB is missing", {"id": look["id"]}, status=500
            )

        def run() -> tuple[dict[str, Any], dict[str, bytes]]:
            scene = read_glb_scene(data)
            done = build_lod_for_scene(scene, level_options, url_prefix=FILE_PREFIX, inputs=inputs)
            return done.manifest, done.files

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(request.app[keys.EXECUTOR], run)

    manifest, _ = await request.app[LOD_CACHE].get_or_build(key, [twin["id"], look["id"]], build)
    return web.json_response(
        {**manifest, "lookId": look["id"], "twinId": twin["id"], "key": key},
        headers={"ETag": f'"{key}"', "Cache-Control": "private, no-cache"},
    )


@routes.get(FILE_PREFIX + r"{sha256:[0-9a-f]{64}}.{ext:(glb|bin)}")
async def lod_file(request: web.Request) -> web.StreamResponse:
    served = await request.app[LOD_CACHE].served_file(
        request.match_info["sha256"], request.match_info["ext"]
    )
    if served is None:
        raise SpatialTwinError(
            "lod_file_not_found",
            "no level file with this content hash is served here (unknown, or withdrawn "
            "with its twin's license)",
            {"file": f"{request.match_info['sha256']}.{request.match_info['ext']}"},
            status=404,
        )
    if _matches(request, served.sha256):
        return _not_modified(served.sha256, IMMUTABLE)
    return ImmutableFileResponse(served)


async def _withdraw_revoked(app: web.Application) -> None:
    async for event in app[keys.STORE].subscribe("twins"):
        if event.get("event") == "license_changed" and event.get("revoked"):
            await app[LOD_CACHE].withdraw_owner(event["twinId"])


async def lod_services(app: web.Application) -> AsyncIterator[None]:
    app[LOD_CACHE] = LodCache(app[keys.STORE])
    watcher = asyncio.create_task(_withdraw_revoked(app))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(lod_services)
    app.add_routes(routes)
