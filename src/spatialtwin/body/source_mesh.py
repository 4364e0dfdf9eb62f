"""A body file's triangles as read, before the importer decides units, axes and rig.

The readers in `spatialtwin.gltf` (GLB/glTF, OBJ, PLY) return these plain types, and the
importer (`body.importer.import_scene`) takes them, so the body stage never sees bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass
class SourceRig:
    """A source file's skeleton: joint names, parent indices (-1 for roots), rest positions."""

    joint_names: list[str]
    parents: NDArray[np.int64]
    rest_positions: NDArray[np.float64]  # (J, 3) world space, source units


@dataclass
class SceneMesh:
    """One triangle mesh gathered from a file, world space, source units.

    `face_groups` indexes `group_names` (OBJ groups, glTF mesh names). `skin_joints` index
    `rig.joint_names`. UVs are in glTF's convention (v runs down the image).
    """

    format: str
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    normals: NDArray[np.float64] | None = None
    uvs: NDArray[np.float64] | None = None
    face_groups: NDArray[np.int64] | None = None
    group_names: list[str] = field(default_factory=list)
    skin_joints: NDArray[np.int64] | None = None
    skin_weights: NDArray[np.float64] | None = None
    rig: SourceRig | None = None
    # Index of each vertex's position in the source file (OBJ `v` lines), where vertices were
    # split by UV seams; binding files such as MakeHuman's `.mhclo` address these indices.
    source_index: NDArray[np.int64] | None = None
