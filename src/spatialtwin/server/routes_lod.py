"""HTTP routes for LOD streaming: a twin's or look's level manifest, the immutable level files.

`GET /api/v1/twins/{id}/lod/manifest.json?channel=` (and `/looks/{id}/...`) passes the access
door, then answers the built manifest from the store (200, strong `ETag` = the set's key, 304
on a match) or, while the levels are not built, 202 with the `lod.build` job that builds them
(queued once per key, whoever asks; levels are never built inside a request). `GET
/api/v1/lod/{sha256}.glb|.bin|.usdz[?channel=]` serves a level file while every twin it shows
may be used (a `.usdz` only while they are licensed for `ar`): strong `ETag` = the content
hash, `304` on a matching `If-None-Match`, `206` for `Range`, and `Cache-Control: immutable`,
since a URL's bytes can never change. A store with local files sends them with sendfile; any
other store streams them (`Store.open_blob`). Behind nginx (`spatialtwin serve --accel-redirect
PREFIX`, `deploy/nginx/`) the answer is an empty `X-Accel-Redirect` to the file under nginx's
internal location aliasing `Store.blob_root()`: this process decides and nginx sends the bytes
(sendfile, Range), so the server never reads them.

A manifest's `ar.usdz.url` is the AR level as USDZ for iOS AR Quick Look (`ios-src`); it is
served by the same route, only while every twin it shows is licensed for `ar`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from spatialtwin.server import keys
from spatialtwin.server.accel import accel_redirect
from spatialtwin.server.loading import ready_services
from spatialtwin.services.views import LOD_FILE_PREFIX, job_started
from spatialtwin.store.base import Store

if TYPE_CHECKING:
    from spatialtwin.services.lod import LevelFile, ManifestAnswer

IMMUTABLE = "public, max-age=31536000, immutable"
RETRY_AFTER_S = 2

routes = web.RouteTableDef()


class ImmutableFileResponse(web.StreamResponse):
    """A content-addressed file: strong ETag = its hash, Range/206/416.

    aiohttp's FileResponse stats and opens the file in the thread pool and closes it there too,
    two thread hops per request, and derives its ETag from mtime and size. A level file never
    changes once written, so its size is known (`LevelFile.size`) and its hash is the ETag; a
    local file is opened on the loop (a page-cache-hot open costs microseconds, less than a
    hop) and handed to `loop.sendfile`; a store without local files streams the range in
    chunks. No request holds the file in memory.
    """

    def __init__(self, served: LevelFile, store: Store) -> None:
        super().__init__(
            headers={
                "Cache-Control": IMMUTABLE,
                "Content-Type": served.media_type,
                "Accept-Ranges": "bytes",
                "ETag": f'"{served.sha256}"',
            }
        )
        self._served = served
        self._store = store

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
        if self._served.path is None:
            async for chunk in self._store.open_blob(self._served.sha256, start, count):
                await writer.write(chunk)
            await self.write_eof()
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


def _manifest_response(request: web.Request, answer: ManifestAnswer) -> web.StreamResponse:
    if answer.not_modified:
        return _not_modified(answer.key, "private, no-cache")
    if answer.manifest is not None:
        return web.json_response(
            answer.manifest,
            headers={"ETag": f'"{answer.key}"', "Cache-Control": "private, no-cache"},
        )
    assert answer.job is not None
    body = {**job_started(answer.job, manifest=request.path_qs), "key": answer.key}
    return web.json_response(
        body,
        status=202,
        headers={
            "Location": body["links"]["job"],
            "Retry-After": str(RETRY_AFTER_S),
            "Cache-Control": "no-store",
        },
    )


def _etags(request: web.Request) -> tuple[str, ...]:
    return tuple(t.value for t in request.if_none_match or ())


@routes.get("/api/v1/twins/{twin_id}/lod/manifest.json")
async def twin_lod_manifest(request: web.Request) -> web.StreamResponse:
    lod = (await ready_services(request)).lod
    answer = await lod.twin_manifest(
        request.match_info["twin_id"], request.query.get("channel", "ecommerce"), _etags(request)
    )
    return _manifest_response(request, answer)


@routes.get("/api/v1/looks/{look_id}/lod/manifest.json")
async def look_lod_manifest(request: web.Request) -> web.StreamResponse:
    """Levels of a look (twin + draped garments), keyed by the look GLB's content hash: a new
    drape is a new look GLB, so its levels get new URLs while the old ones stay valid."""
    lod = (await ready_services(request)).lod
    answer = await lod.look_manifest(
        request.match_info["look_id"], request.query.get("channel", "ecommerce"), _etags(request)
    )
    return _manifest_response(request, answer)


@routes.get(LOD_FILE_PREFIX + r"{sha256:[0-9a-f]{64}}.{ext:(glb|bin|usdz)}")
async def lod_file(request: web.Request) -> web.StreamResponse:
    lod = (await ready_services(request)).lod
    served = await lod.level_file(
        request.match_info["sha256"], request.match_info["ext"], request.query.get("channel")
    )
    if _matches(request, served.sha256):
        return _not_modified(served.sha256, IMMUTABLE)
    redirect = accel_redirect(request.app, served.path, served.media_type, IMMUTABLE)
    if redirect is not None:
        return redirect
    return ImmutableFileResponse(served, request.app[keys.STORE])
