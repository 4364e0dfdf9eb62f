"""The OpenAPI 3.1 document, made from the running app's routes, never written beside them.

Three sources, joined per route: the aiohttp router (method, path template, path parameters),
the policy table (`server.policy`: roles, scope, tenant rule; a route open to shoppers takes a
token optionally, every other one needs the bearer scheme) and the schema table
(`server.api_schema`: bodies, query, success answers). Every operation also documents the
error shape for 4xx and for 503 (a store briefly away). Static folders are left out (files,
not an API). `/api/v1/docs` renders the document with swagger-ui from `node_modules` (served
under `/vendor/swagger-ui/`, no CDN).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from spatialtwin import __version__
from spatialtwin.server import api_schema, policy
from spatialtwin.server.api_schema import ERROR, MULTIPART, OPS, PATH_PARAMS, Op

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def documented_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, canonical path) of every API route of the app (no HEAD, no static folder)."""
    out: list[tuple[str, str]] = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        if resource.canonical.startswith(policy.STATIC_PREFIXES):
            continue
        key = (route.method, resource.canonical)
        if key not in out:
            out.append(key)
    return out


def _parameters(path: str, op: Op) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _PARAM.findall(path):
        schema = PATH_PARAMS.get(name, {"type": "string", "minLength": 1})
        if name == "ext":
            schema = {"type": "string", "enum": api_schema.EXT_BY_ROUTE[path]}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema in op.query.items():
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _request_body(op: Op) -> dict[str, Any] | None:
    if op.request is None:
        return None
    if op.request == MULTIPART:
        content = {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                    },
                }
            }
        }
        return {"required": True, "content": content}
    assert isinstance(op.request, dict)
    return {
        "required": op.request_required,
        "content": {"application/json": {"schema": op.request}},
    }


def _responses(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, body in sorted(op.responses.items()):
        answer: dict[str, Any] = {"description": body.description}
        if body.media:
            answer["content"] = {media: {"schema": body.schema} for media in body.media}
        out[str(status)] = answer
    error = {"content": {"application/json": {"schema": ERROR_REF}}}
    out["4XX"] = {"description": "refused: the error's code says why", **error}
    out["503"] = {"description": "the store or the services are briefly away", **error}
    return out


def _operation(method: str, path: str, op: Op) -> dict[str, Any]:
    rule = policy.rule_for(method, path)
    assert rule is not None, (method, path)
    roles = sorted(rule.roles)
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
        "summary": op.summary,
        "description": (
            f"Roles: {', '.join(roles)}."
            + (f" Scope: `{rule.scope}`." if rule.scope else "")
            + f" Tenant rule: `{rule.tenant}`."
        ),
        "tags": [path.split("/")[3] if path.startswith(policy.API + "/") else "service"],
        "parameters": _parameters(path, op),
        "responses": _responses(op),
        "security": [{}, {"bearer": []}] if rule.anonymous else [{"bearer": []}],
        "x-roles": roles,
        "x-tenant-rule": rule.tenant,
    }
    if rule.scope:
        operation["x-scope"] = rule.scope
    if op.websocket:
        operation["x-websocket"] = True
    body = _request_body(op)
    if body is not None:
        operation["requestBody"] = body
    return operation


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`; KeyError names a route with no `api_schema` entry."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in documented_routes(app):
        op = OPS[(method, path)]
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SpatialTwin API",
            "version": __version__,
            "description": "3D try-on: twins, garments, looks, levels, products and mirrors. "
            'Every refusal is 4xx `{"error": {"code", "message", "detail"}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (EdDSA, Ed25519), or a mirror's stm_ device token",
                    "description": "`spatialtwin token issue`; see docs/rights.md",
                }
            },
        },
    }


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>SpatialTwin API</title>
<link rel="stylesheet" href="/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "OPENAPI_PATH", dom_id: "#docs", deepLinking: true});
</script>
</body>
</html>
""".replace("OPENAPI_PATH", OPENAPI_PATH)


def install(app: web.Application) -> None:
    """Add the document's and the docs page's routes (made once, on the first request)."""
    made: list[dict[str, Any]] = []

    async def openapi_json(request: web.Request) -> web.Response:
        if not made:
            made.append(document(request.app))
        return web.json_response(made[0], headers={"Cache-Control": "no-cache"})

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_HTML, content_type="text/html")

    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs)
