"""HTTP routes for a twin's licenses and its model's consent (the access door decides who).

- `GET /api/v1/twins/{id}/licenses`: the first license (with the twin's consent) and the brand
  licenses the caller may read (owners and admins: all; a brand: its own);
- `POST /api/v1/twins/{id}/licenses`: the agency grants a brand license (201), unusable until
  the model consents;
- `PATCH /api/v1/twins/{id}/licenses/{license_id}`: the agency amends it (the model consents
  again) or ends it (`{"ended": true}`, final);
- `POST /api/v1/twins/{id}/licenses/{license_id}/consent`: `{"consent": true|false}`, by the
  model: recorded with the time and who recorded it;
- `GET /api/v1/agencies/{agency}/usage?from=&to=&group=twin,license,channel[&format=csv]`: the
  agency's usage events added up, with fee totals, as JSON or CSV (`services.metering`).
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.roles import AGENCY, MODEL
from spatialtwin.server.auth import caller_of
from spatialtwin.server.loading import ready_services
from spatialtwin.server.requests import json_body
from spatialtwin.services.access import forbidden
from spatialtwin.services.metering import report_csv, report_group, report_window

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


@routes.get("/api/v1/agencies/{agency_id}/usage")
async def agency_usage(request: web.Request) -> web.Response:
    agency = request.match_info["agency_id"]
    caller = caller_of(request)
    model = caller.tenant if caller.role == MODEL else None  # a model: their own twins' uses
    if not (caller.is_admin or model or (caller.role == AGENCY and caller.tenant == agency)):
        raise forbidden("not_owner", "an agency reads its own usage", {"agency": agency[:200]})
    query = request.query
    start, end = report_window(query.get("from"), query.get("to"))
    group = report_group(query.get("group"))
    fmt = query.get("format") or (
        "csv" if "text/csv" in request.headers.get("Accept", "") else "json"
    )
    if fmt not in ("json", "csv"):
        raise SpatialTwinError("invalid_usage_query", "format is json or csv", status=422)
    metering = (await ready_services(request)).access.metering
    report = await metering.report(agency, start, end, group, model=model)
    if fmt == "csv":
        return web.Response(text=report_csv(report), content_type="text/csv")
    return web.json_response(report)
