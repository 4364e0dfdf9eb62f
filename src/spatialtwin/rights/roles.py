"""Who is asking: the roles of the rights model and the caller a request or job acts as.

A twin is a person's likeness, so every request is made by someone the server can name:

- `admin` (tenant optional: an operator): everything, still bound by licenses and revocation;
- `agency` (tenant: the agency's name, as in a twin's `owner.agency`): makes twins of its
  models, grants, amends and ends their licenses, reads their usage;
- `model` (tenant: the model's name, as in a twin's `owner.model`): sees their own twins'
  licenses and uses, consents, revokes;
- `brand` (tenant: the brand's id): uploads garments, drapes looks on twins licensed to it,
  sees only its own garments and looks;
- `device` (tenant: the store a mirror stands in): runs mirror sessions, reads garments;
- `shopper` (anonymous, no token): reads what a license makes public.

`SYSTEM` is what jobs, the command line and seeding act as: no tenant limits, but the licenses
still decide every use of a twin (nothing acts outside a license, whoever it is).

Scopes narrow a token: a token with scopes may call only the routes whose scope it names
(`garments:write`, …); a token without scopes has its role's full reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from spatialtwin.errors import SpatialTwinError

ADMIN, AGENCY, MODEL, BRAND, DEVICE, SHOPPER_ROLE = (
    "admin",
    "agency",
    "model",
    "brand",
    "device",
    "shopper",
)
SYSTEM_ROLE = "system"
ROLES = (ADMIN, AGENCY, MODEL, BRAND, DEVICE, SHOPPER_ROLE)
TOKEN_ROLES = (ADMIN, AGENCY, MODEL, BRAND, DEVICE)  # a shopper carries no token
TENANT_REQUIRED = frozenset({AGENCY, MODEL, BRAND, DEVICE})
SCOPES = (
    "twins:read",
    "twins:write",
    "licenses:write",
    "consent:write",
    "garments:read",
    "garments:write",
    "looks:read",
    "looks:write",
    "usage:read",
    "jobs:read",
    "mirror",
)
MAX_TENANT_CHARS = 200
_TENANT = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def check_role(value: Any, *, token: bool = True) -> str:
    allowed = TOKEN_ROLES if token else ROLES
    if value not in allowed:
        raise SpatialTwinError(
            "invalid_role",
            f"role must be one of {', '.join(allowed)}",
            {"role": str(value)[:40], "allowed": list(allowed)},
            status=422,
        )
    return str(value)


def check_tenant(role: str, value: Any) -> str | None:
    """The tenant a token of `role` carries: required for agency, model, brand and device."""
    if value is None or value == "":
        if role in TENANT_REQUIRED:
            raise SpatialTwinError(
                "invalid_tenant",
                f"a {role} token needs a tenant (the {_TENANT_OF[role]})",
                {"role": role},
                status=422,
            )
        return None
    if not isinstance(value, str) or not _TENANT.match(value) or value != value.strip():
        raise SpatialTwinError(
            "invalid_tenant",
            f"tenant must be 1–{MAX_TENANT_CHARS} printable characters, no outer spaces",
            {"role": role},
            status=422,
        )
    return value


def check_scopes(values: Any) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list | tuple) or any(v not in SCOPES for v in values):
        raise SpatialTwinError(
            "invalid_scopes",
            f"scopes must be a list of {', '.join(SCOPES)}",
            {"allowed": list(SCOPES)},
            status=422,
        )
    return tuple(sorted(set(values), key=SCOPES.index))


_TENANT_OF = {
    AGENCY: "agency's name, as in its twins' owner.agency",
    MODEL: "model's name, as in their twins' owner.model",
    BRAND: "brand's id",
    DEVICE: "store the mirror stands in",
}


@dataclass(frozen=True)
class Caller:
    """Who a request or job acts as; `scopes` empty = the role's full reach."""

    role: str
    tenant: str | None = None
    subject: str = ""
    scopes: tuple[str, ...] = field(default=())
    token_id: str | None = None
    key_id: str | None = None
    expires_s: float | None = None  # the token's `exp` (Unix seconds)

    @property
    def is_admin(self) -> bool:
        return self.role in (ADMIN, SYSTEM_ROLE)

    @property
    def is_anonymous(self) -> bool:
        return self.role == SHOPPER_ROLE

    def has_scope(self, scope: str | None) -> bool:
        return scope is None or not self.scopes or scope in self.scopes

    def brand(self) -> str | None:
        """The brand this caller acts for (the licensee its uses are billed to), if any."""
        return self.tenant if self.role == BRAND else None

    def owns_twin(self, twin: dict[str, Any]) -> bool:
        """Whether this caller is the twin's agency or its model (they see and control it)."""
        owner = twin.get("owner") or {}
        if self.role == AGENCY:
            return self.tenant is not None and owner.get("agency") == self.tenant
        if self.role == MODEL:
            return self.tenant is not None and owner.get("model") == self.tenant
        return False

    def to_json(self) -> dict[str, Any]:
        """What a job payload keeps, so the job acts as the one who asked for it."""
        return {"role": self.role, "tenant": self.tenant, "subject": self.subject}

    @classmethod
    def from_json(cls, data: Any) -> Caller:
        """A caller a job payload kept; anything unreadable acts as nobody (a shopper)."""
        if not isinstance(data, dict) or data.get("role") not in (*ROLES, SYSTEM_ROLE):
            return SHOPPER
        tenant = data.get("tenant")
        return cls(
            str(data["role"]),
            tenant if isinstance(tenant, str) else None,
            str(data.get("subject") or ""),
        )


SHOPPER = Caller(SHOPPER_ROLE, None, "anonymous")
SYSTEM = Caller(SYSTEM_ROLE, None, "system")
