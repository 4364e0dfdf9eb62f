"""`spatialtwin keys init|rotate|list|remove`: the Ed25519 keys that sign access tokens.

    spatialtwin keys init   [--data DIR | --keys DIR]   # once per deployment
    spatialtwin keys rotate [--data DIR | --keys DIR]   # new active key; old tokens still verify
    spatialtwin keys list   [--data DIR | --keys DIR] [--json]
    spatialtwin keys remove KID [--data DIR | --keys DIR]  # tokens of KID are refused from now

The keys live in `DATA/keys/` (or `--keys`, or `$SPATIALTWIN_KEYS`: a fleet's servers share
one folder). A running server sees a rotation or removal at its next request.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def keys_folder(args: argparse.Namespace) -> Path:
    """`--keys`, else `$SPATIALTWIN_KEYS`, else `DATA/keys`."""
    if getattr(args, "keys", None):
        return Path(args.keys)
    env = os.environ.get("SPATIALTWIN_KEYS")
    return Path(env) if env else Path(args.data) / "keys"


def first_start_keys(data: Path) -> None:
    """What `spatialtwin serve` does on the embedded store: make the keys if the data
    directory has none and then print a demo admin token and a demo brand token once, also
    written to `DATA/demo-token` and `DATA/demo-brand-token` (mode 0600)."""
    from spatialtwin.services.auth import KeyRing, write_demo_tokens

    folder = Path(os.environ.get("SPATIALTWIN_KEYS") or Path(data) / "keys")
    ring, made = KeyRing.init(folder)
    if not made:
        return
    tokens = write_demo_tokens(ring, Path(data))
    print(f"made signing keys in {folder}", flush=True)
    print(f"demo admin token (also in {Path(data) / 'demo-token'}): {tokens['admin']}")
    print(
        "demo brand token for the merchandiser page, brand demo-brand "
        f"(also in {Path(data) / 'demo-brand-token'}): {tokens['brand']}",
        flush=True,
    )


def add_folder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("var/data"), help="data directory")
    p.add_argument("--keys", type=Path, help="key folder (default DATA/keys, $SPATIALTWIN_KEYS)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="make, rotate, list and remove token-signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    for name, func, text in (
        ("init", run_init, "make the key folder with one Ed25519 key (nothing if it exists)"),
        ("rotate", run_rotate, "a new signing key; the old public keys keep verifying"),
        ("list", run_list, "the trusted keys, which one signs"),
    ):
        p = ksub.add_parser(name, help=text)
        add_folder_arguments(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    rm = ksub.add_parser("remove", help="stop trusting a key: tokens it signed are refused")
    rm.add_argument("kid")
    add_folder_arguments(rm)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=run_remove)


def _print(args: argparse.Namespace, body: dict[str, object], text: str) -> None:
    print(json.dumps(body, indent=2) if args.json else text)


def run_init(args: argparse.Namespace) -> int:
    from spatialtwin.services.auth import KeyRing

    ring, made = KeyRing.init(keys_folder(args))
    kid = ring.active_kid()
    verb = "made" if made else "already had"
    _print(
        args,
        {"folder": str(ring.folder), "kid": kid, "made": made},
        f"{verb} key {kid} in {ring.folder}",
    )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from spatialtwin.services.auth import KeyRing

    ring = KeyRing(keys_folder(args))
    old = ring.active_kid()
    kid = ring.rotate()
    _print(
        args,
        {"folder": str(ring.folder), "kid": kid, "previous": old},
        f"key {kid} signs from now on; {old} still verifies (keys remove {old} to end that)",
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from spatialtwin.services.auth import KeyRing

    ring = KeyRing(keys_folder(args))
    infos = ring.trusted()
    if args.json:
        print(
            json.dumps({"folder": str(ring.folder), "keys": [k.to_json() for k in infos]}, indent=2)
        )
    else:
        for k in infos:
            print(f"{k.kid}  {'active' if k.active else 'verify-only'}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from spatialtwin.services.auth import KeyRing

    ring = KeyRing(keys_folder(args))
    ring.remove(args.kid)
    _print(args, {"removed": args.kid}, f"removed {args.kid}: the tokens it signed are refused")
    return 0
