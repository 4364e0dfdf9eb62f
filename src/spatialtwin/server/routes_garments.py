"""HTTP routes for garments, fabrics and jobs: parse, call the repository, shape the response.

Uploads up to `garment_inline_max_bytes` (2 MiB by default) are processed within the request
(201 + record); larger ones become a job (202 + job link) polled at `/api/v1/jobs/{id}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.pipeline import IngestOptions
from spatialtwin.garment.sizes import size_run
from spatialtwin.gltf.garment_io import garment_on_twin_glb
from spatialtwin.rights.license import check_use, provenance
from spatialtwin.server.keys import EXECUTOR, PROJECT_ROOT, SETTINGS, STORE, TWINS
from spatialtwin.server.requests import UploadForm, json_body, multipart_upload
from spatialtwin.server.seed import seed_garments
from spatialtwin.services.authoring import Attachment
from spatialtwin.store.garment_repository import GarmentRepository, public_view
from spatialtwin.store.jobs import JobRunner

GARMENTS = web.AppKey("garments", GarmentRepository)
JOBS = web.AppKey("jobs", JobRunner)
INLINE_MAX_BYTES = 2 * 1024 * 1024

routes = web.RouteTableDef()


@routes.get("/api/v1/garments")
async def list_garments(request: web.Request) -> web.Response:
    """All garments, or with `?sku=` the sizes of that sku's size run, smallest first."""
    records = await request.app[GARMENTS].list()
    sku = request.query.get("sku")
    if sku is None:
        return web.json_response({"garments": [public_view(r) for r in records]})
    if not 0 < len(sku) <= 64:
        raise SpatialTwinError("invalid_sku", "sku must be 1–64 characters", {"sku": sku[:80]})
    run = size_run(records, sku)
    return web.json_response(
        {
            "sku": sku,
            "sizes": [r.get("size_label") for r in run],
            "garments": [public_view(r) for r in run],
        }
    )


# Optional file parts beside `file`: MakeHuman's `.mhclo`, or the avatar the garment was
# exported with from CLO/Marvelous/Browzwear (GLB/glTF/OBJ/PLY).
AUTHORING_PARTS = ("binding", "authoring_body")


@routes.post("/api/v1/garments")
async def upload_garment(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    garments = request.app[GARMENTS]
    form = await multipart_upload(request, settings["max_upload_bytes"], AUTHORING_PARTS)

    async def work(progress: Any) -> dict[str, Any]:
        try:
            data, attachment = await _upload_bytes(form)
            return public_view(
                await garments.ingest(
                    data, form.file.filename, form.metadata, progress, attachment=attachment
                )
            )
        finally:
            form.discard()

    job_owns_files = False
    try:
        if len(form.extras) > 1:
            raise SpatialTwinError(
                "ambiguous_authoring_body",
                "send either a 'binding' (.mhclo) or an 'authoring_body' part, not both",
                {"parts": sorted(form.extras)},
                status=422,
            )
        if form.file.size_bytes <= settings.get("garment_inline_max_bytes", INLINE_MAX_BYTES):
            data, attachment = await _upload_bytes(form)
            record = await garments.ingest(
                data, form.file.filename, form.metadata, attachment=attachment
            )
            return web.json_response(public_view(record), status=201)
        job = await request.app[JOBS].start("garment_ingest", work)
        job_owns_files = True  # the uploaded files are read, then discarded, by the job
    finally:
        if not job_owns_files:
            form.discard()
    return web.json_response(
        {
            "job": {k: job[k] for k in ("id", "status", "progress")},
            "links": {"job": f"/api/v1/jobs/{job['id']}"},
        },
        status=202,
    )


async def _upload_bytes(form: UploadForm) -> tuple[bytes, Attachment | None]:
    """The uploaded file's bytes and the optional authoring-body part, read from disk."""
    extra = next(iter(form.extras.values()), None)
    attachment = None if extra is None else Attachment(extra.filename, await extra.read())
    return await form.file.read(), attachment


@routes.get("/api/v1/garments/{garment_id}")
async def get_garment(request: web.Request) -> web.Response:
    record = await request.app[GARMENTS].get(request.match_info["garment_id"])
    return web.json_response(public_view(record))


@routes.get("/api/v1/garments/{garment_id}/preview.glb")
async def garment_preview(request: web.Request) -> web.Response:
    garments, twins = request.app[GARMENTS], request.app[TWINS]
    garment = await garments.get(request.match_info["garment_id"])
    twin_id = request.query.get("twin")
    if not twin_id:
        raise SpatialTwinError("missing_twin", "preview needs ?twin=<twin id>", status=400)
    twin = await twins.get(twin_id)
    check_use(twin, request.query.get("channel", "ecommerce"))
    body = await twins.body(twin)
    placed = await garments.place_on(garment, body)
    render = await garments.render_binding(garment)
    glb = await garments._run(
        lambda: garment_on_twin_glb(body, garment, placed, provenance(twin), render)
    )
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


@routes.get("/api/v1/fabrics")
async def list_fabrics(request: web.Request) -> web.Response:
    return web.json_response({"fabrics": await request.app[GARMENTS].list_fabrics()})


@routes.post("/api/v1/fabrics")
async def create_fabric(request: web.Request) -> web.Response:
    record = await request.app[GARMENTS].create_fabric(await json_body(request))
    return web.json_response(record, status=201)


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    """A job's state; a finished job whose result carries warnings (a look that missed a
    quality threshold) shows them beside its status, so `done` is never silent about them."""
    job = await request.app[JOBS].get(request.match_info["job_id"])
    keys = ("id", "kind", "status", "progress", "stage", "result", "error")
    body = {k: job.get(k) for k in keys}
    result = job.get("result")
    body["warnings"] = result.get("warnings", []) if isinstance(result, dict) else []
    return web.json_response(body)


def install(app: web.Application) -> None:
    """Add the routes and a cleanup context that opens the garment services."""

    async def services(app: web.Application) -> AsyncIterator[None]:
        options = IngestOptions.from_settings(app[SETTINGS])
        app[GARMENTS] = GarmentRepository(app[STORE], app[EXECUTOR], options)
        if app[SETTINGS].get("seed"):
            await seed_garments(app[GARMENTS], app[PROJECT_ROOT] / "assets")
        runner = JobRunner(app[STORE])
        await runner.recover()
        app[JOBS] = runner
        yield
        await runner.close()

    app.cleanup_ctx.append(services)
    app.add_routes(routes)
