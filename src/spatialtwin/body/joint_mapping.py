"""Mapping a source rig's joints onto the canonical (VRM humanoid) skeleton.

Rigs name the same bones differently: Mixamo `mixamorig:LeftForeArm`, Blender/Rigify
`DEF-forearm.L`, Unreal `lowerarm_l`, MakeHuman `lowerarm01.L`, VRoid `J_Bip_L_LowerArm`, VRM
`leftLowerArm`, glTF sample rigs `Skeleton_arm_joint_L__3_`. A name is reduced to a side
(left/right/none) and a side-less key (`forearm`), and the key is looked up in one alias table.
What names cannot settle, the hierarchy does: the unmapped joints between the hips and the neck
are spread over spine/chest/upperChest in chain order, and limb chains named only
`arm`/`leg` plus a number are assigned by depth in the hierarchy, not by their numbers (in
CesiumMan the left and right arm chains are numbered in opposite directions).

An explicit override `{canonical_name: source_joint_name}` always wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES
from spatialtwin.errors import SpatialTwinError

# Side-less key -> (canonical name without side, priority; lower wins when keys compete).
_CENTRE_ALIASES: dict[str, tuple[str, int]] = {
    "hips": ("hips", 0),
    "hip": ("hips", 0),
    "pelvis": ("hips", 0),
    "torso1": ("hips", 1),
    "root": ("hips", 2),
    "chest": ("chest", 0),
    "upperchest": ("upperChest", 0),
    "neck": ("neck", 0),
    "neck01": ("neck", 0),
    "neck1": ("neck", 1),
    "head": ("head", 0),
    "neck2": ("head", 2),
}
_SIDED_ALIASES: dict[str, tuple[str, int]] = {
    "shoulder": ("Shoulder", 0),
    "clavicle": ("Shoulder", 0),
    "collar": ("Shoulder", 1),
    "upperarm": ("UpperArm", 0),
    "arm": ("UpperArm", 0),
    "upperarm01": ("UpperArm", 0),
    "uparm": ("UpperArm", 0),
    "humerus": ("UpperArm", 1),
    "lowerarm": ("LowerArm", 0),
    "forearm": ("LowerArm", 0),
    "lowerarm01": ("LowerArm", 0),
    "elbow": ("LowerArm", 1),
    "hand": ("Hand", 0),
    "wrist": ("Hand", 1),
    "upperleg": ("UpperLeg", 0),
    "upleg": ("UpperLeg", 0),
    "thigh": ("UpperLeg", 0),
    "upperleg01": ("UpperLeg", 0),
    "hip": ("UpperLeg", 1),
    "lowerleg": ("LowerLeg", 0),
    "leg": ("LowerLeg", 0),
    "calf": ("LowerLeg", 0),
    "shin": ("LowerLeg", 0),
    "lowerleg01": ("LowerLeg", 0),
    "knee": ("LowerLeg", 1),
    "foot": ("Foot", 0),
    "ankle": ("Foot", 1),
    "toes": ("Toes", 0),
    "toebase": ("Toes", 0),
    "toe": ("Toes", 0),
    "ball": ("Toes", 0),
    "toe11": ("Toes", 1),
}
# Blender's Rigify names its whole trunk `spine`, `spine.001`, … `spine.006`.
_RIGIFY_TRUNK = {"spine": ("hips", 0), "spine004": ("neck", 0), "spine006": ("head", 0)}

# Tokens that say nothing about which bone it is (namespaces, rig prefixes, filler words).
_NOISE_TOKENS = {
    "mixamorig",
    "def",
    "org",
    "mch",
    "j",
    "bip",
    "bip01",
    "bip001",
    "c",
    "skeleton",
    "joint",
    "jnt",
    "bone",
    "armature",
    "cc",
    "base",
    "b",
}
_LEFT_TOKENS = {"l", "left", "lft"}
_RIGHT_TOKENS = {"r", "right", "rgt"}
_SIDED_ORDER = {
    "arm": ("Shoulder", "UpperArm", "LowerArm", "Hand"),
    "leg": ("UpperLeg", "LowerLeg", "Foot", "Toes"),
}
_TRUNK_SLOTS = ("spine", "chest", "upperChest")
REQUIRED_JOINTS = (
    "hips",
    "leftUpperArm",
    "leftLowerArm",
    "rightUpperArm",
    "rightLowerArm",
    "leftUpperLeg",
    "leftLowerLeg",
    "rightUpperLeg",
    "rightLowerLeg",
)


@dataclass(frozen=True)
class NameParts:
    side: str | None  # "left", "right" or None
    key: str  # lower-case, side-less, no separators: "upperarm", "spine001", "arm4"


def split_joint_name(name: str) -> NameParts:
    """Side and side-less key of a joint name from any of the common rig families."""
    base = re.split(r"[:|]", name)[-1]
    # Split camelCase ("LeftUpLeg" -> "Left Up Leg") before lower-casing, then on separators.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", base)
    tokens = [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    side = None
    kept: list[str] = []
    for t in tokens:
        if t in _LEFT_TOKENS and side is None:
            side = "left"
        elif t in _RIGHT_TOKENS and side is None:
            side = "right"
        elif t not in _NOISE_TOKENS:
            kept.append(t)
    key = "".join(kept)
    return NameParts(side, key)


@dataclass
class JointMapping:
    """canonical name -> source joint index, plus how each canonical joint was decided."""

    source_of: dict[str, int]
    method: dict[str, str]  # canonical name -> "override" | "name" | "chain"

    def canonical_of_source(self, parents: NDArray[np.int64]) -> NDArray[np.int64]:
        """For every source joint, the canonical joint its skin weights go to.

        A mapped joint keeps its own; an unmapped one inherits its nearest mapped ancestor's;
        one with no mapped ancestor (an Unreal `root` under the pelvis) goes to the hips.
        """
        direct = np.full(len(parents), -1, dtype=np.int64)
        for canon, src in self.source_of.items():
            direct[src] = JOINT_INDEX[canon]
        out = np.empty(len(parents), dtype=np.int64)
        for j in range(len(parents)):
            k = j
            while k >= 0 and direct[k] < 0:
                k = int(parents[k])
            out[j] = direct[k] if k >= 0 else JOINT_INDEX["hips"]
        return out


def _depths(parents: NDArray[np.int64]) -> NDArray[np.int64]:
    depth = np.zeros(len(parents), dtype=np.int64)
    for j in range(len(parents)):
        k, d = j, 0
        while parents[k] >= 0:
            k, d = int(parents[k]), d + 1
        depth[j] = d
    return depth


def _ancestors(j: int, parents: NDArray[np.int64]) -> list[int]:
    """Ancestors of joint j, nearest first."""
    out = []
    k = int(parents[j])
    while k >= 0:
        out.append(k)
        k = int(parents[k])
    return out


def map_joints(
    names: list[str],
    parents: NDArray[np.int64],
    override: Mapping[str, str] | None = None,
) -> JointMapping:
    """Assign source joints to canonical joints by override, names, then hierarchy."""
    parents = np.asarray(parents, dtype=np.int64)
    depth = _depths(parents)
    index_of = {n: i for i, n in enumerate(names)}
    source_of: dict[str, int] = {}
    method: dict[str, str] = {}

    # (1) Explicit override.
    for canon, src in (override or {}).items():
        if canon not in JOINT_INDEX:
            raise SpatialTwinError(
                "invalid_joint_map",
                f"joint map names {canon!r}, which is not a canonical joint",
                {"joint": canon, "canonical": list(JOINT_NAMES)},
                status=422,
            )
        if src not in index_of:
            raise SpatialTwinError(
                "invalid_joint_map",
                f"joint map sends {canon!r} to {src!r}, which the file does not have",
                {"joint": src, "source_joints": names},
                status=422,
            )
        source_of[canon] = index_of[src]
        method[canon] = "override"
    taken = set(source_of.values())

    # (2) Names.
    parts = [split_joint_name(n) for n in names]
    keys = {p.key for p in parts if p.side is None}
    rigify = "spine001" in keys and "spine" in keys
    candidates: dict[str, list[tuple[int, int, int]]] = {}
    for j, p in enumerate(parts):
        hit = None
        if p.side is None:
            hit = (_RIGIFY_TRUNK.get(p.key) if rigify else None) or _CENTRE_ALIASES.get(p.key)
            if hit is None and p.key == "spine" and not rigify:
                hit = ("spine", 0)
            canon = hit[0] if hit else None
        else:
            hit = _SIDED_ALIASES.get(p.key)
            canon = p.side + hit[0] if hit else None
        if canon and hit and j not in taken:
            candidates.setdefault(canon, []).append((hit[1], int(depth[j]), j))
    for canon, found in candidates.items():
        if canon not in source_of:
            j = min(found)[2]
            if j not in taken:
                source_of[canon] = j
                method[canon] = "name"
                taken.add(j)

    # (3) Limb chains named only "arm"/"leg" + number: order by depth, not by number.
    chains: dict[tuple[str, str], list[int]] = {}
    numbered: set[tuple[str, str]] = set()
    for j, p in enumerate(parts):
        m = re.fullmatch(r"(arm|leg)(\d*)", p.key)
        if p.side and m:
            chains.setdefault((p.side, m.group(1)), []).append(j)
            if m.group(2):
                numbered.add((p.side, m.group(1)))
    for (side, limb), members in chains.items():
        if (side, limb) not in numbered:
            continue
        for canon in [c for c, j in source_of.items() if j in members and method[c] == "name"]:
            taken.discard(source_of.pop(canon))
            del method[canon]
        members = [j for j in members if j not in source_of.values()]
        members.sort(key=lambda j: depth[j])
        slots = list(_SIDED_ORDER[limb])
        if limb == "arm" and len(members) < 4:
            slots = slots[1:]
        for j, slot in zip(members, slots, strict=False):
            canon = side + slot
            if canon not in source_of:
                source_of[canon] = j
                method[canon] = "chain"
                taken.add(j)

    # (4) The trunk: unmapped joints strictly between the hips and the neck/arms, in order.
    if "hips" in source_of:
        top = next(
            (
                source_of[n]
                for n in ("neck", "head", "leftShoulder", "leftUpperArm")
                if n in source_of
            ),
            None,
        )
        if top is not None:
            hips = source_of["hips"]
            path = _ancestors(top, parents)
            if hips in path:
                between = [j for j in reversed(path[: path.index(hips)]) if j not in taken]
                free = [s for s in _TRUNK_SLOTS if s not in source_of]
                picks = _spread(between, len(free))
                for slot, j in zip(free, picks, strict=False):
                    source_of[slot] = j
                    method[slot] = "chain"
                    taken.add(j)
    return JointMapping(source_of, method)


def _spread(chain: list[int], slots: int) -> list[int]:
    """Pick `slots` joints from a bottom-up chain: first, last and evenly between."""
    if slots <= 0 or not chain:
        return []
    if len(chain) <= slots:
        return chain
    if slots == 1:
        return [chain[0]]
    idx = np.round(np.linspace(0, len(chain) - 1, slots)).astype(int)
    return [chain[i] for i in idx]


def missing_required(mapping: JointMapping) -> list[str]:
    missing = [n for n in REQUIRED_JOINTS if n not in mapping.source_of]
    if "neck" not in mapping.source_of and "head" not in mapping.source_of:
        missing.append("head")
    return missing
