"""HTTP routes for twins: parse, call the repository, shape the response."""

from __future__ import annotations

import json

from aiohttp import web

from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.license import Rights
from spatialtwin.server.keys import SETTINGS, TWINS
from spatialtwin.server.requests import json_body, multipart_upload
from spatialtwin.store.twin_repository import public_view

routes = web.RouteTableDef()


@routes.get("/api/v1/twins")
async def list_twins(request: web.Request) -> web.Response:
    records = await request.app[TWINS].list()
    return web.json_response({"twins": [public_view(r) for r in records]})


@routes.post("/api/v1/twins")
async def create_twin(request: web.Request) -> web.Response:
    twins = request.app[TWINS]
    if request.content_type.startswith("multipart/"):
        filename, data, meta = await multipart_upload(
            request, request.app[SETTINGS]["max_upload_bytes"]
        )
        from spatialtwin.body.importer import import_body

        rights = Rights.from_json(meta)
        units = str(meta.get("units", "auto"))
        joint_map = meta.get("joint_map")
        imported = await twins._run(
            lambda: import_body(data, filename=filename, units=units, joint_map=joint_map)
        )
        record = await twins.create_from_body(
            meta.get("name"),
            imported.body,
            rights,
            {"kind": "import", "filename": filename, **imported.report.to_json()},
        )
    else:
        record = await twins.create_from_measurements(await json_body(request))
    return web.json_response(public_view(record), status=201)


@routes.get("/api/v1/twins/{twin_id}")
async def get_twin(request: web.Request) -> web.Response:
    record = await request.app[TWINS].get(request.match_info["twin_id"])
    return web.json_response(public_view(record))


def _pose_param(request: web.Request) -> Pose | None:
    raw = request.query.get("pose")
    if not raw:
        return None
    try:
        return Pose.from_json(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise SpatialTwinError("invalid_pose", f"pose is not JSON: {exc.msg}") from exc
    except PoseError as exc:
        raise SpatialTwinError("invalid_pose", str(exc), status=422) from exc


@routes.get("/api/v1/twins/{twin_id}/body.glb")
async def twin_body_glb(request: web.Request) -> web.Response:
    channel = request.query.get("channel", "ecommerce")
    glb = await request.app[TWINS].body_glb(
        request.match_info["twin_id"], channel, _pose_param(request)
    )
    return web.Response(
        body=glb, content_type="model/gltf-binary", headers={"Cache-Control": "private, no-store"}
    )


@routes.patch("/api/v1/twins/{twin_id}/license")
async def update_license(request: web.Request) -> web.Response:
    record = await request.app[TWINS].update_license(
        request.match_info["twin_id"], await json_body(request)
    )
    return web.json_response(public_view(record))
