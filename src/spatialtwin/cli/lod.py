"""`spatialtwin lod IN.glb -o OUTDIR`: levels of detail for any GLB, without a server."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import write_bytes_atomic, write_json_atomic


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lod", help="build streamable levels of detail (GLB + manifest) for a GLB")
    p.add_argument("input", type=Path, help="GLB to simplify (metres)")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for the levels")
    p.add_argument(
        "--ratios",
        default="1,0.25,0.0625,0.015625",
        help="fractions of the triangles per level, first must be 1 (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run_lod)


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise SpatialTwinError("invalid_lod_ratios", f"--ratios must be numbers: {text!r}") from exc


def run_lod(args: argparse.Namespace) -> int:
    from spatialtwin.lod.levels import DEFAULTS
    from spatialtwin.services.lod import lod_of_glb

    if not args.input.is_file():
        raise SpatialTwinError("file_not_found", f"no such file: {args.input}")
    options = replace(DEFAULTS, ratios=_ratios(args.ratios))
    build = lod_of_glb(args.input.read_bytes(), args.input.stem, options)
    for name, data in build.files.items():
        write_bytes_atomic(args.output / name, data)
    write_json_atomic(args.output / "manifest.json", build.manifest)
    if args.json:
        print(json.dumps(build.manifest, indent=2))
        return 0
    print(f"{'level':>5} {'triangles':>10} {'bytes':>10} {'error (mm)':>11}  file")
    for lv in build.manifest["levels"]:
        print(
            f"{lv['level']:>5} {lv['triangles']:>10} {lv['bytes']:>10} "
            f"{lv['geometricError_m'] * 1000:>11.2f}  {args.output / lv['url']}"
        )
    print(f"manifest: {args.output / 'manifest.json'} (simplifier {build.manifest['simplifier']})")
    return 0
