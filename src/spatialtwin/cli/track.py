"""`spatialtwin track INPUT -o poses.json`: offline body tracking of an image, folder or video.

Frames are decoded in memory and never written anywhere; only the derived landmarks and poses
(format: `spatialtwin/tracking/POSES.md`) are written, atomically.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from spatialtwin.body.skeleton import Skeleton
from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import write_json_atomic

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"})


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from spatialtwin.tracking.bundle import DEFAULT_VARIANT, VARIANTS

    p = sub.add_parser("track", help="track a person's pose in an image, folder or video")
    p.add_argument("input", type=Path, help="image, folder of images, or video")
    p.add_argument("-o", "--output", type=Path, required=True, help="poses.json to write")
    p.add_argument("--model", choices=VARIANTS, default=DEFAULT_VARIANT)
    p.add_argument("--mirror", action="store_true", help="mirror poses for a mirror display")
    p.add_argument(
        "--skeleton",
        type=Path,
        metavar="JSON",
        help="the twin's skeleton (Skeleton.to_json); default: an A-pose adult",
    )
    p.add_argument(
        "--height",
        type=float,
        default=1.70,
        metavar="METRES",
        help="stature of the default skeleton",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=5.0,
        help="frame rate given to a folder of images (seconds = index / fps)",
    )
    p.add_argument(
        "--camera-pitch",
        type=float,
        default=0.0,
        metavar="DEGREES",
        help="how far the camera looks down",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=run_track)


def _read_image(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise SpatialTwinError("bad_image", f"cannot decode image {path.name}", {"path": str(path)})
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_frames(path: Path, fps: float) -> tuple[str, Iterator[tuple[float, np.ndarray]]]:
    """The kind of input and its (seconds, RGB frame) pairs, decoded lazily in memory."""
    if not path.exists():
        raise SpatialTwinError(
            "input_not_found", f"no such file or folder: {path}", {"path": str(path)}
        )
    if fps <= 0:
        raise SpatialTwinError("bad_fps", "--fps must be positive", {"fps": fps})
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SpatialTwinError(
                "no_images",
                f"no images in folder {path}",
                {"path": str(path), "suffixes": sorted(IMAGE_SUFFIXES)},
            )
        return "folder", ((i / fps, _read_image(f)) for i, f in enumerate(files))
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image", iter([(0.0, _read_image(path))])
    if suffix in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SpatialTwinError(
                "bad_video", f"cannot open video {path.name}", {"path": str(path)}
            )
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise SpatialTwinError(
                "bad_video", f"video {path.name} has no decodable frames", {"path": str(path)}
            )
        video_fps = cap.get(cv2.CAP_PROP_FPS) or fps

        def frames() -> Iterator[tuple[float, np.ndarray]]:
            try:
                index, bgr = 0, first
                while True:
                    yield index / video_fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    ok, bgr = cap.read()
                    if not ok:
                        return
                    index += 1
            finally:
                cap.release()

        return "video", frames()
    raise SpatialTwinError(
        "unsupported_input",
        f"{path.name} is not an image, folder of images or video",
        {"path": str(path), "images": sorted(IMAGE_SUFFIXES), "videos": sorted(VIDEO_SUFFIXES)},
    )


def _skeleton(args: argparse.Namespace) -> Skeleton:
    from spatialtwin.tracking.anthropometric import anthropometric_skeleton

    if args.skeleton is None:
        return anthropometric_skeleton(args.height)
    try:
        return Skeleton.from_json(json.loads(args.skeleton.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpatialTwinError(
            "bad_skeleton",
            f"cannot read skeleton {args.skeleton}: {exc}",
            {"path": str(args.skeleton)},
        ) from exc


def run_track(args: argparse.Namespace) -> int:
    from spatialtwin.tracking.landmarker import LandmarkerOptions
    from spatialtwin.tracking.poses_json import poses_document
    from spatialtwin.tracking.tracker import TrackerOptions, TwinPoseTracker

    kind, frames = iter_frames(args.input, args.fps)
    skeleton = _skeleton(args)
    options = TrackerOptions(mirror=args.mirror, camera_pitch_deg=args.camera_pitch)
    with TwinPoseTracker(skeleton, options, landmarker_options=LandmarkerOptions(args.model)) as tr:
        tracked = [tr.track(rgb, t) for t, rgb in frames]
        height = tr.shopper_height_m
    doc = poses_document(
        tracked,
        model=args.model,
        mirror=bool(args.mirror),
        source=kind,
        shopper_height_m=None if height is None else round(height, 3),
    )
    write_json_atomic(args.output, doc)
    found = sum(f.tracked for f in tracked)
    report = {
        "output": str(args.output),
        "frames": len(tracked),
        "frames_with_person": found,
        "shopper_height_m": doc["shopper_height_m"],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.output}: {len(tracked)} frames, person found in {found}")
    return 0
