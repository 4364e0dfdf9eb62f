"""HTTP routes for looks: a twin dressed in garments, draped as a job, served as GLB.

`POST /api/v1/looks` checks the request at once (404 for an unknown twin or garment, 403/410
when the twin's license refuses the channel, 422 for a bad pose) and answers 202 with the
`look.drape` job; `GET /api/v1/jobs/{id}` reports its progress and, when done, the look record.
Reads pass the access door each time (`?channel=`, default: the channel the look was made for).

A request names garments by id or as `{"sku", "size": "best" | label}` and may set
`"layer_order": "category" | "as_given"` (see `services.looks`). A look that missed a quality
threshold is still `done`; its `warnings` (code, message, detail) are in the look record and
beside the job's status.
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body
from spatialtwin.server.validate import pose_json
from spatialtwin.services.views import job_started, look_view

routes = web.RouteTableDef()


@routes.post("/api/v1/looks")
async def create_look(request: web.Request) -> web.Response:
    payload = await json_body(request)
    if isinstance(payload, dict):
        pose_json(payload.get("pose"))  # a pose part of the wrong JSON type: 400
    looks = (await ready_services(request)).looks
    job = await looks.submit(payload)
    return web.json_response(job_started(job), status=202)


@routes.get("/api/v1/looks/{look_id}")
async def get_look(request: web.Request) -> web.Response:
    looks = (await ready_services(request)).looks
    record = await looks.get_for_use(request.match_info["look_id"], request.query.get("channel"))
    return web.json_response(look_view(record))


@routes.get("/api/v1/looks/{look_id}/look.glb")
async def look_glb(request: web.Request) -> web.Response:
    looks = (await ready_services(request)).looks
    glb = await looks.glb(request.match_info["look_id"], request.query.get("channel"))
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )
