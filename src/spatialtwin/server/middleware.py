"""Every error leaves the server as JSON `{"error": {"code", "message", "detail"}}`.

`json_errors` translates what a handler raises (`SpatialTwinError`, aiohttp's HTTP errors,
anything else as a logged 500). An error body is strict JSON: a non-finite number in a detail
is sent as a string ("NaN"), never as a bare `NaN` a JSON parser refuses. Errors aiohttp's
HTTP layer answers itself, before any handler or middleware runs (a malformed request line,
a header too long, a bad `Content-Length`), are made JSON by `install_http_layer_errors`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from spatialtwin.errors import SpatialTwinError
from spatialtwin.server.logs import log_event

log = logging.getLogger("spatialtwin.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
}


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by its name, so it serialises as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def strict_dumps(value: Any) -> str:
    """JSON text with no NaN/Infinity tokens (they are sent as strings); anything else that
    is not JSON-serialisable is sent as its `str`."""
    try:
        return json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_finite(value), allow_nan=False, default=str)


def error_body(code: str, message: str, detail: object = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return {"error": body}


def error_response(status: int, code: str, message: str, detail: object = None) -> web.Response:
    response = web.json_response(
        error_body(code, message, detail), status=status, dumps=strict_dumps
    )
    if status == 413:
        # The client may still be sending the body refused: do not read it to keep the
        # connection alive, close it.
        response.force_close()
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    try:
        response = await handler(request)
    except SpatialTwinError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.detail)
        retry_after_s = getattr(exc, "retry_after_s", None)
        if retry_after_s is not None:  # a store that is briefly away (503)
            response.headers["Retry-After"] = str(retry_after_s)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no route for {request.path}"
        response = error_response(exc.status, code, message)
        if "Allow" in exc.headers:  # a 405 lists the route's methods (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
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


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own protocol errors as JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses if already sent
        if status >= 500:
            code, text, detail = "internal_error", "the server failed; see its log", None
        else:
            code = HTTP_CODES.get(status, "http_error")
            try:
                text = HTTPStatus(status).phrase
            except ValueError:
                text = code
            detail = {"reason": (message or "")[:200]} if message else None
        response = error_response(status, code, text, detail)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = JsonErrorRequestHandler
        return handler


def install_http_layer_errors(app: web.Application) -> None:
    """Make the connection handlers of `app`'s server answer protocol errors as JSON.

    aiohttp answers a request it cannot parse with plain text from `RequestHandler.
    handle_error`, outside every middleware, and offers no hook for it; the server the app
    makes is given a subclass that overrides that one method (and nothing else).
    """
    make_handler = app._make_handler

    def make_json_error_handler(**kwargs: Any) -> web.Server:
        server = make_handler(**kwargs)
        server.__class__ = _JsonErrorServer
        return server

    app._make_handler = make_json_error_handler  # type: ignore[method-assign]
