"""`spatialtwin garment add|list`: ingest garments into the embedded store without a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError

UNITS = ("auto", "m", "dm", "cm", "mm", "in")
CATEGORIES = ("top", "dress", "skirt", "trousers", "outerwear", "outfit")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    garment = sub.add_parser("garment", help="upload and inspect garments")
    gsub = garment.add_subparsers(dest="garment_command", required=True)
    add = gsub.add_parser("add", help="validate, scale, remesh and store a garment file")
    add.add_argument("file", type=Path)
    add.add_argument("--category", required=True, choices=CATEGORIES)
    add.add_argument("--fabric", required=True, help="preset id (see `garment fabrics`)")
    add.add_argument("--units", choices=UNITS, default="auto")
    add.add_argument("--sku", help="stock-keeping unit (default: the file name)")
    add.add_argument("--name")
    add.add_argument("--size", default="", help="size label, e.g. M or 38")
    add.add_argument("--edge", type=float, metavar="METRES", help="simulation edge length")
    add.add_argument("--data", type=Path, default=Path("var/data"), help="store directory")
    add.add_argument(
        "--authoring-body",
        type=Path,
        help="the avatar the garment was made on (GLB/OBJ/PLY); a sibling X.mhclo of X.obj "
        "is used by itself",
    )
    add.add_argument(
        "--estimate-body",
        action="store_true",
        help="without an authoring body: estimate one from the garment's sleeves and legs "
        "(the template human posed to them) so the garment refits onto any twin",
    )
    add.add_argument("--json", action="store_true", help="print the stored record as JSON")
    add.set_defaults(func=run_add)
    lst = gsub.add_parser("list", help="list stored garments")
    lst.add_argument("--data", type=Path, default=Path("var/data"))
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_list)
    fabrics = gsub.add_parser("fabrics", help="list fabric presets and custom fabrics")
    fabrics.add_argument("--data", type=Path, default=Path("var/data"))
    fabrics.add_argument("--json", action="store_true")
    fabrics.set_defaults(func=run_fabrics)


class ProgressBar:
    """A one-line bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, stream: Any = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        filled = round(self.width * min(max(fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {fraction:4.0%} {stage:<12}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


async def open_services(data: Path, settings: dict[str, Any] | None = None) -> Any:
    """The services over the embedded store at `data` (migrated to today's schema), as the
    server opens them; the CLI runs no job queue (its work runs in the command)."""
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    return await Services.open(EmbeddedStore(data), settings=settings or {})


def run_add(args: argparse.Namespace) -> int:
    from spatialtwin.services.views import garment_view

    if not args.file.is_file():
        raise SpatialTwinError("file_not_found", f"no such file: {args.file}")
    metadata = {
        "sku": args.sku or args.file.stem,
        "name": args.name or args.file.stem,
        "category": args.category,
        "size_label": args.size,
        "fabric": args.fabric,
        "units": args.units,
        "estimate_body": bool(args.estimate_body),
    }
    data = args.file.read_bytes()
    bar = ProgressBar()

    from spatialtwin.cli.drape import garment_attachment

    attachment = garment_attachment(args.file, args.authoring_body)

    settings = {} if args.edge is None else {"garment_target_edge_m": args.edge}

    async def ingest() -> dict[str, Any]:
        services = await open_services(args.data, settings)
        return await services.garments.ingest(
            data, args.file.name, metadata, bar, attachment=attachment
        )

    try:
        record = garment_view(asyncio.run(ingest()))
    finally:
        bar.done()
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        sim = record["simulation"]
        print(
            f"stored {record['id']} ({record['sku']}): {record['category']}, "
            f"units {record['units']}{' (detected)' if record['units_detected'] else ''}, "
            f"extent {record['extent_m']} m, {record['triangles']} source triangles, "
            f"{sim['triangles']} simulation triangles"
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from spatialtwin.services.views import garment_view

    async def listed() -> list[dict[str, Any]]:
        return await (await open_services(args.data)).garments.list()

    records = [garment_view(r) for r in asyncio.run(listed())]
    if args.json:
        print(json.dumps({"garments": records}, indent=2))
    else:
        for r in records:
            print(f"{r['id']}  {r['sku']:<20} {r['category']:<10} {r['extent_m']} m")
    return 0


def run_fabrics(args: argparse.Namespace) -> int:
    async def listed() -> list[dict[str, Any]]:
        return await (await open_services(args.data)).garments.list_fabrics()

    fabrics = asyncio.run(listed())
    if args.json:
        print(json.dumps({"fabrics": fabrics}, indent=2))
    else:
        for f in fabrics:
            print(f"{f['id']:<16} {f['areal_density_gsm']:>7.1f} g/m²  {f['name']}")
    return 0
