"""`spatialtwin drape`: dress a twin in garments, settle them, write the look as one GLB.

    spatialtwin drape --twin ava.glb --garment skirt.glb --category skirt --fabric denim \\
        [--pose pose.json] -o look.glb

`--twin` and `--garment` (repeatable, inner layer first) are each a file or the id of a stored
twin/garment in `--data` (the embedded store `spatialtwin garment add` writes to). A twin file
is imported like `spatialtwin twin import`; a garment file is ingested like `garment add`, its
category and fabric from `--category`/`--fabric` or else from a `<stem>.json` sidecar beside it
(as the project's sample garments ship). Every input is checked before the drape starts, and
the GLB is written atomically at the end, so a refusal (exit 2) writes nothing.

Garments are layered by category (trousers and skirts under dresses under tops under
outerwear) unless `--layer-order as_given`. With `--size best` (or a size label) every stored
garment is taken from its size run (all stored garments with its sku; a ref that is not an id
is taken as an sku) and the size with enough ease on the twin is worn (`garment.sizes`).
A look that misses a quality threshold (`garment.quality`: not settled, stretched, inside the
body, or no size that fits) is still written; each warning is printed and the exit status is 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import write_bytes_atomic

UNITS = ("auto", "m", "dm", "cm", "mm", "in")
CATEGORIES = ("top", "dress", "skirt", "trousers", "outerwear", "outfit")
FILE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".zip")


EXIT_WARNINGS = 3
EPILOG = """exit status:
  0  the look was written and every garment met the quality thresholds
  2  refused input (bad file, unknown id, bad pose, license); nothing was written
  3  the look was written with warnings, each printed: a drape that did not settle, an
     edge stretched over 15 % or cloth over 2 % on average, more than 0.5 % of the
     cloth over 1 mm inside the body or any point over 1 cm inside, cloth beneath a
     garment it is worn over, or no size of a run with enough ease (--size best)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "drape",
        help="settle garments on a twin and write the look as GLB",
        description="Settle garments on a twin and write the look as one GLB.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--twin", required=True, help="twin file (GLB/glTF/OBJ/PLY) or stored twin id")
    p.add_argument(
        "--garment",
        required=True,
        action="append",
        help="garment file or stored garment id; repeat for layers (see --layer-order)",
    )
    p.add_argument("--pose", type=Path, help='pose JSON {"root": [x,y,z], "joints": {...}}')
    p.add_argument("-o", "--output", type=Path, required=True, help="look GLB to write")
    p.add_argument("--category", choices=CATEGORIES, help="category of garment files")
    p.add_argument("--fabric", help="fabric preset or stored fabric id for garment files")
    p.add_argument("--units", choices=UNITS, default="auto", help="units of the files")
    p.add_argument("--data", type=Path, default=Path("var/data"), help="store directory")
    p.add_argument("--channel", default="ecommerce", help="use the stored twin is licensed for")
    p.add_argument("--max-frames", type=int, default=240, help="settling budget, frames of 1/30 s")
    p.add_argument(
        "--time-limit", type=float, default=60.0, help="settling budget per garment, seconds"
    )
    p.add_argument(
        "--layer-order",
        choices=("category", "as_given"),
        default="category",
        help="which garment is worn over which: by category (default) or inner first as given",
    )
    p.add_argument(
        "--size",
        help="'best' or a size label: wear that size of each stored garment's size run",
    )
    p.add_argument(
        "--authoring-body",
        type=Path,
        help="the avatar a garment file was made on (GLB/OBJ/PLY exported beside it); "
        "a MakeHuman .mhclo beside X.obj (X.mhclo) is picked up by itself",
    )
    p.add_argument(
        "--estimate-body",
        action="store_true",
        help="for garment files with no authoring body: estimate one from the garment's own "
        "sleeves and legs and refit through it (default: placed by translation)",
    )
    p.add_argument("--json", action="store_true", help="print the look report as JSON")
    p.set_defaults(func=run_drape)


def garment_attachment(path: Path, authoring_body: Path | None) -> Any:
    """The authoring body sent with a garment file: `--authoring-body`, else a sibling
    `.mhclo` of an OBJ (MakeHuman keeps `X.mhclo` beside `X.obj`), else None."""
    from spatialtwin.services.authoring import Attachment

    if authoring_body is not None:
        if not authoring_body.is_file():
            raise SpatialTwinError("file_not_found", f"no such authoring body: {authoring_body}")
        return Attachment(authoring_body.name, authoring_body.read_bytes())
    sibling = path.with_suffix(".mhclo")
    if path.suffix.lower() == ".obj" and sibling.is_file():
        return Attachment(sibling.name, sibling.read_bytes())
    return None


