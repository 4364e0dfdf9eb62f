"""`poses.json`: the tracker's offline output, one entry per frame (see POSES.md).

    {"frames": [{"t": seconds,
                 "landmarks": [[x, y, z, visibility] × 33],
                 "world": [[x, y, z, visibility] × 33],
                 "pose": {"root": [x, y, z], "joints": {"<joint name>": [x, y, z, w], ...}}}]}

`landmarks` are MediaPipe's normalised image landmarks (x, y in 0..1 of the frame's width and
height, z relative depth on x's scale) of the un-mirrored frame; `world` are MediaPipe's world
landmarks in metres (origin at the hip midpoint, +x image right, +y down, -z toward the camera);
both are in MediaPipe's landmark order (`landmarks.LANDMARK_NAMES`). `pose` is the twin's pose
(`spatialtwin.body.pose.Pose.to_json`): root translation in metres and one local quaternion
`[x, y, z, w]` per canonical joint (VRM humanoid bone names), mirrored if the run was. A frame
where nobody was found has `"landmarks": null, "world": null` and the held/eased pose.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.landmarks import LANDMARK_COUNT
from spatialtwin.tracking.tracker import TrackedFrame


def _rows(values: np.ndarray) -> list[list[float]]:
    return [[round(float(c), 6) for c in row] for row in values]


def frame_to_json(frame: TrackedFrame) -> dict[str, Any]:
    lms = frame.landmarks
    return {
        "t": round(float(frame.t_s), 6),
        "landmarks": _rows(lms.image) if lms is not None else None,
        "world": _rows(lms.world) if lms is not None else None,
        "pose": frame.pose.to_json(),
    }


def poses_document(frames: Iterable[TrackedFrame], **meta: Any) -> dict[str, Any]:
    """The whole `poses.json` document; `meta` (e.g. model, mirror) goes beside `frames`."""
    return {**meta, "frames": [frame_to_json(f) for f in frames]}


def read_poses_document(data: Any) -> list[tuple[float, Pose]]:
    """(t, Pose) per frame of a `poses.json` document, checking its shape."""
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise SpatialTwinError("bad_poses_json", "poses.json needs a 'frames' list")
    out = []
    for i, item in enumerate(data["frames"]):
        try:
            t = float(item["t"])
            for key in ("landmarks", "world"):
                rows = item.get(key)
                if rows is not None and np.asarray(rows).shape != (LANDMARK_COUNT, 4):
                    raise ValueError(f"{key} must be {LANDMARK_COUNT} rows of 4 numbers")
            out.append((t, Pose.from_json(item["pose"])))
        except (KeyError, TypeError, ValueError, PoseError) as exc:
            raise SpatialTwinError(
                "bad_poses_json", f"frame {i} of poses.json is malformed: {exc}", {"frame": i}
            ) from exc
    return out
