"""Linear-blend skinning: the hot path that turns a pose into body vertices.

The per-vertex blended matrix is a sparse (vertices × joints) weight matrix times the joints'
flattened 3×4 matrices, so one sparse product does the blending for every vertex at once; a
mirror frame skins the body this way every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

MAX_INFLUENCES = 4


@dataclass(frozen=True)
class SkinWeights:
    """Up to four (joint, weight) influences per vertex; weights of a vertex sum to 1."""

    joints: NDArray[np.uint16]  # (N, 4)
    weights: NDArray[np.float32]  # (N, 4)

    def __post_init__(self) -> None:
        if self.joints.shape != self.weights.shape or self.joints.shape[1] != MAX_INFLUENCES:
            raise ValueError("skin joints and weights must both be (N, 4)")

    @classmethod
    def from_dense(cls, dense: NDArray[np.floating], min_weight: float = 1e-3) -> SkinWeights:
        """Keep each vertex's four largest weights of an (N, J) matrix and renormalise."""
        dense = np.asarray(dense, dtype=np.float64)
        n, j = dense.shape
        k = min(MAX_INFLUENCES, j)
        top = np.argsort(-dense, axis=1)[:, :k]
        w = np.take_along_axis(dense, top, axis=1)
        w[w < min_weight] = 0.0
        total = w.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            raise ValueError("a vertex has no joint influence")
        w /= total
        joints = np.zeros((n, MAX_INFLUENCES), dtype=np.uint16)
        weights = np.zeros((n, MAX_INFLUENCES), dtype=np.float32)
        joints[:, :k] = top
        weights[:, :k] = w
        # Unused slots point at the first joint with weight 0 (glTF validators expect this).
        joints[weights == 0] = 0
        order = np.argsort(-weights, axis=1, kind="stable")
        joints = np.take_along_axis(joints, order, axis=1)
        weights = np.take_along_axis(weights, order, axis=1)
        joints[weights == 0] = 0
        # Re-normalise in float32 so the stored weights sum to 1 within float32 precision.
        weights /= weights.sum(axis=1, keepdims=True)
        return cls(joints, weights.astype(np.float32))

    def to_dense(self, joint_count: int) -> NDArray[np.float64]:
        return np.asarray(self.as_sparse(joint_count).todense())

    def as_sparse(self, joint_count: int) -> sp.csr_matrix:
        n = self.joints.shape[0]
        rows = np.repeat(np.arange(n), MAX_INFLUENCES)
        w = self.weights.astype(np.float64)
        w /= w.sum(axis=1, keepdims=True)  # exact partition of unity in float64
        m = sp.csr_matrix(
            (w.ravel(), (rows, self.joints.ravel().astype(np.int64))), shape=(n, joint_count)
        )
        m.sum_duplicates()
        m.eliminate_zeros()
        return m


class Skinner:
    """Skins one body's rest vertices again and again for new joint matrices."""

    def __init__(
        self,
        rest_vertices_m: NDArray[np.floating],
        skin: SkinWeights,
        joint_count: int,
        rest_normals: NDArray[np.floating] | None = None,
    ) -> None:
        self.rest = np.ascontiguousarray(rest_vertices_m, dtype=np.float64)
        self.rest_normals = (
            None if rest_normals is None else np.ascontiguousarray(rest_normals, dtype=np.float64)
        )
        self.weights = skin.as_sparse(joint_count)
        self.joint_count = joint_count
        self._x = self.rest[:, 0:1]
        self._y = self.rest[:, 1:2]
        self._z = self.rest[:, 2:3]

    def blended(self, joint_matrices: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, 12) per-vertex matrices, columns first: [c0 c1 c2 translation]."""
        cols = np.ascontiguousarray(joint_matrices.transpose(0, 2, 1)).reshape(self.joint_count, 12)
        return self.weights @ cols

    def vertices(self, joint_matrices: NDArray[np.float64]) -> NDArray[np.float64]:
        """Posed vertex positions (N, 3) in metres for (J, 3, 4) skinning matrices."""
        m = self.blended(joint_matrices)
        return m[:, 0:3] * self._x + m[:, 3:6] * self._y + m[:, 6:9] * self._z + m[:, 9:12]

    def vertices_and_normals(
        self, joint_matrices: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.rest_normals is None:
            raise ValueError("this skinner was built without rest normals")
        m = self.blended(joint_matrices)
        v = m[:, 0:3] * self._x + m[:, 3:6] * self._y + m[:, 6:9] * self._z + m[:, 9:12]
        nx, ny, nz = (self.rest_normals[:, i : i + 1] for i in range(3))
        n = m[:, 0:3] * nx + m[:, 3:6] * ny + m[:, 6:9] * nz
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        return v, n


def skin_vertices(
    rest_vertices_m: NDArray[np.floating],
    skin: SkinWeights,
    joint_matrices: NDArray[np.float64],
) -> NDArray[np.float64]:
    """One-off skinning; build a `Skinner` instead when posing the same body repeatedly."""
    return Skinner(rest_vertices_m, skin, joint_matrices.shape[0]).vertices(joint_matrices)
