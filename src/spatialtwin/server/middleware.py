"""Every error leaves the server as JSON `{"error": {"code", "message", "detail"}}`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.logs import log_event

log = logging.getLogger("spatialtwin.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, detail: object = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return web.json_response({"error": body}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    try:
        response = await handler(request)
    except SpatialTwinError as exc:
        response = web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "http_error"
        )
        message = exc.reason if exc.status != 404 else f"no route for {request.path}"
        response = error_response(exc.status, code, message)
    except json.JSONDecodeError as exc:
        response = error_response(
            400,
            "invalid_json",
            f"request body is not JSON: {exc.msg}",
            {"line": exc.lineno, "column": exc.colno},
        )
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        response = error_response(500, "internal_error", "the server failed; see its log")
    log_event(
        log,
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round((time.perf_counter() - start) * 1000, 2),
    )
    return response
