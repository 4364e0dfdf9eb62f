"""HTTP route for jobs: `GET /api/v1/jobs/{id}`, a job's status, progress and result."""

from __future__ import annotations

from aiohttp import web

from spatialtwin.server.loading import ready_services
from spatialtwin.services.views import job_view

routes = web.RouteTableDef()


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    """A job's state, with the warnings of its result beside its status (see `job_view`)."""
    jobs = (await ready_services(request)).jobs
    return web.json_response(job_view(await jobs.status(request.match_info["job_id"])))
