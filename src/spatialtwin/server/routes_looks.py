"""HTTP routes for looks: a twin dressed in garments, draped as a job, served as GLB.

`POST /api/v1/looks` checks the request at once (404 for an unknown twin or garment, 403/410
when the twin's license refuses the channel, 422 for a bad pose) and answers 202 with a job;
`GET /api/v1/jobs/{id}` (the garments module's job runner) reports its progress and, when done,
the look record. Reads check the twin's license each time (`?channel=`, default: the channel
the look was made for).

A request names garments by id or as `{"sku", "size": "best" | label}` and may set
`"layer_order": "category" | "as_given"` (see `store.look_repository`). A look that missed a
quality threshold is still `done`; its `warnings` (code, message, detail) are in the look record
and beside the job's status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from spatialtwin.garment.look import LookOptions
from spatialtwin.server.keys import EXECUTOR, SETTINGS, STORE, TWINS
from spatialtwin.server.requests import json_body
from spatialtwin.server.routes_garments import GARMENTS, JOBS
from spatialtwin.server.validate import pose_json
from spatialtwin.store.look_repository import LookRepository, public_view

LOOKS = web.AppKey("looks", LookRepository)

routes = web.RouteTableDef()


@routes.post("/api/v1/looks")
async def create_look(request: web.Request) -> web.Response:
    looks = request.app[LOOKS]
    payload = await json_body(request)
    if isinstance(payload, dict):
        pose_json(payload.get("pose"))  # a pose part of the wrong JSON type: 400
    checked = await looks.check_request(payload)

    async def work(progress: Any) -> dict[str, Any]:
        return public_view(await looks.create(checked, progress))

    job = await request.app[JOBS].start("look_drape", work)
    return web.json_response(
        {
            "job": {k: job[k] for k in ("id", "status", "progress")},
            "links": {"job": f"/api/v1/jobs/{job['id']}"},
        },
        status=202,
    )


@routes.get("/api/v1/looks/{look_id}")
async def get_look(request: web.Request) -> web.Response:
    record = await request.app[LOOKS].get(
        request.match_info["look_id"], request.query.get("channel")
    )
    return web.json_response(public_view(record))


@routes.get("/api/v1/looks/{look_id}/look.glb")
async def look_glb(request: web.Request) -> web.Response:
    glb = await request.app[LOOKS].glb(request.match_info["look_id"], request.query.get("channel"))
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


def install(app: web.Application) -> None:
    """Add the routes and a cleanup context that opens the looks repository.

    Installed after `routes_garments`, whose services (garments, jobs) it uses.
    """

    async def services(app: web.Application) -> AsyncIterator[None]:
        app[LOOKS] = LookRepository(
            app[STORE],
            app[TWINS],
            app[GARMENTS],
            app[EXECUTOR],
            LookOptions.from_settings(app[SETTINGS]),
        )
        yield

    app.cleanup_ctx.append(services)
    app.add_routes(routes)
