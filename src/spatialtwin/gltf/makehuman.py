"""MakeHuman's text formats: `.mhclo` proxy bindings, `.mhskel` skeletons, `.mhw` weights.

A `.mhclo` is how MakeHuman clothes sit on its base mesh (hm08): for every garment vertex
three base-mesh vertex indices (counting from 0), barycentric weights and an offset in the
base mesh's units (decimetres), the offset scaled per axis by the ratio of two reference
vertices' distance on the current body to the distance recorded in the file (`x_scale i j d`).
The format has no specification beyond MakeHuman's own `proxy.py`; this reader follows it and
refuses what it cannot trust (sizes, indices and numbers are checked before arrays are built).

References: MakeHuman 1.1 `apps/proxy.py` (`loadTextProxy`, `TMatrix.getScaleData`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.binding import ProxyBinding

MAX_MHCLO_BYTES = 8 * 1024 * 1024
MAX_BINDING_VERTICES = 500_000
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_BONES = 1024  # MakeHuman's default skeleton has 163; parents are resolved in O(bones²)
HM08_VERTEX_COUNT = 19158  # vertices of MakeHuman's hm08 base mesh (base.obj)


def _bad(message: str, detail: dict[str, Any]) -> SpatialTwinError:
    return SpatialTwinError("bad_mhclo", message, detail, status=422)


def _finite(token: str, line_no: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _bad(f".mhclo line {line_no}: {token!r} is not a number", {"line": line_no}) from None
    if not math.isfinite(value):
        raise _bad(f".mhclo line {line_no}: numbers must be finite", {"line": line_no})
    return value


def _index(token: str, line_no: int, vertex_count: int) -> int:
    if not token.isdigit():
        raise _bad(f".mhclo line {line_no}: {token!r} is not a vertex index", {"line": line_no})
    value = int(token)
    if value >= vertex_count:
        raise _bad(
            f".mhclo line {line_no}: vertex {value} is past the base mesh's {vertex_count}",
            {"line": line_no, "vertex": value, "base_vertices": vertex_count},
        )
    return value


def read_mhclo(data: bytes, base_vertex_count: int = HM08_VERTEX_COUNT) -> ProxyBinding:
    """Parse a `.mhclo`; every index is checked against the base mesh's vertex count."""
    if len(data) > MAX_MHCLO_BYTES:
        raise SpatialTwinError(
            "mhclo_too_large",
            f"the .mhclo is {len(data)} bytes; the limit is {MAX_MHCLO_BYTES}",
            {"bytes": len(data), "limit": MAX_MHCLO_BYTES},
            status=413,
        )
    text = data.decode("utf-8", errors="replace")
    basemesh, name, obj_file = "hm08", "", ""
    scale: list[tuple[int, int, float] | None] = [None, None, None]
    refs: list[tuple[int, int, int]] = []
    weights: list[tuple[float, float, float]] = []
    offsets: list[tuple[float, float, float]] = []
    deleted: list[int] = []
    section = ""
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        key = words[0]
        if section == "verts" and (key[0].isdigit() or key[0] == "-"):
            if len(refs) >= MAX_BINDING_VERTICES:
                raise _bad(
                    f".mhclo binds more than {MAX_BINDING_VERTICES} vertices",
                    {"limit": MAX_BINDING_VERTICES},
                )
            if len(words) == 1:
                i = _index(words[0], line_no, base_vertex_count)
                refs.append((i, i, i))
                weights.append((1.0, 0.0, 0.0))
                offsets.append((0.0, 0.0, 0.0))
            elif len(words) == 9:
                refs.append(tuple(_index(w, line_no, base_vertex_count) for w in words[:3]))
                weights.append(tuple(_finite(w, line_no) for w in words[3:6]))
                offsets.append(tuple(_finite(w, line_no) for w in words[6:9]))
            else:
                raise _bad(
                    f".mhclo line {line_no}: a vertex line has 1 or 9 fields, not {len(words)}",
                    {"line": line_no},
                )
            continue
        if section == "delete_verts" and key[0].isdigit():
            # Ranges are written "a - b", with or without the spaces.
            for w in " ".join(words).replace(" - ", "-").replace("- ", "-").split():
                if "-" in w:
                    lo, hi = (_index(p, line_no, base_vertex_count) for p in w.split("-", 1))
                    deleted.extend(range(lo, hi + 1))
                else:
                    deleted.append(_index(w, line_no, base_vertex_count))
            continue
        section = ""
        if key in ("verts", "delete_verts"):
            section = key
        elif key in ("x_scale", "y_scale", "z_scale"):
            if len(words) != 4:
                raise _bad(f".mhclo line {line_no}: {key} needs i j distance", {"line": line_no})
            i = _index(words[1], line_no, base_vertex_count)
            j = _index(words[2], line_no, base_vertex_count)
            d = _finite(words[3], line_no)
            if d <= 0:
                raise _bad(f".mhclo line {line_no}: {key} distance must be > 0", {"line": line_no})
            scale["xyz".index(key[0])] = (i, j, d)
        elif key == "basemesh" and len(words) > 1:
            basemesh = words[1]
        elif key == "name" and len(words) > 1:
            name = " ".join(words[1:])[:200]
        elif key == "obj_file" and len(words) > 1:
            obj_file = words[1][:200]
    if not refs:
        raise _bad("the .mhclo binds no vertices (no 'verts' section)", {})
    w = np.asarray(weights, dtype=np.float64)
    if np.any(np.abs(w.sum(axis=1) - 1.0) > 0.05):
        bad = int(np.sum(np.abs(w.sum(axis=1) - 1.0) > 0.05))
        raise _bad("the .mhclo weights of some vertices do not sum to 1", {"vertices": bad})
    return ProxyBinding(
        basemesh=basemesh,
        ref_vertices=np.asarray(refs, dtype=np.int64),
        weights=w,
        offsets=np.asarray(offsets, dtype=np.float64),
        scale_refs=tuple(scale),
        name=name,
        obj_file=obj_file,
        delete_vertices=np.unique(np.asarray(deleted, dtype=np.int64)),
    )


