"""Fuzzing bearer tokens (`rights.tokens.verify`): whatever an `Authorization` header carries
is a caller or a 401.

Seeds are real tokens the project issues (admin, brand with scopes, agency) signed by a fresh
Ed25519 key. Mutations: byte edits of the compact form, a segment replaced or dropped, the
header edited (kid of another type, `alg` none or an HMAC, extra fields) and, the strongest
case, hostile claims (role, tenant, scopes, exp, sub of every JSON type) signed with the real
key, so only the claim checks stand between them and a caller.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import jwt
from hypothesis import given
from hypothesis import strategies as st

from spatialtwin.rights.roles import Caller
from spatialtwin.rights.tokens import SigningKey, issue, new_key_pair, public_key, verify
from tests.fuzz_strategies import (
    FuzzInput,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    hostile_values,
    json_paths,
    mutated_bytes,
    mutated_json,
)


@cache
def key() -> tuple[SigningKey, dict[str, Any]]:
    private_pem, public_pem = new_key_pair()
    signing = SigningKey("k20260101-fuzz0001", private_pem)
    return signing, {signing.kid: public_key(public_pem)}


@cache
def tokens() -> list[str]:
    signing, _ = key()
    return [
        issue(signing, "admin", None, ttl_s=3600 * 24 * 365),
        issue(signing, "brand", "acme", scopes=["garments:write"], ttl_s=3600 * 24 * 365),
        issue(signing, "agency", "north", ttl_s=3600 * 24 * 365),
    ]


def _segments(token: str) -> list[dict[str, Any]]:
    def part(s: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    head, body, _ = token.split(".")
    return [part(head), part(body)]


@st.composite
def token_text(draw: st.DrawFn) -> FuzzInput:
    token = draw(st.sampled_from(tokens()))
    how = draw(st.sampled_from(["claims", "claims", "header", "bytes", "segments"]))
    signing, _ = key()
    header, claims = _segments(token)
    if how == "claims":
        edited = draw(
            mutated_json(
                claims, json_paths(claims), ("role", "tenant", "scopes", "exp", "iat", "sub", "iss")
            )
        )
        if not isinstance(edited, dict):
            edited = {"claims": edited}
        try:
            out = jwt.encode(
                edited, signing.private_key(), algorithm="EdDSA", headers={"kid": signing.kid}
            )
        except (TypeError, ValueError, OverflowError):
            out = token  # not encodable as a JWT at all: the plain token stands in
    elif how == "header":
        header[draw(st.sampled_from(["kid", "alg", "typ", "crit", "jku"]))] = draw(
            st.one_of(hostile_values(), st.sampled_from(["none", "HS256", "RS256", "EdDSA"]))
        )
        head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        out = head + token[token.index(".") :]
    elif how == "segments":
        parts = token.split(".")
        k = draw(st.integers(0, 2))
        parts[k] = draw(st.sampled_from(["", "e30", "bnVsbA", "W10", "!!!!", parts[(k + 1) % 3]]))
        out = ".".join(parts[: draw(st.integers(1, 4))])
    else:
        out = draw(mutated_bytes([token.encode()], hot=400, max_ops=3)).decode("latin-1")
    return FuzzInput(out.encode("utf-8", "surrogatepass"), how)


@fuzz_settings(2.0)
@given(token_text())
def test_every_bearer_token_is_a_caller_or_a_401(item: FuzzInput) -> None:
    text = item.data.decode("utf-8", "surrogatepass")
    _, public = key()

    def check(caller: Caller) -> None:
        assert caller.role in ("admin", "brand", "agency", "model", "device", "shopper")

    result = exercise("rights.tokens.verify", lambda: verify(text, public), len(item), check)
    if not isinstance(result, Caller):
        assert result.status == 401 and result.code in ("token_invalid", "token_expired")
