"""What each route takes and answers, in one table beside the policy table (`server.policy`).

`server.openapi` joins this table with the router (method, path template, path parameters)
and the policy (roles, scope, tenant rule, who needs a token) into the OpenAPI 3.1 document;
`tests/test_openapi.py` fails on a registered route that has no entry here, and schemathesis
holds the live server to it. An entry says the request body (a JSON Schema, or `MULTIPART` for
an upload), the query parameters, and each success status with its media type and schema.
Every route also answers its refusals as 4xx `{"error": {"code", "message", "detail"}}`
(`spatialtwin.errors`), which the document adds to every operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]
JSON = "application/json"
GLB = "model/gltf-binary"
MULTIPART = "multipart/form-data"
OBJECT: Schema = {"type": "object"}
ANY_JSON: Schema = {}
BINARY: Schema = {"type": "string", "format": "binary"}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                "message": {"type": "string"},
                "detail": {},
            },
        }
    },
}
JOB_STARTED: Schema = {
    "type": "object",
    "required": ["links"],
    "properties": {"links": {"type": "object", "properties": {"job": {"type": "string"}}}},
}
TWIN: Schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
GARMENT = TWIN
LOOK = TWIN


def listing(key: str) -> Schema:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": OBJECT}},
    }


@dataclass(frozen=True)
class Body:
    """A success answer: its media type(s) and, for JSON, its schema."""

    media: tuple[str, ...] = (JSON,)
    schema: Schema = field(default_factory=lambda: OBJECT)
    description: str = "done"


@dataclass(frozen=True)
class Op:
    summary: str
    responses: dict[int, Body]
    request: Schema | str | None = None  # a JSON Schema, MULTIPART, or no body
    request_required: bool = True
    query: dict[str, Schema] = field(default_factory=dict)
    websocket: bool = False


def ok(schema: Schema = OBJECT) -> dict[int, Body]:
    return {200: Body(schema=schema)}


def binary(*media: str) -> dict[int, Body]:
    return {200: Body(media=media, schema=BINARY)}


STARTED = Body(schema=JOB_STARTED, description="accepted: a job builds it; poll links.job")
NOT_MODIFIED = Body(media=(), description="not modified (If-None-Match)")
CHANNEL = {"channel": {"type": "string", "maxLength": 64}}
# Path parameters the router restricts by pattern; every other one is a plain string.
PATH_PARAMS: dict[str, Schema] = {
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "stream": {"type": "string", "pattern": "^[0-9]{1,5}$"},
}
EXT_BY_ROUTE = {
    "/api/v1/lod/{sha256}.{ext}": ["glb", "bin", "usdz"],
    "/api/v1/stills/{key}.{ext}": ["png", "webp"],
}

API = "/api/v1"
OPS: dict[tuple[str, str], Op] = {
    ("GET", "/healthz"): Op(
        "Liveness: loading, seeding, ok or degraded",
        {
            200: Body(
                schema={
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}, "version": {"type": "string"}},
                }
            )
        },
    ),
    ("GET", "/readyz"): Op("Readiness: the store and the job queue answer", ok()),
    ("GET", "/metrics"): Op(
        "Prometheus counters and histograms", {200: Body(media=("text/plain",), schema={})}
    ),
    ("GET", "/"): Op("The demo page", {200: Body(media=("text/html",), schema={})}),
    ("GET", f"{API}/openapi.json"): Op("This document", ok()),
    ("GET", f"{API}/docs"): Op(
        "The API reference page, rendered from this document",
        {200: Body(media=("text/html",), schema={})},
    ),
    # twins
    ("GET", f"{API}/twins"): Op("The twins the caller may see", ok(listing("twins"))),
    ("POST", f"{API}/twins"): Op(
        "Import a body file (multipart: file, metadata) or ask for a generated twin (JSON)",
        {201: Body(schema=TWIN, description="imported"), 202: STARTED},
        request=MULTIPART,
    ),
    ("GET", f"{API}/twins/{{twin_id}}"): Op("A twin", ok(TWIN)),
    ("GET", f"{API}/twins/{{twin_id}}/body.glb"): Op(
        "The twin's body as GLB, optionally posed",
        binary(GLB),
        query={
            **CHANNEL,
            # JSON; the code takes 16384 characters, but an HTTP request line ends at 8190 bytes
            "pose": {"type": "string", "maxLength": 4096},
            "access": {"type": "string", "maxLength": 256},
        },
    ),
    ("PATCH", f"{API}/twins/{{twin_id}}/license"): Op(
        "Change the twin's default license", ok(TWIN), request=OBJECT
    ),
    ("GET", f"{API}/twins/{{twin_id}}/licenses"): Op("The twin's licenses", ok(ANY_JSON)),
    ("POST", f"{API}/twins/{{twin_id}}/licenses"): Op(
        "Grant a license", {201: Body(schema=OBJECT, description="granted")}, request=OBJECT
    ),
    ("PATCH", f"{API}/twins/{{twin_id}}/licenses/{{license_id}}"): Op(
        "Amend or revoke a license", ok(), request=OBJECT
    ),
    ("POST", f"{API}/twins/{{twin_id}}/licenses/{{license_id}}/consent"): Op(
        "The model's consent to a license", ok(), request=OBJECT
    ),
    ("GET", f"{API}/agencies/{{agency_id}}/usage"): Op(
        "Billed uses of an agency's twins (JSON, or CSV with format=csv)",
        {200: Body(media=(JSON, "text/csv"), schema=ANY_JSON)},
        query={
            # empty: by the Accept header (text/csv, else JSON)
            "format": {"type": "string", "enum": ["", "json", "csv"]},
            "from": {"type": "string", "description": "ISO 8601 date or time"},
            "to": {"type": "string", "description": "ISO 8601 date or time"},
            "group": {"type": "string", "description": "comma-separated: twin,license,channel"},
        },
    ),
    # garments and fabrics
    ("GET", f"{API}/garments"): Op(
        "The garments the caller may see, or one sku's size run",
        ok(listing("garments")),
        query={"sku": {"type": "string", "minLength": 1, "maxLength": 64}},
    ),
    ("POST", f"{API}/garments"): Op(
        "Upload a garment (multipart: file, metadata, optional binding or authoring_body)",
        {201: Body(schema=GARMENT, description="ingested"), 202: STARTED},
        request=MULTIPART,
    ),
    ("GET", f"{API}/garments/{{garment_id}}"): Op("A garment", ok(GARMENT)),
    ("GET", f"{API}/garments/{{garment_id}}/preview.glb"): Op(
        "The garment draped on a twin, as GLB",
        binary(GLB),
        query={**CHANNEL, "twin": {"type": "string", "maxLength": 200}},
    ),
    ("GET", f"{API}/fabrics"): Op("Fabric presets and custom fabrics", ok(listing("fabrics"))),
    ("POST", f"{API}/fabrics"): Op(
        "Add a custom fabric",
        {201: Body(schema=OBJECT, description="created")},
        request={
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
        },
    ),
    # jobs
    ("GET", f"{API}/jobs/{{job_id}}"): Op("A job's state and progress", ok()),
    # looks, levels, products, stills
    ("POST", f"{API}/looks"): Op(
        "Dress a twin in garments (draped as a job)", {202: STARTED}, request=OBJECT
    ),
    ("GET", f"{API}/looks/{{look_id}}"): Op("A look", ok(LOOK), query=CHANNEL),
    ("GET", f"{API}/looks/{{look_id}}/look.glb"): Op("The look as GLB", binary(GLB), query=CHANNEL),
    ("GET", f"{API}/twins/{{twin_id}}/lod/manifest.json"): Op(
        "The twin's level manifest (202 while it is built)",
        {200: Body(), 202: STARTED, 304: NOT_MODIFIED},
        query=CHANNEL,
    ),
    ("GET", f"{API}/looks/{{look_id}}/lod/manifest.json"): Op(
        "The look's level manifest (202 while it is built)",
        {200: Body(), 202: STARTED, 304: NOT_MODIFIED},
        query=CHANNEL,
    ),
    ("GET", f"{API}/lod/{{sha256}}.{{ext}}"): Op(
        "An immutable level file",
        {
            200: Body(media=(GLB, "application/octet-stream", "model/vnd.usdz+zip"), schema=BINARY),
            304: NOT_MODIFIED,
        },
    ),
    ("GET", f"{API}/products/{{sku}}"): Op(
        "A product: a garment's size run on licensed twins (202 while built)",
        {200: Body(), 202: STARTED},
        query=CHANNEL,
    ),
    ("POST", f"{API}/looks/{{look_id}}/stills"): Op(
        "A studio still of a look (202 while rendered)",
        {200: Body(), 202: STARTED},
        request=OBJECT,
        request_required=False,
    ),
    ("GET", f"{API}/stills/{{key}}"): Op("A still's record", ok()),
    ("GET", f"{API}/stills/{{key}}.{{ext}}"): Op(
        "A still's image", binary("image/png", "image/webp")
    ),
    # mirrors
    ("GET", f"{API}/mirror/sessions"): Op(
        "A mirror's WebSocket (docs/mirror-protocol.md)",
        {101: Body(media=(), description="switching to WebSocket")},
        websocket=True,
    ),
    ("GET", f"{API}/mirror/watch"): Op(
        "A watcher's WebSocket on a live session",
        {101: Body(media=(), description="switching to WebSocket")},
        websocket=True,
    ),
    ("GET", f"{API}/mirror/sessions/{{session_id}}/garments/{{stream}}.glb"): Op(
        "A live session's garment mesh",
        binary(GLB),
        query={"access": {"type": "string", "maxLength": 256}},
    ),
}
