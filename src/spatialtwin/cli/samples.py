"""`spatialtwin samples`: regenerate the sample garments in `assets/garments/`.

    python -m spatialtwin.cli.samples --out assets/garments

Each sample is cut around the sample twin Ava (`assets/twins/ava.json`), generated from her
tape measurements on the shipped hm08 template as the server makes her; the meshes come from
`garment.samples`, the GLBs from `gltf.sample_glb`, and each gets its JSON sidecar.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spatialtwin.body.measurements import Measurements
from spatialtwin.body.parametric import create_twin_body
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.files import write_bytes_atomic, write_json_atomic
from spatialtwin.garment.samples import SPECS, build_samples, sidecar
from spatialtwin.gltf.sample_glb import garment_glb
from spatialtwin.gltf.template_npz import shipped_template

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_TWIN_PATH = REPO_ROOT / "assets" / "twins" / "ava.json"
SAMPLES_DIR = REPO_ROOT / "assets" / "garments"


def sample_twin_body(
    twin_json: Path = SAMPLE_TWIN_PATH, template: TwinBody | None = None
) -> tuple[str, TwinBody]:
    """The sample twin's id and body, generated from its tape measurements on `template`
    (by default the shipped hm08 template, as the server makes it)."""
    spec = json.loads(Path(twin_json).read_text())
    body = template if template is not None else shipped_template().body
    return str(spec["id"]), create_twin_body(Measurements.from_json(spec["measurements"]), body)


def write_samples(out_dir: Path, twin_json: Path = SAMPLE_TWIN_PATH) -> list[Path]:
    """Regenerate every sample garment into `out_dir`; returns the GLB paths written."""
    twin_id, body = sample_twin_body(twin_json)
    written = []
    for key, mesh in build_samples(body).items():
        spec = SPECS[key]
        glb_path = Path(out_dir) / f"{spec.file_stem}.glb"
        write_bytes_atomic(glb_path, garment_glb(mesh, spec, twin_id))
        write_json_atomic(glb_path.with_suffix(".json"), sidecar(spec, mesh, twin_id))
        written.append(glb_path)
    return written


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder for the GLBs")
    parser.add_argument("--twin", type=Path, default=SAMPLE_TWIN_PATH, help="twin JSON")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("samples", help="regenerate the sample garments in assets/")
    _add_arguments(parser)
    parser.set_defaults(func=run_samples)


def run_samples(args: argparse.Namespace) -> int:
    for path in write_samples(args.out, args.twin):
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spatialtwin.cli.samples", description=__doc__.splitlines()[0]
    )
    _add_arguments(parser)
    return run_samples(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
