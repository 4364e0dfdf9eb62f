"""BVH (Biovision hierarchy) motion capture files: the skeleton, the channels, world transforms.

A BVH file is a joint tree (each joint an OFFSET from its parent in the parent's rest frame, and
the CHANNELS the motion drives) followed by one line of channel values per frame. Rotations
are Euler angles in degrees applied in the order the channels are listed (intrinsic, so
"Zrotation Xrotation Yrotation" is R = Rz · Rx · Ry). Lengths are in the file's unit; the
caller says which (CMU files rescaled by bvh11 are in metres). Only parsing and the format's
own forward kinematics live here; mapping onto a twin's skeleton is the cloth/tracking stages'
business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass(frozen=True)
class BvhClip:
    """A parsed BVH file. End sites are joints named ``<parent>_end`` with no channels."""

    names: tuple[str, ...]
    parents: NDArray[np.int64]  # (J,) −1 for the root; parents come first
    offsets: NDArray[np.float64]  # (J, 3) rest offset from the parent, file units
    channels: tuple[tuple[str, ...], ...]  # per joint, e.g. ("Zrotation", "Xrotation", ...)
    frame_time_s: float
    values: NDArray[np.float64]  # (F, total channels)

    @property
    def frame_count(self) -> int:
        return int(self.values.shape[0])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SpatialTwinError(
                "bad_bvh", f"BVH has no joint {name!r}", {"joints": list(self.names)}
            ) from None

    def world_transforms(self, scale: float = 1.0) -> tuple[NDArray[np.float64], NDArray]:
        """World rotations (F, J, 3, 3) and positions (F, J, 3) of every joint and end site.

        Positions are multiplied by `scale` (e.g. 0.01 for a file in centimetres). At the rest
        pose (all channels zero) every world rotation is the identity.
        """
        nf, nj = self.frame_count, len(self.names)
        rot = np.zeros((nf, nj, 3, 3))
        pos = np.zeros((nf, nj, 3))
        col = 0
        for j, ch in enumerate(self.channels):
            local_p = np.broadcast_to(self.offsets[j] * scale, (nf, 3)).copy()
            local_r = np.broadcast_to(np.eye(3), (nf, 3, 3))
            if ch:
                block = self.values[:, col : col + len(ch)]
                col += len(ch)
                order = "".join(c[0] for c in ch if c.endswith("rotation"))
                rot_cols = [k for k, c in enumerate(ch) if c.endswith("rotation")]
                for k, c in enumerate(ch):
                    if c.endswith("position"):
                        local_p[:, _AXES[c[0]]] += block[:, k] * scale
                if order:
                    # upper-case axes: intrinsic rotations, applied in the listed order
                    local_r = Rotation.from_euler(
                        order.upper(), block[:, rot_cols], degrees=True
                    ).as_matrix()
            p = self.parents[j]
            if p < 0:
                rot[:, j], pos[:, j] = local_r, local_p
            else:
                pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], local_p)
                rot[:, j] = rot[:, p] @ local_r
        return rot, pos


def parse_bvh(text: str) -> BvhClip:
    """Parse BVH text; raises SpatialTwinError("bad_bvh") with the line for malformed input."""
    tokens_by_line = [ln.split() for ln in text.splitlines()]
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    line_no = 0

    def fail(message: str) -> SpatialTwinError:
        return SpatialTwinError("bad_bvh", message, {"line": line_no + 1})

    while line_no < len(tokens_by_line):
        tok = tokens_by_line[line_no]
        if not tok:
            line_no += 1
            continue
        head = tok[0].upper()
        if head == "MOTION":
            break
        if head in ("ROOT", "JOINT"):
            if len(tok) < 2 or (head == "ROOT") != (not stack):
                raise fail("a BVH hierarchy has one ROOT and JOINTs inside it")
            names.append(tok[1])
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
        elif head == "END":
            if not stack:
                raise fail("End Site outside a joint")
            names.append(f"{names[stack[-1]]}_end")
            parents.append(stack[-1])
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
        elif head == "{":
            stack.append(len(names) - 1)
        elif head == "}":
            if not stack:
                raise fail("unbalanced '}'")
            stack.pop()
        elif head == "OFFSET":
            try:
                offsets[stack[-1]] = [float(t) for t in tok[1:4]]
            except (ValueError, IndexError):
                raise fail("OFFSET needs three numbers") from None
        elif head == "CHANNELS":
            try:
                count = int(tok[1])
            except (ValueError, IndexError):
                raise fail("CHANNELS needs a count") from None
            ch = tuple(tok[2 : 2 + count])
            if len(ch) != count or any(
                c[0].upper() not in _AXES or c[1:].lower() not in ("position", "rotation")
                for c in ch
            ):
                raise fail(f"bad channel list {ch}")
            channels[stack[-1]] = tuple(c[0].upper() + c[1:].lower() for c in ch)
        line_no += 1
    if not names or stack:
        raise fail("BVH hierarchy missing or unbalanced")
    try:
        frames = int(tokens_by_line[line_no + 1][-1])
        frame_time = float(tokens_by_line[line_no + 2][-1])
    except (IndexError, ValueError):
        raise fail("MOTION must be followed by 'Frames: N' and 'Frame Time: s'") from None
    width = sum(len(c) for c in channels)
    rows = [t for t in tokens_by_line[line_no + 3 :] if t]
    try:
        values = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        raise fail("motion values must be numbers") from None
    if values.shape != (frames, width) or frame_time <= 0 or not np.all(np.isfinite(values)):
        raise SpatialTwinError(
            "bad_bvh",
            "motion data does not match the hierarchy",
            {"frames": frames, "channels": width, "got": list(values.shape)},
        )
    return BvhClip(
        names=tuple(names),
        parents=np.asarray(parents, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.float64),
        channels=tuple(channels),
        frame_time_s=frame_time,
        values=values,
    )


def read_bvh(path: str | Path) -> BvhClip:
    """Read and parse a BVH file (ASCII)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpatialTwinError("bad_bvh", "cannot read BVH file", {"path": str(path)}) from exc
    return parse_bvh(text)
