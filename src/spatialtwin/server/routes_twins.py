"""HTTP routes for twins: parse and check the request, call one service, shape the reply.

`POST /api/v1/twins` with measurements answers 202 with the `twin.generate` job (the template
fit takes seconds); a multipart body import answers 201 with the twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.license import Rights
from spatialtwin.server.keys import SETTINGS
from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body, upload_form
from spatialtwin.server.routes_mirror import body_access
from spatialtwin.server.validate import joint_map as checked_joint_map
from spatialtwin.server.validate import optional_string, parse_json, pose_json
from spatialtwin.services.views import job_started, twin_view

if TYPE_CHECKING:
    from spatialtwin.body.pose import Pose
    from spatialtwin.services.twins import TwinService

routes = web.RouteTableDef()
MAX_POSE_CHARS = 16_384  # every joint's quaternion in full is ~4 kB


@routes.get("/api/v1/twins")
async def list_twins(request: web.Request) -> web.Response:
    services = await ready_services(request)
    records = services.access.visible_twins(await services.twins.list())
    return web.json_response({"twins": [twin_view(r) for r in records]})


@routes.post("/api/v1/twins")
async def create_twin(request: web.Request) -> web.Response:
    twins = (await ready_services(request)).twins
    if not request.content_type.startswith("multipart/"):
        job = await twins.request_generate(await json_body(request))
        twin_link = f"/api/v1/twins/{job['payload']['twin_id']}"
        return web.json_response(job_started(job, twin=twin_link), status=202)
    async with upload_form(request, request.app[SETTINGS]["max_upload_bytes"]) as form:
        meta = form.metadata
        rights = Rights.from_json(meta)
        units = optional_string(meta.get("units"), "units", 16) or "auto"
        joint_map = checked_joint_map(meta.get("joint_map"))
        name = optional_string(meta.get("name"), "name", 2000)  # stored cut to 200
        filename, data = form.file.filename, await form.file.read()
    record = await twins.import_file(name, data, filename, rights, units=units, joint_map=joint_map)
    return web.json_response(twin_view(record), status=201)


@routes.get("/api/v1/twins/{twin_id}")
async def get_twin(request: web.Request) -> web.Response:
    services = await ready_services(request)
    record = await services.twins.get(request.match_info["twin_id"])
    return web.json_response(twin_view(services.access.require_twin_visible(record)))


def _pose_param(request: web.Request, twins: TwinService) -> Pose | None:
    raw = request.query.get("pose")
    if not raw:
        return None
    if len(raw) > MAX_POSE_CHARS:
        raise SpatialTwinError(
            "invalid_pose", f"pose is limited to {MAX_POSE_CHARS} characters", status=414
        )
    return twins.parse_pose(pose_json(parse_json(raw, "pose", "invalid_pose")))


@routes.get("/api/v1/twins/{twin_id}/body.glb")
async def twin_body_glb(request: web.Request) -> web.Response:
    channel = request.query.get("channel", "ecommerce")
    if "access" in request.query:  # a mirror page's body, with its session's access key
        channel = await body_access(request, request.match_info["twin_id"])
    twins = (await ready_services(request)).twins
    glb = await twins.body_glb(request.match_info["twin_id"], channel, _pose_param(request, twins))
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


@routes.patch("/api/v1/twins/{twin_id}/license")
async def update_license(request: web.Request) -> web.Response:
    twins = (await ready_services(request)).twins
    record = await twins.update_license(request.match_info["twin_id"], await json_body(request))
    return web.json_response(twin_view(record))
