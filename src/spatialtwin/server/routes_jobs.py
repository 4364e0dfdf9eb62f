"""HTTP route for jobs: `GET /api/v1/jobs/{id}`, a job's status, progress and result."""

from __future__ import annotations

from aiohttp import web

from spatialtwin.errors import NotFoundError
from spatialtwin.server.auth import caller_of
from spatialtwin.server.loading import ready_services
from spatialtwin.services.views import job_view

routes = web.RouteTableDef()


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    """A job's state, with the warnings of its result beside its status (see `job_view`); a
    job someone submitted is read by their tenant only (404 for others, as if absent)."""
    jobs = (await ready_services(request)).jobs
    job = await jobs.status(request.match_info["job_id"])
    submitted = (job.get("payload") or {}).get("caller")
    caller = caller_of(request)
    mine = (
        not isinstance(submitted, dict)
        or not submitted.get("tenant")
        or (submitted.get("role"), submitted.get("tenant")) == (caller.role, caller.tenant)
    )
    if not (mine or caller.is_admin):
        raise NotFoundError("job", str(job.get("id")))
    return web.json_response(job_view(job))
