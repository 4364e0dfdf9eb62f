"""Every route declares what it needs (`server/policy.py`), and the server holds every caller to it.

The routes are read from the app's router, so a route added without a declaration fails here
(and is closed by the server: 403 `undeclared`). Then every route is called as every role —
anonymous (a shopper), agency, model, brand, device (a signed device-role token and a real
mirror's `stm_` device token), admin — and the answer must be what the table says: a role it
does not list gets 401 `auth_required` (anonymous) or 403 `forbidden` with `detail.reason`
`role`; a role it lists gets past the check (whatever the handler then answers for ids that do
not exist). Scopes narrow a token: a token without a route's scope gets 403 `scope`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.rights.roles import ROLES, SHOPPER_ROLE
from spatialtwin.server import policy
from spatialtwin.server.app import create_app
from spatialtwin.server.auth import KEYRING
from spatialtwin.server.keys import SERVICES

TENANTS = {"agency": "North Models", "model": "Mara Test", "brand": "acme", "device": "kadewe"}
STATIC_PREFIXES = policy.STATIC_PREFIXES
POLICY_CODES = {"auth_required"}
POLICY_REASONS = {"role", "scope", "undeclared"}


def registered_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app registers (HEAD is GET's twin)."""
    app = create_app(Path("/nonexistent-never-opened"), seed=False)
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        out.add((route.method, route.resource.canonical))
    return out


ROUTES = registered_routes()
DYNAMIC = sorted(r for r in ROUTES if not r[1].startswith(STATIC_PREFIXES))


def test_every_route_declares_what_it_needs():
    undeclared = sorted(r for r in ROUTES if policy.rule_for(*r) is None)
    assert not undeclared, f"declare these routes in server/policy.py: {undeclared}"
    stale = sorted(set(policy.POLICY) - ROUTES)
    assert not stale, f"server/policy.py declares routes the app does not have: {stale}"
    for key, rule in policy.POLICY.items():
        assert rule.tenant in policy.TENANT_RULES, key
        assert "admin" in rule.roles, key


# A value for each path parameter that the route's pattern accepts.
PARAMS = {
    "sha256": "0" * 64,
    "ext": "glb",
    "stream": "1",
    "session_id": "ms_" + "0" * 24,
    "key": "0" * 64,
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: PARAMS.get(m.group(1), "nope"), path)


@pytest.fixture
async def open_app(tmp_path):
    """The app over an empty store, with a registered mirror; clients without default tokens."""
    app = create_app(tmp_path / "data", seed=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    ring = app[KEYRING]
    tokens = {role: ring.issue(role, TENANTS.get(role)) for role in ROLES if role != SHOPPER_ROLE}
    _, tokens["mirror"] = await app[SERVICES].devices.register("Mirror 1", "kadewe")
    client.tokens = tokens
    try:
        yield client
    finally:
        await client.close()


async def call(client, method: str, path: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method in ("POST", "PATCH"):
        headers["Content-Type"] = "application/json"
    async with client.request(method, path, headers=headers, data=b"{}") as r:
        try:
            body = await r.json(content_type=None)
        except ValueError:
            body = {}
        return r.status, body if isinstance(body, dict) else {}


def refused_by_policy(status: int, body: dict) -> bool:
    error = body.get("error") or {}
    reason = (error.get("detail") or {}).get("reason") if isinstance(error, dict) else None
    return status in (401, 403) and (
        error.get("code") in POLICY_CODES
        or (error.get("code") == "forbidden" and reason in POLICY_REASONS)
    )


CALLERS = ("shopper", "agency", "model", "brand", "device", "mirror", "admin")


async def test_every_route_answers_every_role_as_declared(open_app):
    table = []
    for method, path in DYNAMIC:
        rule = policy.rule_for(method, path)
        for who in CALLERS:
            role = "device" if who == "mirror" else who
            status, body = await call(open_app, method, concrete(path), open_app.tokens.get(who))
            table.append((method, path, who, status))
            if role in rule.roles or role == "admin":
                assert not refused_by_policy(status, body), (method, path, who, status, body)
            elif role == SHOPPER_ROLE:
                assert status == 401, (method, path, who, status, body)
                assert body["error"]["code"] == "auth_required"
                assert set(body["error"]["detail"]["roles"]) == set(rule.roles)
            else:
                assert status == 403, (method, path, who, status, body)
                assert body["error"]["code"] == "forbidden"
                assert body["error"]["detail"]["reason"] == "role"
                assert body["error"]["detail"]["role"] == role
    assert len(table) == len(DYNAMIC) * len(CALLERS)
    print(f"\n{len(DYNAMIC)} routes x {len(CALLERS)} callers = {len(table)} answers checked")


async def test_static_pages_are_open(open_app):
    for path in ("/web/product.html", "/web/merchandiser.html", "/"):
        status, _ = await call(open_app, "GET", path, None)
        assert status == 200, path


async def test_a_scoped_token_reaches_only_its_scopes(open_app):
    ring = open_app.server.app[KEYRING]
    reader = ring.issue("brand", "acme", scopes=["looks:read", "garments:read"])
    status, body = await call(open_app, "GET", "/api/v1/garments", reader)
    assert status == 200 and body == {"garments": []}
    status, body = await call(open_app, "POST", "/api/v1/looks", reader)
    assert status == 403
    assert body["error"]["detail"] == {
        "reason": "scope",
        "needed": "looks:write",
        "scopes": ["garments:read", "looks:read"],
    }
    narrowed_admin = ring.issue("admin", None, scopes=["twins:read"])
    status, body = await call(open_app, "POST", "/api/v1/garments", narrowed_admin)
    assert status == 403 and body["error"]["detail"]["reason"] == "scope"


async def test_bad_headers_are_refused_even_on_open_routes(open_app):
    for header in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer stm_" + "x" * 43):
        async with open_app.get("/api/v1/twins", headers={"Authorization": header}) as r:
            assert r.status == 401, header
            assert (await r.json())["error"]["code"] == "token_invalid"
    async with open_app.get("/no/such/route") as r:  # unmatched paths stay 404
        assert r.status == 404
