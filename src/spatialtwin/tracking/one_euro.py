"""The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) over arrays of coordinates.

A first-order low-pass filter whose cutoff rises with the signal's speed: slow movements get a
low cutoff (little jitter), fast ones a high cutoff (little lag). `min_cutoff_hz` sets the
jitter/lag trade-off at rest, `beta` how fast the cutoff opens with speed (per unit of the
signal per second), `d_cutoff_hz` the smoothing of the speed estimate. Timestamps may be
irregular; the filter uses the true interval between samples.

Note: MediaPipe's PoseLandmarker already applies a One Euro filter to its landmarks in VIDEO
mode, so the tracker leaves this off unless asked (see `tracker.TrackerOptions`); it is meant for
landmarks that arrive unsmoothed (IMAGE mode, other sources) or for extra smoothing on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class OneEuroParams:
    """Filter parameters; the defaults suit metre-scale world landmarks at 15–60 fps."""

    min_cutoff_hz: float = 1.0
    beta: float = 0.5
    d_cutoff_hz: float = 1.0

    def __post_init__(self) -> None:
        if not (self.min_cutoff_hz > 0 and self.d_cutoff_hz > 0 and self.beta >= 0):
            raise ValueError("One Euro cutoffs must be > 0 Hz and beta >= 0")


def smoothing_factor(dt_s: float, cutoff_hz: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Exponential smoothing factor alpha of a first-order low-pass at `cutoff_hz`."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters a fixed-shape array sample by sample; every element has its own cutoff."""

    def __init__(self, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self._t_s: float | None = None
        self._x: NDArray[np.float64] | None = None
        self._dx: NDArray[np.float64] | None = None

    def reset(self) -> None:
        self._t_s = None
        self._x = None
        self._dx = None

    def __call__(self, t_s: float, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The filtered value of sample `x` taken at time `t_s` (seconds)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t_s is None or self._x.shape != x.shape:
            self._t_s, self._x, self._dx = t_s, x.copy(), np.zeros_like(x)
            return x.copy()
        dt = t_s - self._t_s
        if dt <= 0.0:
            return self._x.copy()
        p = self.params
        dx = (x - self._x) / dt
        a_d = smoothing_factor(dt, p.d_cutoff_hz)
        dx_hat = self._dx + a_d * (dx - self._dx)
        cutoff = p.min_cutoff_hz + p.beta * np.abs(dx_hat)
        a = smoothing_factor(dt, cutoff)
        x_hat = self._x + a * (x - self._x)
        self._t_s, self._x, self._dx = t_s, x_hat, dx_hat
        return x_hat.copy()
