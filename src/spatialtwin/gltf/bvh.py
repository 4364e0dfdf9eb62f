"""BVH (Biovision hierarchy) motion capture files: the skeleton, the channels, world transforms.

A BVH file is a joint tree (each joint an OFFSET from its parent in the parent's rest frame, and
the CHANNELS the motion drives) followed by one line of channel values per frame. Rotations
are Euler angles in degrees applied in the order the channels are listed (intrinsic, so
"Zrotation Xrotation Yrotation" is R = Rz · Rx · Ry). Lengths are in the file's unit; the
caller says which (CMU files rescaled by bvh11 are in metres). Only the parsing lives here;
the clip it returns (`tracking.mocap_clip.BvhClip`, with the format's forward kinematics) is
plain data owned by the stages that map it onto a twin's skeleton.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.mocap_clip import AXES, BvhClip


def parse_bvh(text: str) -> BvhClip:
    """Parse BVH text; raises SpatialTwinError("bad_bvh") with the line for malformed input."""
    tokens_by_line = [ln.split() for ln in text.splitlines()]
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    line_no = 0
    opens = False  # the last ROOT/JOINT/End Site line still waits for its "{"

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
            opens = True
        elif head == "END":
            if not stack:
                raise fail("End Site outside a joint")
            names.append(f"{names[stack[-1]]}_end")
            parents.append(stack[-1])
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
            opens = True
        elif head == "{":
            if not opens:
                raise fail("'{' that opens no ROOT, JOINT or End Site")
            stack.append(len(names) - 1)
            opens = False
        elif head in ("OFFSET", "CHANNELS") and not stack:
            raise fail(f"{head} outside a joint")
        elif head == "}":
            if not stack:
                raise fail("unbalanced '}'")
            stack.pop()
        elif head == "OFFSET":
            offset = [float(t) for t in tok[1:4] if _is_number(t)]
            if len(offset) != 3 or not all(math.isfinite(c) for c in offset):
                raise fail("OFFSET needs three finite numbers")
            offsets[stack[-1]] = offset
        elif head == "CHANNELS":
            try:
                count = int(tok[1])
            except (ValueError, IndexError):
                raise fail("CHANNELS needs a count") from None
            ch = tuple(tok[2 : 2 + count])
            if len(ch) != count or any(
                c[0].upper() not in AXES or c[1:].lower() not in ("position", "rotation")
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
    if any(len(r) != width for r in rows):
        raise SpatialTwinError(
            "bad_bvh",
            f"every motion line holds one value per channel ({width})",
            {"channels": width, "got": sorted({len(r) for r in rows})[:8]},
        )
    try:
        values = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        raise fail("motion values must be numbers") from None
    if (
        values.shape != (frames, width)
        or not (math.isfinite(frame_time) and frame_time > 0)
        or not np.all(np.isfinite(values))
    ):
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


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_bvh(path: str | Path) -> BvhClip:
    """Read and parse a BVH file (ASCII)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpatialTwinError("bad_bvh", "cannot read BVH file", {"path": str(path)}) from exc
    return parse_bvh(text)
