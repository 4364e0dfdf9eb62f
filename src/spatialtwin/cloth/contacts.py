"""Body contacts of one garment: explicit simulation state, as Newton's `Contacts`.

Contact detection (`BodyCollider.detect_contacts`) answers, per garment vertex, which collider
triangle is closest within the search radius. Frame to frame the answer barely changes, so the
search starts from last frame's: a garment vertex that rested on the skin walks over the body's
vertex graph from the body vertex it was nearest to. That warm start is state that changes
during simulation, so it lives here, in an object the caller holds and passes to `step`, and
not in the collider: one collider (the posed body) serves any number of garments (layers on
one body, several live sessions), each with its own `Contacts`, and stepping them in any order
gives each the same result as its own collider would.

A `Contacts` starts empty and is sized by the first detection that uses it (one row of walk
seeds per surface the collider searches: the body, plus the layers' shell for a
`LayeredCollider`); from then on it belongs to that garment on colliders of that shape, and a
detection for another garment or another body topology is refused, because its seeds would
index vertices of a different mesh.

Example:
    contacts = Contacts()
    for body_m in frames:
        collider.update(body_m)
        step(model, state, state, None, collider, contacts, dt, settings)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

# Every `RECHECK_PERIOD`-th contact-band vertex (a different eighth each frame) searches the
# grid instead of walking, so a walk that slid into a wrong local minimum is corrected.
RECHECK_PERIOD = 8


def _no_seeds() -> NDArray[np.int32]:
    return np.zeros((0, 0), dtype=np.int32)


@dataclass
class Contacts:
    """What contact detection found for one garment, carried from one frame to the next.

    - ``triangle`` (N,): the closest collider triangle of each garment vertex at the last
      detection, −1 where none lies within the search radius; ``distance_m`` (N,) how far.
    - ``extra_triangle`` (N, k): contacts of the same vertices on other sides of the body (a
      crease, an armpit: see `BodyCollider.detect_contact_sets`), −1 where none; k = 0 when
      the solver keeps one contact per vertex.
    - ``walk_vertex`` (S, N): per collider surface, the body vertex the next detection's walk
      starts from (−1: the vertex was not in the contact band and searches the grid);
      ``walk_triangle`` (S, N) the closest triangle found around it.
    - ``surface_vertex_counts`` (S,): vertex counts of the surfaces the seeds index.
    - ``frame``: detections so far; picks which vertices re-check by grid this time.
    """

    triangle: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    distance_m: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    extra_triangle: NDArray[np.int32] = field(default_factory=_no_seeds)
    walk_vertex: NDArray[np.int32] = field(default_factory=_no_seeds)
    walk_triangle: NDArray[np.int32] = field(default_factory=_no_seeds)
    surface_vertex_counts: tuple[int, ...] = ()
    frame: int = 0

    @property
    def vertex_count(self) -> int:
        """Garment vertices these contacts are for (0 while empty)."""
        return int(self.walk_vertex.shape[1])

    @property
    def is_empty(self) -> bool:
        return not self.surface_vertex_counts

    @property
    def recheck_phase(self) -> int:
        return self.frame % RECHECK_PERIOD

    def bind(self, vertex_count: int, surface_vertex_counts: tuple[int, ...]) -> None:
        """Size empty contacts for a garment of `vertex_count` vertices on a collider whose
        surfaces have `surface_vertex_counts` vertices; refuse contacts sized for another."""
        if self.is_empty:
            s = len(surface_vertex_counts)
            self.walk_vertex = np.full((s, vertex_count), -1, dtype=np.int32)
            self.walk_triangle = np.full((s, vertex_count), -1, dtype=np.int32)
            self.surface_vertex_counts = tuple(surface_vertex_counts)
            return
        same_surfaces = self.surface_vertex_counts == tuple(surface_vertex_counts)
        if self.vertex_count != vertex_count or not same_surfaces:
            raise SpatialTwinError(
                "contacts_mismatch",
                "these contacts belong to another garment or another collider; "
                "each garment needs its own Contacts",
                {
                    "garment_vertices": vertex_count,
                    "contacts_vertices": self.vertex_count,
                    "collider_surfaces": list(surface_vertex_counts),
                    "contacts_surfaces": list(self.surface_vertex_counts),
                },
            )

    def record(
        self,
        triangle: NDArray[np.int32],
        distance_m: NDArray[np.float64],
        extra_triangle: NDArray[np.int32] | None = None,
    ) -> None:
        """Keep one detection's answer and count it (the walk seeds were updated in place)."""
        self.triangle = triangle
        self.distance_m = distance_m
        none = np.zeros((len(triangle), 0), dtype=np.int32)
        self.extra_triangle = none if extra_triangle is None else extra_triangle
        self.frame += 1