@dataclass
class _Twin:
    body: Any  # TwinBody
    provenance: dict[str, Any]


def _is_file_ref(ref: str) -> bool:
    path = Path(ref)
    return path.exists() or path.suffix.lower() in FILE_SUFFIXES or "/" in ref


def _read_pose(path: Path | None) -> Any:
    from spatialtwin.services.looks import parse_pose

    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SpatialTwinError("file_not_found", f"cannot read pose {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SpatialTwinError("invalid_pose", f"pose {path} is not JSON: {exc.msg}") from exc
    return parse_pose(raw)


class _Session:
    """The services over `--data`, opened on first need (a drape of files alone opens no
    store, so it writes nothing there)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self._services: Any = None

    async def services(self) -> Any:
        from spatialtwin.services.context import Services
        from spatialtwin.store.embedded import EmbeddedStore

        if self._services is None:
            if not self.data.is_dir():
                raise SpatialTwinError(
                    "store_not_found",
                    f"no store at {self.data} (see --data)",
                    {"data": str(self.data)},
                )
            self._services = await Services.open(EmbeddedStore(self.data))
        return self._services


async def _load_twin(ref: str, args: argparse.Namespace, session: _Session) -> _Twin:
    from spatialtwin.gltf.look_glb import glb_provenance
    from spatialtwin.rights.license import provenance
    from spatialtwin.services.twins import import_twin

    if _is_file_ref(ref):
        path = Path(ref)
        if not path.is_file():
            raise SpatialTwinError("file_not_found", f"no such twin file: {path}")
        data = path.read_bytes()
        imported = await asyncio.to_thread(import_twin, data, path.name, units=args.units)
        written = glb_provenance(data) or {}
        prov = {**written, "twinId": written.get("twinId") or path.stem, "source": path.name}
        return _Twin(imported.body, prov)
    services = await session.services()
    record = await services.access.twin_for_use(ref, args.channel)
    return _Twin(await services.twins.body(record), provenance(record))


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise SpatialTwinError("invalid_metadata", f"{side} is not JSON: {exc.msg}") from exc
    return data if isinstance(data, dict) else {}


async def _load_garment(ref: str, args: argparse.Namespace, session: _Session) -> Any:
    from spatialtwin.garment.fabrics import preset
    from spatialtwin.services.garments import prepared_look_garment

    if not _is_file_ref(ref):
        services = await session.services()
        return await services.garments.stored_look_garment(await services.garments.get(ref))
    path = Path(ref)
    if not path.is_file():
        raise SpatialTwinError("file_not_found", f"no such garment file: {path}")
    side = _sidecar(path)
    category = args.category or side.get("category")
    fabric_id = args.fabric or side.get("fabric")
    if not category or not fabric_id:
        raise SpatialTwinError(
            "missing_metadata",
            f"{path.name} needs --category and --fabric (or a {path.stem}.json sidecar)",
            {"category": category, "fabric": fabric_id},
        )
    if category not in CATEGORIES:
        raise SpatialTwinError(
            "invalid_category", f"category must be one of {', '.join(CATEGORIES)}"
        )
    units = args.units if args.units != "auto" else str(side.get("units") or "auto")
    if args.data.is_dir():
        fabric = await (await session.services()).garments.resolve_fabric(fabric_id)
    else:
        fabric = preset(str(fabric_id))
    data = path.read_bytes()
    attachment = garment_attachment(path, getattr(args, "authoring_body", None))
    meta = {"file": path.name, "sku": side.get("sku") or path.stem}
    return await asyncio.to_thread(
        prepared_look_garment,
        data,
        path.name,
        category,
        units,
        fabric,
        attachment,
        bool(getattr(args, "estimate_body", False)),
        meta,
    )


async def _size_run(ref: str, session: _Session) -> list[dict[str, Any]]:
    """The stored size run `ref` (a garment id, else an sku) belongs to, smallest first."""
    garments = (await session.services()).garments
    record = await garments.records.find(ref)
    sku = record.get("sku") if record is not None else ref
    run = await garments.size_run(str(sku))
    if not run:
        raise SpatialTwinError(
            "size_run_not_found", f"no stored garment has id or sku {ref!r}", {"ref": ref}
        )
    return run


async def _choose_size(
    ref: str, args: argparse.Namespace, body: Any, session: _Session
) -> tuple[str, dict[str, Any] | None]:
    """The stored garment id worn for `ref` under `--size`, and the best-size choice."""
    run = await _size_run(ref, session)
    if args.size != "best":
        chosen = [r for r in run if r.get("size_label") == args.size]
        if not chosen:
            raise SpatialTwinError(
                "size_not_in_run",
                f"{run[0].get('sku')} has no size {args.size!r}",
                {"sizes": [r.get("size_label") for r in run]},
            )
        return chosen[0]["id"], None
    choice = await (await session.services()).looks.choose_size(body, run)
    return choice.chosen_key, {"sku": run[0].get("sku"), "size": "best", **choice.to_json()}


def run_drape(args: argparse.Namespace) -> int:
    return asyncio.run(_drape(args))


async def _drape(args: argparse.Namespace) -> int:
    from spatialtwin.garment.layers import check_layer_order
    from spatialtwin.garment.look import LookOptions
    from spatialtwin.services.looks import drape_and_encode, draped_garments

    # (1) check every input before the slow part
    options = LookOptions(
        max_frames=args.max_frames,
        min_frames=min(30, args.max_frames),
        time_limit_s=args.time_limit,
    )
    check_layer_order(args.layer_order)
    if not 0 < args.time_limit <= 3600:
        raise SpatialTwinError("invalid_time_limit", "--time-limit must be 0–3600 s", None)
    if args.size is not None and not 0 < len(args.size) <= 32:
        raise SpatialTwinError("invalid_size", "--size must be 'best' or a size label")
    keys = [Path(g).stem if _is_file_ref(g) else g for g in args.garment]
    if len(set(keys)) != len(keys):
        raise SpatialTwinError("duplicate_garment", "each garment can be worn once", keys)
    pose = _read_pose(args.pose)
    if args.output.suffix.lower() != ".glb":
        raise SpatialTwinError("invalid_output", "the look is written as .glb", str(args.output))
    session = _Session(args.data)
    twin = await _load_twin(args.twin, args, session)
    refs, sizes = list(args.garment), []
    if args.size is not None:
        for i, ref in enumerate(refs):
            if not _is_file_ref(ref):
                refs[i], choice = await _choose_size(ref, args, twin.body, session)
                sizes += [choice] if choice is not None else []
    garments = [await _load_garment(ref, args, session) for ref in refs]
    # (2) drape and encode, the pipeline the look job runs
    began = time.perf_counter()
    warnings_of_sizes = [c["warning"] for c in sizes if c["warning"]]

    def provenance_of(look: Any) -> dict[str, Any]:
        return {
            **twin.provenance,
            "look": {
                "pose": pose.to_json() if pose is not None else None,
                "warnings": warnings_of_sizes + look.warnings,
            },
            "garments": draped_garments(look),
        }

    look, glb = await asyncio.to_thread(
        drape_and_encode, twin.body, garments, pose, options, args.layer_order, provenance_of
    )
    elapsed = time.perf_counter() - began
    warnings = warnings_of_sizes + look.warnings
    # (3) write
    stats = look.stats()
    write_bytes_atomic(args.output, glb)
    report = {"output": str(args.output), "bytes": len(glb), "seconds": round(elapsed, 2)}
    if args.json:
        report = {**report, "stats": stats, "sizes": sizes, "warnings": warnings}
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {args.output} ({len(glb)} bytes) in {elapsed:.1f} s")
        for key, s in stats.items():
            settled = "settled" if s["settled"] else "not settled"
            print(
                f"  garment:{key}: {s['frames']} frames ({settled}), "
                f"mean stretch {s['mean_stretch']:.4f}, max {s['max_stretch']:.3f}, "
                f"min clearance {s['min_body_clearance_m'] * 1000:.1f} mm"
            )
        for c in sizes:
            print(f"  size: {c['sku']} {c['chosen_size']} ({c['chosen']}), ease {_ease(c)}")
    for w in warnings:
        print(f"spatialtwin: warning: {w['code']}: {w['message']}", file=sys.stderr)
    return EXIT_WARNINGS if warnings else 0


def _ease(choice: dict[str, Any]) -> str:
    chosen = next(s for s in choice["sizes"] if s["garment"] == choice["chosen"])
    return ", ".join(f"{k} {100 * v:+.1f} cm" for k, v in chosen["ease_m"].items()) or "–"
