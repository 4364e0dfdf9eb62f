"""`spatialtwin mirror register|list|revoke`: smart-mirror devices in the embedded store.

    spatialtwin mirror register --name "Berlin KaDeWe 1" --store kadewe [--data DIR]
    spatialtwin mirror list [--data DIR] [--json]
    spatialtwin mirror revoke DEVICE_ID [--data DIR]

`register` prints the device token once (the store keeps only its SHA-256): put it in the
mirror's configuration. A revoked device's sessions end within a second on any server that
shares the data directory (servers poll device records; `docs/mirror-protocol.md` §7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mirror = sub.add_parser("mirror", help="register, list and revoke smart-mirror devices")
    msub = mirror.add_subparsers(dest="mirror_command", required=True)
    reg = msub.add_parser("register", help="register a mirror; prints its device token once")
    reg.add_argument("--name", required=True, help='the mirror\'s name, e.g. "Berlin KaDeWe 1"')
    reg.add_argument("--store", required=True, help="the store it stands in, e.g. kadewe")
    reg.add_argument("--data", type=Path, default=Path("var/data"), help="store directory")
    reg.add_argument("--json", action="store_true", help="print the device and token as JSON")
    reg.set_defaults(func=run_register)
    lst = msub.add_parser("list", help="list registered mirrors")
    lst.add_argument("--data", type=Path, default=Path("var/data"))
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_list)
    rev = msub.add_parser("revoke", help="revoke a mirror: its token is refused, its sessions end")
    rev.add_argument("device_id")
    rev.add_argument("--data", type=Path, default=Path("var/data"))
    rev.add_argument("--json", action="store_true")
    rev.set_defaults(func=run_revoke)


async def _devices(data: Path) -> Any:
    from spatialtwin.cli.garment import open_services

    return (await open_services(data)).devices


def run_register(args: argparse.Namespace) -> int:
    async def registered() -> tuple[dict[str, Any], str]:
        return await (await _devices(args.data)).register(args.name, args.store)

    from spatialtwin.services.devices import device_view

    record, token = asyncio.run(registered())
    if args.json:
        print(json.dumps({"device": device_view(record), "token": token}, indent=2))
    else:
        print(f"registered {record['id']} ({record['name']}, store {record['store']})")
        print(f"device token (shown once, keep it in the mirror's configuration): {token}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    async def listed() -> list[dict[str, Any]]:
        return await (await _devices(args.data)).list()

    devices = asyncio.run(listed())
    if args.json:
        print(json.dumps({"devices": devices}, indent=2))
    else:
        for d in devices:
            state = "revoked" if d["revoked"] else "active"
            camera = d.get("camera")
            tilt = "" if not camera else f"  camera {camera['pitch_deg']}°/{camera['roll_deg']}°"
            print(f"{d['id']}  {state:<8} {d['store']:<16} {d['name']}{tilt}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    async def revoked() -> dict[str, Any]:
        return await (await _devices(args.data)).revoke(args.device_id)

    record = asyncio.run(revoked())
    if args.json:
        print(json.dumps({"device": record}, indent=2))
    else:
        print(f"revoked {record['id']} ({record['name']}) at {record['revoked_at']}")
    return 0
