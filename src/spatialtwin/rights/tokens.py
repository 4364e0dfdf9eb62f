"""Signed tokens: who a caller is, as a JWT signed with Ed25519 (EdDSA), named by key id.

A token is a JWT (RFC 7519) signed with EdDSA over Ed25519 (RFC 8037), `kid` in its header
naming the key that signed it, so keys can rotate: a new key signs, the old public keys still
verify until an operator removes them. Claims:

    {"iss": "spatialtwin", "sub": "...", "role": "brand", "tenant": "acme",
     "scopes": ["garments:write"], "iat": 1767225600, "exp": 1767312000, "jti": "..."}

Only EdDSA is accepted on verification (never `none`, never an HMAC with a public key as the
secret: the algorithm list is fixed), `exp` and `iat` are required, and 30 s of clock skew
are allowed. Every failure is a 401 that says whether the token was expired or otherwise bad,
never which part of it was wrong.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.roles import Caller, check_role, check_scopes, check_tenant

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# PyJWT and cryptography are imported where a key or token is first handled, not with this
# module: together ~0.1 s, which a server would otherwise spend before it listens.

ALGORITHM = "EdDSA"
ISSUER = "spatialtwin"
LEEWAY_S = 30
DEFAULT_TTL_S = 24 * 3600
MAX_TTL_S = 366 * 24 * 3600
MAX_TOKEN_CHARS = 4096  # an Ed25519 JWT with every scope is ~400 characters


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: bytes

    def private_key(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(self.private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"key {self.kid} is not an Ed25519 key")
        return key


def new_key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a fresh Ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def public_key(pem: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def new_key_id() -> str:
    """`k` + the UTC date + 8 random hex digits: sortable by age, never reused."""
    return time.strftime("k%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(4)


def check_ttl(ttl_s: Any) -> int:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 0 < ttl_s <= MAX_TTL_S:
        raise SpatialTwinError(
            "invalid_ttl",
            f"a token lives 1 s to {MAX_TTL_S // 86400} days",
            {"ttl_s": str(ttl_s)[:40], "max_s": MAX_TTL_S},
            status=422,
        )
    return ttl_s


def issue(
    key: SigningKey,
    role: str,
    tenant: str | None,
    *,
    subject: str | None = None,
    scopes: Any = None,
    ttl_s: int = DEFAULT_TTL_S,
    now_s: float | None = None,
) -> str:
    """A signed token for `role` at `tenant`, valid for `ttl_s` seconds from `now_s`."""
    role = check_role(role)
    tenant = check_tenant(role, tenant)
    scope_list = check_scopes(scopes)
    ttl_s = check_ttl(ttl_s)
    issued = int(now_s if now_s is not None else time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject or f"{role}:{tenant or 'operator'}",
        "role": role,
        "tenant": tenant,
        "scopes": list(scope_list),
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": secrets.token_hex(8),
    }
    import jwt

    return jwt.encode(claims, key.private_key(), algorithm=ALGORITHM, headers={"kid": key.kid})


def _invalid(reason: str = "") -> SpatialTwinError:
    return SpatialTwinError(
        "token_invalid",
        "the token is not valid (malformed, unknown key, bad signature or claims)",
        {"reason": reason} if reason else None,
        status=401,
    )


def key_id_of(token: str) -> str:
    """The `kid` a token's header names (401 when there is none)."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _invalid("malformed") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or header.get("alg") != ALGORITHM:
        raise _invalid("header")
    return kid


def verify(token: str, public_keys: dict[str, Ed25519PublicKey]) -> Caller:
    """The caller a token names, if one of `public_keys` (kid -> key) signed it and it is in
    date; 401 `token_expired` or `token_invalid` otherwise."""
    import jwt

    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise _invalid("length")
    kid = key_id_of(token)
    key = public_keys.get(kid)
    if key is None:
        raise _invalid("unknown key")
    options = {"require": ["exp", "iat", "role", "sub"], "verify_iat": False}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options=options,
        )
    except jwt.ExpiredSignatureError as exc:
        raise SpatialTwinError(
            "token_expired", "the token has expired; ask for a new one", status=401
        ) from exc
    except jwt.PyJWTError as exc:
        raise _invalid(type(exc).__name__) from exc
    try:
        role = check_role(claims.get("role"))
        tenant = check_tenant(role, claims.get("tenant"))
        scopes = check_scopes(claims.get("scopes") or [])
    except SpatialTwinError as exc:
        raise _invalid("claims") from exc
    return Caller(
        role,
        tenant,
        str(claims["sub"])[:200],
        scopes,
        token_id=str(claims.get("jti") or "")[:64] or None,
        key_id=kid,
        expires_s=float(claims["exp"]) + LEEWAY_S,
    )