# ---------------------------------------------------------------- skeleton and weights


@dataclass(frozen=True)
class MakeHumanRig:
    """Bones of a `.mhskel` with their head positions on a given base mesh (its units)."""

    bone_names: list[str]
    parents: NDArray[np.int64]  # (B,) −1 for roots
    heads: NDArray[np.float64]  # (B, 3)


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise SpatialTwinError(
            "file_too_large", f"the {what} is larger than {MAX_JSON_BYTES} bytes", status=413
        )
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting past the stack
        raise SpatialTwinError("corrupt_file", f"the {what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SpatialTwinError("corrupt_file", f"the {what} is not a JSON object")
    return doc


def read_mhskel(data: bytes, base_vertices: NDArray[np.floating]) -> MakeHumanRig:
    """Bone heads placed on `base_vertices` (each joint is the mean of its vertex group)."""
    doc = _load_json(data, ".mhskel")
    bones, joints = doc.get("bones"), doc.get("joints")
    if not isinstance(bones, dict) or not isinstance(joints, dict):
        raise SpatialTwinError("corrupt_file", "a .mhskel needs 'bones' and 'joints' objects")
    n = len(base_vertices)
    names = sorted(bones)
    if len(names) > MAX_BONES:
        raise SpatialTwinError(
            "corrupt_file", f"a .mhskel has at most {MAX_BONES} bones", {"bones": len(names)}
        )
    for b in names:
        bone = bones[b]
        parent = bone.get("parent") if isinstance(bone, dict) else None
        if not isinstance(bone, dict) or not (
            parent is None or (isinstance(parent, str) and parent in bones)
        ):
            raise SpatialTwinError(
                "corrupt_file", f"bone {b!r} is not an object with a known parent", {"bone": b}
            )
    order: list[str] = []
    placed: set[str] = set()
    # Parents before children (the file's order is alphabetical).
    while len(order) < len(names):
        progressed = False
        for b in names:
            parent = bones[b].get("parent")
            if b not in placed and (parent is None or parent in placed):
                order.append(b)
                placed.add(b)
                progressed = True
        if not progressed:
            raise SpatialTwinError("corrupt_file", "the .mhskel bones form a cycle")
    heads = np.zeros((len(order), 3))
    for k, b in enumerate(order):
        head = bones[b].get("head")
        group = joints.get(head) if isinstance(head, str) else None
        if not isinstance(group, list) or not group:
            raise SpatialTwinError("corrupt_file", f"bone {b!r} has no head joint group")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in group):
            raise SpatialTwinError("corrupt_file", f"bone {b!r} has a joint group of non-indices")
        idx = np.asarray(group, dtype=np.int64) if max(map(abs, group)) < 2**62 else None
        if idx is None or idx.min() < 0 or idx.max() >= n:
            raise SpatialTwinError("corrupt_file", f"bone {b!r} indexes missing vertices")
        heads[k] = np.asarray(base_vertices, dtype=np.float64)[idx].mean(axis=0)
    index = {b: k for k, b in enumerate(order)}
    parents = np.array(
        [index[bones[b]["parent"]] if bones[b].get("parent") else -1 for b in order],
        dtype=np.int64,
    )
    return MakeHumanRig(order, parents, heads)


def read_mhw(data: bytes, bone_names: list[str], vertex_count: int) -> NDArray[np.float64]:
    """Dense (vertices × bones) weights of a `.mhw`, rows normalised where non-zero."""
    doc = _load_json(data, ".mhw")
    weights = doc.get("weights")
    if not isinstance(weights, dict):
        raise SpatialTwinError("corrupt_file", "a .mhw needs a 'weights' object")
    index = {b: k for k, b in enumerate(bone_names)}
    dense = np.zeros((vertex_count, len(bone_names)))
    for bone, pairs in weights.items():
        if bone not in index or not isinstance(pairs, list):
            continue
        try:
            arr = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError, OverflowError):  # not [index, weight] number pairs
            arr = None
        if arr is None or not np.isfinite(arr).all():
            raise SpatialTwinError("corrupt_file", f"the .mhw weights of {bone!r} are not pairs")
        if not len(arr):
            continue
        if arr[:, 0].min() < 0 or arr[:, 0].max() >= vertex_count:
            raise SpatialTwinError("corrupt_file", f"the .mhw weights of {bone!r} are out of range")
        vi = arr[:, 0].astype(np.int64)
        dense[vi, index[bone]] += arr[:, 1]
    total = dense.sum(axis=1, keepdims=True)
    return np.divide(dense, total, out=np.zeros_like(dense), where=total > 0)


def obj_vertex_positions(data: bytes) -> NDArray[np.float64]:
    """The `v` lines of an OBJ in file order (the indices a `.mhclo` refers to)."""
    rows = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith("v "):
            parts = line.split()
            if len(parts) < 4:
                raise SpatialTwinError("corrupt_file", "an OBJ vertex line has under 3 numbers")
            rows.append(parts[1:4])
            if len(rows) > MAX_BINDING_VERTICES:
                raise SpatialTwinError(
                    "too_many_vertices",
                    f"the OBJ has more than {MAX_BINDING_VERTICES} vertices",
                    status=413,
                )
    try:
        positions = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise SpatialTwinError("corrupt_file", "an OBJ vertex line is not numbers") from None
    if not np.isfinite(positions).all():
        raise SpatialTwinError("non_finite_vertices", "the OBJ has NaN or infinite vertices")
    return positions
