"""One garment simulated live: its current cloth level on the session's shared body collider.

The session moves the collider once per frame (the twin's welded surface in this frame's pose)
and advances every garment on it (`cloth.solver.ClothSim.advance`), each with its own state
and `Contacts`. Changing level carries the cloth over through the display mesh: the display
positions (and velocities) of the running level are bound onto the new level's vertices
(`LiveGarment.level_positions`), so the cloth keeps its shape and motion and the client keeps
its mesh. A garment switched in mid-session starts from its static drape carried into the
current pose by the body's skin weights (`carried_drape`) and pushed out of the posed body.
At a coarser level the display vertices are pushed out of the body as well (`pushed_out`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose, skinning_matrices
from spatialtwin.body.skinning import Skinner
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.collider import (
    BodyCollider,
    DrapeLayer,
    MovingLayeredCollider,
    pushed_out,
)
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.solver import ClothSim, SolverSettings
from spatialtwin.garment.placement import CLEARANCE_MARGIN_M, push_out_of_body
from spatialtwin.live.garments import LiveGarment


def carried_drape(garment: LiveGarment, body: TwinBody, pose: Pose) -> NDArray[np.float64]:
    """The garment's static drape (bind pose) moved into `pose` with the twin's skin weights
    and pushed out of the posed twin: where a switched-in garment starts."""
    skinner = Skinner(garment.drape_positions_m, garment.skin, body.skeleton.joint_count)
    moved = skinner.vertices(skinning_matrices(body.skeleton, pose))
    posed = body.with_vertices(body.posed_vertices(pose))
    clearance = garment.fabric.thickness_m + CLEARANCE_MARGIN_M
    positions, _, _ = push_out_of_body(moved, garment.display_faces, posed, clearance)
    return positions


class GarmentCloth:
    """A `LiveGarment` stepping at one of its levels on a shared `BodyCollider`.

    With `under` (the look's inner garments, already stepping, inner first) it collides with
    them as they are each frame (`MovingLayeredCollider`) on top of the body: the layers of
    the static drape stay apart live. Call `follow_layers` after the inner garments stepped
    and before this one does."""

    def __init__(
        self,
        garment: LiveGarment,
        collider: BodyCollider,
        settings: SolverSettings,
        level: int = 0,
        display_positions_m: NDArray[np.float64] | None = None,
        under: tuple[GarmentCloth, ...] = (),
    ) -> None:
        self.garment = garment
        self.body_collider = collider
        self.under = under
        self.collider: BodyCollider = collider
        if under:
            self.collider = MovingLayeredCollider(
                collider.current_m,
                collider.faces,
                [
                    DrapeLayer(
                        u.shell_positions(), u.garment.display_faces, u.garment.fabric.thickness_m
                    )
                    for u in under
                ],
            )
        self.settings = settings
        x = garment.drape_positions_m if display_positions_m is None else display_positions_m
        self._display_contacts = Contacts()
        self._start(level, np.asarray(x, dtype=np.float64), np.zeros((garment.vertex_count, 3)))

    def shell_positions(self) -> NDArray[np.float64]:
        """(N, 3) display-mesh positions as simulated (no push-out at a coarse level): what
        an outer garment collides with."""
        return self.garment.display_positions(self.level, self.sim.state.positions_m)

    def follow_layers(self) -> None:
        """Move this garment's collider to the body's current pose and the inner garments'
        current positions (no-op without inner garments)."""
        if isinstance(self.collider, MovingLayeredCollider):
            self.collider.follow(
                self.body_collider.current_m, [u.shell_positions() for u in self.under]
            )

    def _start(self, level: int, display_x: NDArray, display_v: NDArray) -> None:
        lvl = self.garment.levels[level]
        x = self.garment.level_positions(level, display_x)
        self.sim = ClothSim(lvl.model, None, None, x, self.settings, collider=self.collider)
        self.sim.state.velocities_m_s[:] = self.garment.level_values(level, display_v)
        self.level = level

    @property
    def vertex_count(self) -> int:
        """Vertices simulated at the current level."""
        return self.sim.model.vertex_count

    def set_level(self, level: int) -> None:
        """Carry the cloth onto another level (same shape and motion, fresh contacts)."""
        if level == self.level:
            return
        binding = self.garment.levels[self.level].display_on_level
        v = self.sim.state.velocities_m_s
        display_v = v if binding is None else binding.interpolate(v)
        self._start(level, self.display_positions(), display_v)

    def advance(self, dt: float) -> None:
        self.sim.advance(dt)

    def display_positions(self) -> NDArray[np.float64]:
        """(N, 3) display-mesh positions in stream order (metres). At a coarser level the
        display vertices between the simulated ones are pushed out of the body too: a coarse
        triangle spans a curved body, and the finer surface it carries would cut into it."""
        x = self.garment.display_positions(self.level, self.sim.state.positions_m)
        if self.level == 0:
            return x
        offset = self.garment.fabric.thickness_m + self.settings.contact_margin_m
        radius = offset + self.settings.detection_margin_m
        return pushed_out(x, self.collider, offset, radius, self._display_contacts)
