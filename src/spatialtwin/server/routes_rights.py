"""HTTP routes for a twin's licenses and its model's consent (the access door decides who).

- `GET /api/v1/twins/{id}/licenses`: the first license (with the twin's consent) and the brand
  licenses the caller may read (owners and admins: all; a brand: its own);
- `POST /api/v1/twins/{id}/licenses`: the agency grants a brand license (201), unusable until
  the model consents;
- `PATCH /api/v1/twins/{id}/licenses/{license_id}`: the agency amends it (the model consents
  again) or ends it (`{"ended": true}`, final);
- `POST /api/v1/twins/{id}/licenses/{license_id}/consent`: `{"consent": true|false}`, by the
  model: recorded with the time and who recorded it.
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body

routes = web.RouteTableDef()
LICENSES = "/api/v1/twins/{twin_id}/licenses"


@routes.get(LICENSES)
async def list_licenses(request: web.Request) -> web.Response:
    access = (await ready_services(request)).access
    return web.json_response(await access.licenses(request.match_info["twin_id"]))


@routes.post(LICENSES)
async def grant_license(request: web.Request) -> web.Response:
    access = (await ready_services(request)).access
    granted = await access.grant_license(request.match_info["twin_id"], await json_body(request))
    return web.json_response(granted, status=201)


@routes.patch(LICENSES + "/{license_id}")
async def amend_license(request: web.Request) -> web.Response:
    access = (await ready_services(request)).access
    info = request.match_info
    amended = await access.amend_license(
        info["twin_id"], info["license_id"], await json_body(request)
    )
    return web.json_response(amended)


@routes.post(LICENSES + "/{license_id}/consent")
async def consent(request: web.Request) -> web.Response:
    access = (await ready_services(request)).access
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"consent"}:
        raise SpatialTwinError(
            "invalid_consent", 'send {"consent": true} or {"consent": false}', status=422
        )
    info = request.match_info
    recorded = await access.consent(info["twin_id"], info["license_id"], body["consent"])
    return web.json_response(recorded)
