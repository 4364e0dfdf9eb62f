"""`spatialtwin twin create|import`: twins as GLB files, without a server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import write_bytes_atomic

UNITS = ("auto", "m", "dm", "cm", "mm", "in")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    twin = sub.add_parser("twin", help="create or import a rigged digital twin")
    tsub = twin.add_subparsers(dest="twin_command", required=True)

    create = tsub.add_parser("create", help="generate a twin from measurements (metres)")
    for name in ("height", "chest", "waist", "hips", "inseam", "shoulder"):
        create.add_argument(f"--{name}", type=float, required=True, metavar="METRES")
    _common(create)
    create.set_defaults(func=run_create)

    imp = tsub.add_parser("import", help="normalise and rig a body file (GLB/glTF/OBJ/PLY)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--units", choices=UNITS, default="auto")
    imp.add_argument(
        "--joint-map",
        type=Path,
        metavar="JSON",
        help="explicit {canonical joint: source joint} mapping",
    )
    _common(imp)
    imp.set_defaults(func=run_import)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, required=True, help="GLB to write")
    p.add_argument("--name")
    p.add_argument("--model", default="unnamed model", help="the person the twin replicates")
    p.add_argument("--agency", default="unrepresented")
    p.add_argument("--json", action="store_true", help="print a JSON report")


def _provenance(args: argparse.Namespace, twin_id: str) -> dict[str, Any]:
    return {
        "twinId": twin_id,
        "owner": {"model": args.model, "agency": args.agency},
        "licenseId": None,
        "disclosure": f"Digital twin of {args.model} (agency: {args.agency}): a rigged 3D "
        "replica, not a photograph. Not licensed for distribution.",
        "digitalTwin": True,
    }


def _write(args: argparse.Namespace, body: Any, report: dict[str, Any]) -> int:
    from spatialtwin.services.twins import measured_json, twin_file_glb

    twin_id = args.name or args.output.stem
    glb = twin_file_glb(body, _provenance(args, twin_id))
    write_bytes_atomic(args.output, glb)
    report = {
        **report,
        "output": str(args.output),
        "bytes": len(glb),
        "vertices": body.vertex_count,
        "triangles": len(body.faces),
        "measured": measured_json(body),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        m = report["measured"]
        print(
            f"wrote {args.output} ({len(glb)} bytes, {body.vertex_count} vertices): "
            f"height {m['height_m']:.3f} m, chest {m['chest_m']:.3f} m, "
            f"waist {m['waist_m']:.3f} m, hips {m['hips_m']:.3f} m"
        )
    return 0


def run_create(args: argparse.Namespace) -> int:
    from spatialtwin.body.measurements import Measurements
    from spatialtwin.services.twins import generate_twin_body

    m = Measurements(args.height, args.chest, args.waist, args.hips, args.inseam, args.shoulder)
    m.validate()
    body, template_name = generate_twin_body(m)
    return _write(args, body, {"requested": m.to_json(), "template": template_name})


def run_import(args: argparse.Namespace) -> int:
    from spatialtwin.services.twins import import_twin

    if not args.file.is_file():
        raise SpatialTwinError("file_not_found", f"no such file: {args.file}")
    joint_map = None
    if args.joint_map is not None:
        try:
            joint_map = json.loads(args.joint_map.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SpatialTwinError("invalid_joint_map", f"cannot read joint map: {exc}") from exc
    imported = import_twin(
        args.file.read_bytes(), args.file.name, units=args.units, joint_map=joint_map
    )
    if not args.json:
        print(json.dumps(imported.report.to_json(), indent=2), file=sys.stderr)
    return _write(args, imported.body, imported.report.to_json())
