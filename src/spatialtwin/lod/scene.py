"""The one in-memory document every LOD step reads and writes: meshes in metres plus a rig.

A look (a twin and its draped garments), a twin alone, or any GLB read from disk all become a
`LodScene`, so the simplifier, the culling, the error measure and the GLB writer never care
where the geometry came from. Vertices are world-space bind-pose positions in metres; a rig's
joints keep their bind-pose local transforms, and inverse bind matrices are derived from them
when a level is written, so every level of a scene shares one skeleton.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.skeleton import JOINT_NAMES, PARENTS
from spatialtwin.body.twin_body import SKIN_TONE

Role = Literal["body", "garment", "other"]


@dataclass
class LodMaterial:
    """A metallic-roughness material; `base_color_image` holds encoded PNG/JPEG bytes."""

    name: str = "material"
    base_color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    roughness: float = 0.7
    metallic: float = 0.0
    double_sided: bool = False
    base_color_image: bytes | None = None
    image_mime: str = "image/png"


@dataclass
class LodRig:
    """Joints with bind-pose local transforms (J, 4, 4), parents (-1 for roots), names."""

    joint_names: list[str]
    parents: NDArray[np.int64]
    rest_local: NDArray[np.float64]

    def rest_world(self) -> NDArray[np.float64]:
        world = np.empty_like(self.rest_local)
        done = np.zeros(len(self.parents), dtype=bool)
        while not done.all():
            for j, p in enumerate(self.parents):
                if done[j] or (p >= 0 and not done[p]):
                    continue
                world[j] = self.rest_local[j] if p < 0 else world[p] @ self.rest_local[j]
                done[j] = True
        return world

    @property
    def joint_count(self) -> int:
        return len(self.joint_names)


@dataclass
class LodMesh:
    """One triangle mesh in world bind-pose metres; `joints` index the scene's rig."""

    name: str
    role: Role
    positions_m: NDArray[np.float64]
    faces: NDArray[np.int64]
    normals: NDArray[np.float64]
    uvs: NDArray[np.float64] | None = None
    joints: NDArray[np.int64] | None = None
    weights: NDArray[np.float64] | None = None
    material: LodMaterial = field(default_factory=LodMaterial)
    # Per-vertex overlays by name (a look's fit map: `_STRAIN` as a fraction, `_EASE` in m);
    # levels keep them for the vertices they keep.
    scalars: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def skinned(self) -> bool:
        return self.joints is not None and self.weights is not None

    @property
    def triangle_count(self) -> int:
        return len(self.faces)

    def with_faces(self, faces: NDArray[np.int64]) -> LodMesh:
        """This mesh keeping only the vertices `faces` uses, renumbered in first-use order."""
        used, inverse = np.unique(faces.ravel(), return_inverse=True)
        pick = lambda a: None if a is None else a[used]  # noqa: E731
        return replace(
            self,
            positions_m=self.positions_m[used],
            faces=inverse.reshape(-1, 3).astype(np.int64),
            normals=self.normals[used],
            uvs=pick(self.uvs),
            joints=pick(self.joints),
            weights=pick(self.weights),
            scalars={name: values[used] for name, values in self.scalars.items()},
        )

    def static(self) -> LodMesh:
        """This mesh where it is shown, without its skin: it no longer follows a rig."""
        return replace(self, joints=None, weights=None)


@dataclass
class LodScene:
    """Meshes sharing one optional rig, plus provenance carried into every level's extras."""

    meshes: list[LodMesh]
    rig: LodRig | None = None
    name: str = "scene"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def triangle_count(self) -> int:
        return sum(m.triangle_count for m in self.meshes)

    def bounds_m(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        pts = np.concatenate([m.positions_m for m in self.meshes])
        return pts.min(axis=0), pts.max(axis=0)

    def content_hash(self) -> str:
        """SHA-256 of everything a level depends on: a changed vertex gives a new key."""
        h = hashlib.sha256(b"spatialtwin-lod-scene-v1")
        if self.rig is not None:
            h.update(repr((self.rig.joint_names, self.rig.parents.tolist())).encode())
            h.update(np.ascontiguousarray(self.rig.rest_local, dtype=np.float64).tobytes())
        for m in self.meshes:
            h.update(repr((m.name, m.role)).encode())
            for arr in (m.positions_m, m.faces, m.normals, m.uvs, m.joints, m.weights):
                h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
            mat = m.material
            h.update(repr((mat.name, mat.base_color, mat.roughness, mat.metallic)).encode())
            h.update(repr((mat.double_sided, mat.image_mime)).encode())
            h.update(mat.base_color_image or b"")
            for name in sorted(m.scalars):
                h.update(name.encode() + np.ascontiguousarray(m.scalars[name]).tobytes())
        return h.hexdigest()

    def baked(self) -> LodScene:
        """The scene as static meshes where they are shown, without its rig.

        A look draped in a pose is a sculpture: its garments were simulated into that pose and
        would not follow the body into another, so its levels are made of the posed meshes
        and measured in that pose only (no bent poses), and no client re-poses them.
        """
        return replace(self, meshes=[m.static() for m in self.meshes], rig=None)


def translation_matrix(t: NDArray[np.float64]) -> NDArray[np.float64]:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def scene_from_twin_body(
    body: Any, *, name: str = "twin", extras: dict[str, Any] | None = None
) -> LodScene:
    """A twin (`spatialtwin.body.twin_body.TwinBody`) as a one-mesh scene with its VRM rig."""
    offsets = body.skeleton.rest_local_offsets()
    rig = LodRig(
        list(JOINT_NAMES),
        np.asarray(PARENTS, dtype=np.int64),
        np.stack([translation_matrix(o) for o in offsets]),
    )
    mesh = LodMesh(
        name=name,
        role="body",
        positions_m=np.asarray(body.vertices_m, dtype=np.float64),
        faces=np.asarray(body.faces, dtype=np.int64),
        normals=np.asarray(body.normals, dtype=np.float64),
        uvs=np.asarray(body.uvs, dtype=np.float64),
        joints=np.asarray(body.skin.joints, dtype=np.int64),
        weights=np.asarray(body.skin.weights, dtype=np.float64),
        material=LodMaterial("skin", tuple(SKIN_TONE), roughness=0.65),
    )
    return LodScene([mesh], rig, name=name, extras=dict(extras or {}))
