"""MediaPipe `pose_landmarker_{lite,full,heavy}.task` bundles, built at install time from npm.

The PyPI `mediapipe` wheel ships no pose model and the machines cannot download one, but the
npm package `@mediapipe/pose` ships the same networks for the legacy solution:
`pose_landmark_{lite,full,heavy}.tflite` (the landmark networks) and
`pose_solution_packed_assets.data`, which is exactly `pose_detection.tflite` (its loader,
`pose_solution_packed_assets_loader.js`, maps that file to bytes 0..end of the package).
A Tasks `.task` bundle is an uncompressed zip of `pose_detector.tflite` and
`pose_landmarks_detector.tflite`, each carrying TFLite metadata with the image normalisation
(see `tflite_metadata`).

Run once per install (idempotent, skips when the recorded input checksum still matches):

    python -m spatialtwin.tracking.bundle build [--node-modules DIR] [--out DIR]

The output folder defaults to `<repo>/models` or `$SPATIALTWIN_MODELS`; it receives
`pose_landmarker_<variant>.task` and `manifest.json` (input and output SHA-256 per variant).
Every file is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import write_bytes_atomic, write_json_atomic
from spatialtwin.tracking.tflite_metadata import ImageInputSpec, with_image_metadata

VARIANTS: tuple[str, ...] = ("lite", "full", "heavy")
DEFAULT_VARIANT = "full"
MODELS_ENV = "SPATIALTWIN_MODELS"
MANIFEST_NAME = "manifest.json"
# Bump when the bundle layout or metadata changes, so old bundles are rebuilt.
BUNDLE_FORMAT = 1
BUILD_COMMAND = "python -m spatialtwin.tracking.bundle build"

REPO_ROOT = Path(__file__).resolve().parents[3]
NPM_PACKAGE = Path("@mediapipe") / "pose"
DETECTOR_FILE = "pose_solution_packed_assets.data"
# (start, end) byte range of pose_detection.tflite inside DETECTOR_FILE, from the loader js.
DETECTOR_SIZE = 2962288

DETECTOR_SPEC = ImageInputSpec(
    name="pose_detector",
    description="BlazePose person detector (from npm @mediapipe/pose)",
    mean=127.5,
    std=127.5,
)
LANDMARKER_SPEC = ImageInputSpec(
    name="pose_landmarks_detector",
    description="BlazePose GHUM 3D landmark network (from npm @mediapipe/pose)",
    mean=0.0,
    std=255.0,
)
# Fixed zip timestamp so the same inputs always give byte-identical bundles.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuildReport:
    """What `build_bundles` did for one variant."""

    variant: str
    path: Path
    built: bool
    sha256: str


def default_models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else REPO_ROOT / "models"


def default_npm_dir() -> Path:
    return REPO_ROOT / "node_modules" / NPM_PACKAGE


def bundle_path(variant: str, models_dir: Path | None = None) -> Path:
    _check_variant(variant)
    return (models_dir or default_models_dir()) / f"pose_landmarker_{variant}.task"


def model_path(variant: str = DEFAULT_VARIANT, models_dir: Path | None = None) -> Path:
    """Path of a built bundle; a clear error naming the install step if it was not built."""
    path = bundle_path(variant, models_dir)
    if not path.is_file():
        raise SpatialTwinError(
            "pose_model_not_built",
            f"the {variant!r} pose landmarker bundle has not been built; run "
            f"`{BUILD_COMMAND}` (the install step) first",
            {"path": str(path), "command": BUILD_COMMAND},
            status=503,
        )
    return path


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise SpatialTwinError(
            "unknown_pose_model",
            f"pose model must be one of {', '.join(VARIANTS)}",
            {"model": variant},
        )


def resolve_npm_dir(node_modules: Path | None) -> Path:
    """The `@mediapipe/pose` folder, given node_modules, the package folder itself, or None."""
    if node_modules is None:
        candidate = default_npm_dir()
    elif (node_modules / NPM_PACKAGE).is_dir():
        candidate = node_modules / NPM_PACKAGE
    else:
        candidate = node_modules
    if not (candidate / DETECTOR_FILE).is_file():
        raise SpatialTwinError(
            "mediapipe_npm_missing",
            "npm package @mediapipe/pose not found; run `npm install` in the repository first",
            {"looked_in": str(candidate)},
            status=503,
        )
    return candidate


def _input_files(npm_dir: Path, variant: str) -> dict[str, Path]:
    return {
        "detector": npm_dir / DETECTOR_FILE,
        "landmarker": npm_dir / f"pose_landmark_{variant}.tflite",
    }


def inputs_checksum(npm_dir: Path, variant: str) -> str:
    """SHA-256 over the bundle format and every input file's name and bytes."""
    digest = hashlib.sha256(f"spatialtwin-pose-bundle/{BUNDLE_FORMAT}/{variant}".encode())
    for role, path in sorted(_input_files(npm_dir, variant).items()):
        if not path.is_file():
            raise SpatialTwinError(
                "mediapipe_npm_missing",
                f"@mediapipe/pose lacks {path.name}; reinstall the npm package",
                {"path": str(path)},
                status=503,
            )
        digest.update(role.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def bundle_bytes(npm_dir: Path, variant: str) -> bytes:
    """The `.task` zip for one variant: (1) extract, (2) add metadata, (3) zip uncompressed."""
    files = _input_files(npm_dir, variant)
    packed = files["detector"].read_bytes()
    if len(packed) < DETECTOR_SIZE:
        raise SpatialTwinError(
            "mediapipe_npm_corrupt",
            f"{DETECTOR_FILE} is shorter than the pose detector it packs",
            {"bytes": len(packed), "expected": DETECTOR_SIZE},
            status=503,
        )
    detector = with_image_metadata(packed[:DETECTOR_SIZE], DETECTOR_SPEC)
    landmarker = with_image_metadata(files["landmarker"].read_bytes(), LANDMARKER_SPEC)

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in (
            ("pose_detector.tflite", detector),
            ("pose_landmarks_detector.tflite", landmarker),
        ):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            bundle.writestr(info, data)
    return out.getvalue()


def _read_manifest(models_dir: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((models_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("bundles", {}) if isinstance(data, dict) else {}


def build_bundles(
    variants: tuple[str, ...] = VARIANTS,
    node_modules: Path | None = None,
    models_dir: Path | None = None,
    *,
    force: bool = False,
) -> list[BuildReport]:
    """Build the requested bundles, skipping those whose inputs and output are unchanged."""
    npm_dir = resolve_npm_dir(node_modules)
    out_dir = models_dir or default_models_dir()
    manifest = _read_manifest(out_dir)
    reports = []
    for variant in variants:
        path = bundle_path(variant, out_dir)
        checksum = inputs_checksum(npm_dir, variant)
        recorded = manifest.get(variant, {})
        if (
            not force
            and recorded.get("inputs_sha256") == checksum
            and path.is_file()
            and hashlib.sha256(path.read_bytes()).hexdigest() == recorded.get("sha256")
        ):
            reports.append(BuildReport(variant, path, False, recorded["sha256"]))
            continue
        data = bundle_bytes(npm_dir, variant)
        write_bytes_atomic(path, data)
        sha = hashlib.sha256(data).hexdigest()
        manifest[variant] = {"inputs_sha256": checksum, "sha256": sha, "file": path.name}
        write_json_atomic(out_dir / MANIFEST_NAME, {"format": BUNDLE_FORMAT, "bundles": manifest})
        reports.append(BuildReport(variant, path, True, sha))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spatialtwin.tracking.bundle",
        description="Build MediaPipe pose landmarker .task bundles from npm @mediapipe/pose.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or verify) the bundles")
    build.add_argument("--node-modules", type=Path, default=None, help="node_modules folder")
    build.add_argument("--out", type=Path, default=None, help=f"output folder (${MODELS_ENV})")
    build.add_argument("--model", choices=VARIANTS, action="append", help="only these variants")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    try:
        reports = build_bundles(
            tuple(args.model or VARIANTS), args.node_modules, args.out, force=args.force
        )
    except SpatialTwinError as exc:
        print(f"spatialtwin.tracking.bundle: error: {exc.message} ({exc.detail})", file=sys.stderr)
        return 2
    for r in reports:
        state = "built" if r.built else "up to date"
        print(f"{r.path}: {state} (sha256 {r.sha256[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
