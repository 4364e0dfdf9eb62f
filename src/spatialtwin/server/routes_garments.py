"""HTTP routes for garments and fabrics: parse and check, call one service, shape the reply.

Uploads up to `garment_inline_max_bytes` (2 MiB by default) are ingested within the request
(201 + record); larger ones become a `garment.ingest` job (202 + job link) polled at
`/api/v1/jobs/{id}`.
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.keys import SETTINGS
from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body, multipart_upload
from spatialtwin.services.views import garment_view, job_started

routes = web.RouteTableDef()

# Optional file parts beside `file`: MakeHuman's `.mhclo`, or the avatar the garment was
# exported with from CLO/Marvelous/Browzwear (GLB/glTF/OBJ/PLY).
AUTHORING_PARTS = ("binding", "authoring_body")


@routes.get("/api/v1/garments")
async def list_garments(request: web.Request) -> web.Response:
    """All garments, or with `?sku=` the sizes of that sku's size run, smallest first."""
    services = await ready_services(request)
    garments, visible = services.garments, services.access.visible  # a brand: its own
    sku = request.query.get("sku")
    if sku is None:
        records = visible(await garments.list())
        return web.json_response({"garments": [garment_view(r) for r in records]})
    if not 0 < len(sku) <= 64:
        raise SpatialTwinError("invalid_sku", "sku must be 1–64 characters", {"sku": sku[:80]})
    run = visible(await garments.size_run(sku))
    return web.json_response(
        {
            "sku": sku,
            "sizes": [r.get("size_label") for r in run],
            "garments": [garment_view(r) for r in run],
        }
    )


@routes.post("/api/v1/garments")
async def upload_garment(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    form = await multipart_upload(request, settings["max_upload_bytes"], AUTHORING_PARTS)
    try:
        if len(form.extras) > 1:
            raise SpatialTwinError(
                "ambiguous_authoring_body",
                "send either a 'binding' (.mhclo) or an 'authoring_body' part, not both",
                {"parts": sorted(form.extras)},
                status=422,
            )
        extra = next(iter(form.extras.values()), None)
        garments = (await ready_services(request)).garments
        record, job = await garments.upload(
            form.file.path,
            form.file.filename,
            form.file.size_bytes,
            form.metadata,
            None if extra is None else (extra.filename, extra.path),
        )
    finally:
        form.discard()  # a job reads the blobs the upload was staged as, not these files
    if record is not None:
        return web.json_response(garment_view(record), status=201)
    assert job is not None
    return web.json_response(job_started(job), status=202)


@routes.get("/api/v1/garments/{garment_id}")
async def get_garment(request: web.Request) -> web.Response:
    services = await ready_services(request)
    record = await services.garments.get(request.match_info["garment_id"])
    return web.json_response(garment_view(services.access.require_visible("garment", record)))


@routes.get("/api/v1/garments/{garment_id}/preview.glb")
async def garment_preview(request: web.Request) -> web.Response:
    garments = (await ready_services(request)).garments
    glb = await garments.preview_glb(
        request.match_info["garment_id"],
        request.query.get("twin"),
        request.query.get("channel", "ecommerce"),
    )
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


@routes.get("/api/v1/fabrics")
async def list_fabrics(request: web.Request) -> web.Response:
    garments = (await ready_services(request)).garments
    return web.json_response({"fabrics": await garments.list_fabrics()})


@routes.post("/api/v1/fabrics")
async def create_fabric(request: web.Request) -> web.Response:
    garments = (await ready_services(request)).garments
    record = await garments.create_fabric(await json_body(request))
    return web.json_response(record, status=201)
