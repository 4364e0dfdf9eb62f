"""What every route needs, in one table: the roles that may call it, the scope, the tenant rule.

The auth middleware (`server.auth`) looks the matched route up here before its handler runs:

- a route whose roles include `shopper` is open to anonymous callers (a bad token is still
  refused: a client that sends one means it);
- otherwise an anonymous call is **401** `auth_required`, a bad token **401** `token_invalid`,
  an expired one **401** `token_expired`, and a caller of another role **403** `forbidden`
  (`detail.reason`: `role`, with the roles allowed) — an admin passes every role check;
- a token with scopes needs the route's scope (**403** `forbidden`, `detail.reason`: `scope`).

The tenant rule says which records of the tenant the handler's service lets through once it
has read them (a route-level check cannot know whose a garment is before reading it):

- `none`: nothing tenant-specific (liveness, static pages, fabrics);
- `license`: the use passes the access door (a brand's use is held to its licenses and the
  open ones; a look's use by anyone to the look's brand's);
- `visible_twins`: twins listed or read only while a license applies to the caller (owners
  and admins: all);
- `agency_owner`: a new twin's `owner.agency` is the token's tenant;
- `twin_owner`: the twin's agency (or its model, where the route allows a model);
- `brand_own`: a brand sees its own garments and looks and the house's (no brand); another
  brand's answer **404**, as if absent;
- `job_submitter`: a job is read by the tenant that submitted it (404 for others); jobs no
  tenant submitted (level builds) by anyone;
- `agency_self`: the path's agency is the token's tenant (a model reads the uses of their
  own twins there);
- `device_token`: a mirror's WebSocket carries its device token in its hello;
- `session_key`: a live session's access key or share code, unguessable, in the URL.

A route the table does not declare is refused (403 `forbidden`, reason `undeclared`), and
`tests/test_policy.py` walks the app's router and fails on any such route.
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.roles import (
    ADMIN,
    AGENCY,
    BRAND,
    DEVICE,
    MODEL,
    ROLES,
    SHOPPER_ROLE,
    Caller,
)

TENANT_RULES = (
    "none",
    "license",
    "visible_twins",
    "agency_owner",
    "twin_owner",
    "brand_own",
    "job_submitter",
    "agency_self",
    "device_token",
    "session_key",
)


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    scope: str | None = None
    tenant: str = "none"

    @property
    def anonymous(self) -> bool:
        return SHOPPER_ROLE in self.roles


def rule(*roles: str, scope: str | None = None, tenant: str = "none") -> Rule:
    assert tenant in TENANT_RULES, tenant
    assert set(roles) <= set(ROLES), roles
    return Rule(frozenset({*roles, ADMIN}), scope, tenant)


EVERYONE = ROLES  # shoppers (anonymous) and every role
STAFF = (AGENCY, MODEL, BRAND, DEVICE)  # every role with a token

API = "/api/v1"
POLICY: dict[tuple[str, str], Rule] = {
    # liveness, readiness, metrics, pages
    ("GET", "/healthz"): rule(*EVERYONE),
    ("GET", "/readyz"): rule(*EVERYONE),
    ("GET", "/metrics"): rule(*EVERYONE),  # counters only, no tenant's data
    ("GET", "/"): rule(*EVERYONE),
    ("GET", f"{API}/openapi.json"): rule(*EVERYONE),  # the API's description, no tenant's data
    ("GET", f"{API}/docs"): rule(*EVERYONE),
    # twins
    ("GET", f"{API}/twins"): rule(*EVERYONE, scope="twins:read", tenant="visible_twins"),
    ("POST", f"{API}/twins"): rule(AGENCY, scope="twins:write", tenant="agency_owner"),
    ("GET", f"{API}/twins/{{twin_id}}"): rule(
        *EVERYONE, scope="twins:read", tenant="visible_twins"
    ),
    ("GET", f"{API}/twins/{{twin_id}}/body.glb"): rule(
        *EVERYONE, scope="twins:read", tenant="license"
    ),
    ("PATCH", f"{API}/twins/{{twin_id}}/license"): rule(
        AGENCY, MODEL, scope="licenses:write", tenant="twin_owner"
    ),
    ("GET", f"{API}/twins/{{twin_id}}/licenses"): rule(
        AGENCY, MODEL, BRAND, scope="twins:read", tenant="visible_twins"
    ),
    ("POST", f"{API}/twins/{{twin_id}}/licenses"): rule(
        AGENCY, scope="licenses:write", tenant="twin_owner"
    ),
    ("PATCH", f"{API}/twins/{{twin_id}}/licenses/{{license_id}}"): rule(
        AGENCY, scope="licenses:write", tenant="twin_owner"
    ),
    ("POST", f"{API}/twins/{{twin_id}}/licenses/{{license_id}}/consent"): rule(
        MODEL, scope="consent:write", tenant="twin_owner"
    ),
    ("GET", f"{API}/agencies/{{agency_id}}/usage"): rule(
        AGENCY, MODEL, scope="usage:read", tenant="agency_self"
    ),
    # garments and fabrics
    ("GET", f"{API}/garments"): rule(BRAND, DEVICE, scope="garments:read", tenant="brand_own"),
    ("POST", f"{API}/garments"): rule(BRAND, scope="garments:write", tenant="brand_own"),
    ("GET", f"{API}/garments/{{garment_id}}"): rule(
        BRAND, DEVICE, scope="garments:read", tenant="brand_own"
    ),
    ("GET", f"{API}/garments/{{garment_id}}/preview.glb"): rule(
        BRAND, scope="garments:read", tenant="brand_own"
    ),
    ("GET", f"{API}/fabrics"): rule(BRAND, DEVICE, scope="garments:read"),
    ("POST", f"{API}/fabrics"): rule(BRAND, scope="garments:write"),
    # jobs
    ("GET", f"{API}/jobs/{{job_id}}"): rule(*EVERYONE, scope="jobs:read", tenant="job_submitter"),
    # looks, levels, products, stills: what a product page shows, under the license
    ("POST", f"{API}/looks"): rule(BRAND, scope="looks:write", tenant="brand_own"),
    ("GET", f"{API}/looks/{{look_id}}"): rule(*EVERYONE, scope="looks:read", tenant="brand_own"),
    ("GET", f"{API}/looks/{{look_id}}/look.glb"): rule(
        *EVERYONE, scope="looks:read", tenant="brand_own"
    ),
    ("GET", f"{API}/twins/{{twin_id}}/lod/manifest.json"): rule(
        *EVERYONE, scope="twins:read", tenant="license"
    ),
    ("GET", f"{API}/looks/{{look_id}}/lod/manifest.json"): rule(
        *EVERYONE, scope="looks:read", tenant="brand_own"
    ),
    ("GET", f"{API}/lod/{{sha256}}.{{ext}}"): rule(*EVERYONE, tenant="license"),
    ("GET", f"{API}/products/{{sku}}"): rule(*EVERYONE, scope="looks:read", tenant="license"),
    ("POST", f"{API}/looks/{{look_id}}/stills"): rule(
        BRAND, scope="looks:write", tenant="brand_own"
    ),
    ("GET", f"{API}/stills/{{key}}"): rule(*EVERYONE, scope="looks:read", tenant="brand_own"),
    ("GET", f"{API}/stills/{{key}}.{{ext}}"): rule(
        *EVERYONE, scope="looks:read", tenant="brand_own"
    ),
    # mirrors: the device authenticates inside the socket; the rest is keyed by the session
    ("GET", f"{API}/mirror/sessions"): rule(*EVERYONE, scope="mirror", tenant="device_token"),
    ("GET", f"{API}/mirror/watch"): rule(*EVERYONE, tenant="session_key"),
    ("GET", f"{API}/mirror/sessions/{{session_id}}/garments/{{stream}}.glb"): rule(
        *EVERYONE, tenant="session_key"
    ),
}
# Static folders (pages, vendored scripts): open, no tenant data.
STATIC_PREFIXES = ("/web", "/vendor/")
STATIC_RULE = rule(*EVERYONE)


def rule_for(method: str, canonical: str) -> Rule | None:
    """The declared rule of a route (HEAD is GET's), or None when it has none."""
    method = "GET" if method == "HEAD" else method
    found = POLICY.get((method, canonical))
    if found is None and method == "GET" and canonical.startswith(STATIC_PREFIXES):
        return STATIC_RULE
    return found


def undeclared(method: str, path: str) -> SpatialTwinError:
    return SpatialTwinError(
        "forbidden",
        "this route declares no access rule and is closed",
        {"reason": "undeclared", "method": method, "route": path},
        status=403,
    )


def check(rule_: Rule, caller: Caller) -> None:
    """Raise unless `caller` may call a route with `rule_` (roles, then scope)."""
    if caller.is_anonymous and not rule_.anonymous:
        raise SpatialTwinError(
            "auth_required",
            "this request needs a token: Authorization: Bearer <token> (a page: open it "
            "once with ?token=…, from `spatialtwin token issue`)",
            {"roles": sorted(rule_.roles)},
            status=401,
        )
    if not caller.is_admin and caller.role not in rule_.roles:
        raise SpatialTwinError(
            "forbidden",
            f"a {caller.role} may not do this",
            {"reason": "role", "role": caller.role, "allowed": sorted(rule_.roles)},
            status=403,
        )
    if not caller.is_anonymous and not caller.has_scope(rule_.scope):
        raise SpatialTwinError(
            "forbidden",
            f"the token's scopes do not include {rule_.scope}",
            {"reason": "scope", "needed": rule_.scope, "scopes": list(caller.scopes)},
            status=403,
        )
