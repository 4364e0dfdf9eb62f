"""`spatialtwin token issue`: a signed access token for an agency, model, brand, device or admin.

    spatialtwin token issue --role brand --tenant acme [--scopes garments:write,looks:write]
        [--ttl 12h] [--subject merch-1] [--data DIR | --keys DIR] [--json]

The token is printed once; nothing about it is stored (it is verified by its signature). The
tenant is the agency's or model's name as in the twins' `owner`, the brand's id, or the
store a mirror stands in; an admin needs none. `--ttl` takes seconds or `90s`, `15m`, `12h`,
`30d` (at most 366 days).
"""

from __future__ import annotations

import argparse
import json
import re

from spatialtwin.cli.keys import add_folder_arguments, keys_folder
from spatialtwin.errors import SpatialTwinError

_TTL = re.compile(r"^(\d{1,9})([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def ttl_seconds(text: str) -> int:
    match = _TTL.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a duration like 3600, 90s, 15m, 12h or 30d: {text!r}"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from spatialtwin.rights.roles import SCOPES, TOKEN_ROLES

    token = sub.add_parser("token", help="issue signed access tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser("issue", help="print a signed token for a role and tenant")
    p.add_argument("--role", required=True, choices=TOKEN_ROLES)
    p.add_argument("--tenant", help="agency or model name, brand id, or store (admin: none)")
    p.add_argument(
        "--scopes",
        default="",
        help=f"comma-separated, narrowing the token to these ({', '.join(SCOPES)})",
    )
    p.add_argument("--ttl", type=ttl_seconds, default=24 * 3600, help="lifetime (default 24h)")
    p.add_argument("--subject", help="who holds it (default role:tenant), shown in logs")
    add_folder_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_issue)


def run_issue(args: argparse.Namespace) -> int:
    from spatialtwin.services.auth import KeyRing

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    ring = KeyRing(keys_folder(args))
    if not (ring.folder / "active").exists():
        raise SpatialTwinError(
            "keys_missing", f"no keys in {ring.folder}; run `spatialtwin keys init` first"
        )
    token = ring.issue(args.role, args.tenant, subject=args.subject, scopes=scopes, ttl_s=args.ttl)
    if args.json:
        caller = ring.verify(token)
        print(
            json.dumps(
                {
                    "token": token,
                    "role": caller.role,
                    "tenant": caller.tenant,
                    "scopes": list(caller.scopes),
                    "kid": caller.key_id,
                    "ttl_s": args.ttl,
                },
                indent=2,
            )
        )
    else:
        print(token)
    return 0


__all__ = ["register", "ttl_seconds"]
