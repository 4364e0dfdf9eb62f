"""Adaptive quality: keep a session's cloth stage inside its frame budget by choosing a level.

The cloth thread's work per frame (skin, collide and step, carry to the display mesh, encode)
must fit one frame interval, or frames pile up behind it and are dropped (latest wins). After
every frame the controller takes that stage's time into an exponential moving average per
level, then:

- **coarser** when the average passes `downgrade_fraction` of the budget (sustained, not one
  slow frame: the average needs `dwell_frames` frames at a level before it is trusted, or
  `urgent_frames` when it is over the whole budget by half), straight to the finest coarser
  level whose cost, scaled by vertex count, fits,
- **finer** when the average is under `upgrade_fraction` of the budget and the finer level's
  cost, as measured when it last ran (or scaled by vertex count if it never ran), fits under
  `downgrade_fraction` with a margin; a level that had to be left is not retried for
  `retry_s`, doubled each time it fails again (no oscillation on a machine that is just too
  slow),
- **rate-limited** when the coarsest level is still over budget: the session then delivers
  results at the rate the cloth keeps up with (stale frames dropped) and says so.

`QualityState.reason` says in words why the session is where it is; results carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QualityOptions:
    """Budget (seconds per frame) and thresholds (fractions of it) of adaptive quality."""

    budget_s: float = 1.0 / 30.0
    downgrade_fraction: float = 0.85
    upgrade_fraction: float = 0.5
    smoothing: float = 0.15  # weight of the newest frame in the moving average
    dwell_frames: int = 20
    urgent_frames: int = 4
    warmup_frames: int = 2  # frames after a start or a switch left out (fresh contacts search)
    retry_s: float = 5.0

    def __post_init__(self) -> None:
        if not (0.001 <= self.budget_s <= 1.0):
            raise ValueError("budget_s must be 1 ms .. 1 s")
        if not 0.0 < self.upgrade_fraction < self.downgrade_fraction <= 1.0:
            raise ValueError("need 0 < upgrade_fraction < downgrade_fraction ≤ 1")
        if not 0.0 < self.smoothing <= 1.0 or self.dwell_frames < 1 or self.urgent_frames < 1:
            raise ValueError("smoothing must be in (0, 1], dwell_frames and urgent_frames ≥ 1")


QUALITY_DEFAULTS = QualityOptions()


@dataclass(frozen=True)
class QualityState:
    """Where adaptive quality stands after a frame (the result's `quality` block)."""

    level: int
    vertices: int
    stage_ms: float  # moving average of the cloth stage at this level
    rate_limited: bool
    reason: str
    changed: bool  # the level changed after this frame

    def to_json(self) -> dict[str, object]:
        return {
            "cloth_level": self.level,
            "cloth_vertices": self.vertices,
            "cloth_stage_ms": round(self.stage_ms, 2),
            "rate_limited": self.rate_limited,
            "reason": self.reason,
        }


class AdaptiveQuality:
    """Chooses the cloth level frame by frame (see the module doc). Levels are ordered fine to
    coarse; `vertex_counts[i]` is level i's vertex count."""

    def __init__(
        self,
        vertex_counts: tuple[int, ...],
        options: QualityOptions = QUALITY_DEFAULTS,
        level: int = 0,
        adaptive: bool = True,
    ) -> None:
        if not vertex_counts or not 0 <= level < len(vertex_counts):
            raise ValueError("need at least one level and a start level among them")
        self.options = options
        self.counts = tuple(int(c) for c in vertex_counts)
        self.adaptive = adaptive
        self.level = level
        self._avg: list[float | None] = [None] * len(self.counts)
        self._frames_here = 0
        self._retry_after_s = [0.0] * len(self.counts)
        self._backoff_s = [options.retry_s] * len(self.counts)
        self._reason = "started at the finest level" if level == 0 else "started coarse"

    def _estimate_s(self, level: int) -> float | None:
        """A level's cost: measured, else the current level's scaled by vertex count."""
        measured = self._avg[level]
        if measured is not None:
            return measured
        here = self._avg[self.level]
        return None if here is None else here * self.counts[level] / self.counts[self.level]

    def observe(self, stage_s: float, now_s: float) -> QualityState:
        """Take one frame's cloth-stage time (seconds) at the current level."""
        o = self.options
        warm = self._frames_here >= o.warmup_frames
        if warm and np.isfinite(stage_s) and stage_s >= 0.0:
            prev = self._avg[self.level]
            self._avg[self.level] = (
                stage_s if prev is None else (1.0 - o.smoothing) * prev + o.smoothing * stage_s
            )
        self._frames_here += 1
        avg = self._avg[self.level] or 0.0
        over = avg > o.downgrade_fraction * o.budget_s
        coarsest = self.level == len(self.counts) - 1
        changed = False
        urgent = avg > 1.5 * o.budget_s and self._frames_here >= o.warmup_frames + o.urgent_frames
        if self.adaptive and (self._frames_here >= o.dwell_frames or urgent):
            if over and not coarsest:
                left = self.level
                self._retry_after_s[left] = now_s + self._backoff_s[left]
                self._backoff_s[left] *= 2.0
                target = len(self.counts) - 1
                for k in range(left + 1, len(self.counts)):
                    if avg * self.counts[k] / self.counts[left] < o.downgrade_fraction * o.budget_s:
                        target = k
                        break
                self._switch(target)
                self._reason = (
                    f"cloth stage {1e3 * avg:.1f} ms over {o.downgrade_fraction:.0%} of the "
                    f"{1e3 * o.budget_s:.1f} ms budget at level {left}: coarser"
                )
                changed = True
            elif self.level > 0 and avg < o.upgrade_fraction * o.budget_s:
                finer = self.level - 1
                cost = self._estimate_s(finer)
                fits = cost is not None and cost < 0.9 * o.downgrade_fraction * o.budget_s
                if fits and now_s >= self._retry_after_s[finer]:
                    self._switch(finer)
                    self._reason = f"cloth stage {1e3 * avg:.1f} ms leaves room: finer"
                    changed = True
        rate_limited = over and self.level == len(self.counts) - 1
        if rate_limited and not changed:
            self._reason = (
                f"cloth stage {1e3 * avg:.1f} ms at the coarsest level is over the "
                f"{1e3 * o.budget_s:.1f} ms budget: results at a lower rate"
            )
        stage = self._avg[self.level]
        return QualityState(
            level=self.level,
            vertices=self.counts[self.level],
            stage_ms=1e3 * (stage if stage is not None else avg),
            rate_limited=rate_limited,
            reason=self._reason,
            changed=changed,
        )

    def _switch(self, level: int) -> None:
        # the new level's old average (if it ran before) carries on; dwell before trusting it
        self.level = level
        self._frames_here = 0
