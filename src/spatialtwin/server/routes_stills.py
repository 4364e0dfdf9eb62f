"""HTTP routes for studio stills of a look (`services.stills`).

`POST /api/v1/looks/{id}/stills` with a JSON request (pose, camera, lights, background,
size_px, format, label; all optional, checked before any work: 422 `invalid_still`) answers
**200** with the still when one of exactly these inputs exists, else **202** with the
`still.render` job and the URL the still will have (`links.still`). `GET
/api/v1/stills/{key}` is the still's record, `GET /api/v1/stills/{key}.png|.webp` its file:
strong `ETag` (the key: the same inputs always give the same bytes), `304` on a match,
`no-cache` so a browser asks again (and learns of a revocation) instead of keeping it. Each
read passes the access door for the look's twin (403/410 once it may not be used).
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body
from spatialtwin.services.views import API, job_started, still_url, still_view

routes = web.RouteTableDef()
KEY = "{key:[0-9a-f]{64}}"
RETRY_AFTER_S = 2


@routes.post("/api/v1/looks/{look_id}/stills")
async def create_still(request: web.Request) -> web.Response:
    payload = await json_body(request) if request.can_read_body else None
    stills = (await ready_services(request)).stills
    answer = await stills.request(request.match_info["look_id"], payload)
    if answer.still is not None:
        return web.json_response(answer.still)
    assert answer.job is not None
    fmt = "webp" if isinstance(payload, dict) and payload.get("format") == "webp" else "png"
    body = {
        **job_started(
            answer.job, still=f"{API}/stills/{answer.key}", file=still_url(answer.key, fmt)
        ),
        "key": answer.key,
    }
    return web.json_response(
        body,
        status=202,
        headers={"Location": body["links"]["job"], "Retry-After": str(RETRY_AFTER_S)},
    )


@routes.get(f"/api/v1/stills/{KEY}")
async def get_still(request: web.Request) -> web.Response:
    stills = (await ready_services(request)).stills
    record = await stills.get(request.match_info["key"], request.query.get("channel"))
    return web.json_response(still_view(record))


@routes.get(f"/api/v1/stills/{KEY}" + ".{ext:(png|webp)}")
async def still_file(request: web.Request) -> web.Response:
    stills = (await ready_services(request)).stills
    key = request.match_info["key"]
    data, media = await stills.file(key, request.match_info["ext"], request.query.get("channel"))
    headers = {"ETag": f'"{key}"', "Cache-Control": "private, no-cache"}
    if request.if_none_match and any(t.value == key for t in request.if_none_match):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type=media, headers=headers)
