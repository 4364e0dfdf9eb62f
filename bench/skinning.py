"""Skinning a 20k-vertex twin for one pose: the per-frame cost a mirror pays (target ≤ 2 ms).

Run: .venv/bin/python bench/skinning.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine, pin_one_core

pin_one_core()

from spatialtwin.body.parametric import Measurements, create_twin_body  # noqa: E402
from spatialtwin.body.pose import Pose, skinning_matrices  # noqa: E402
from spatialtwin.body.skeleton import JOINT_NAMES  # noqa: E402
from spatialtwin.gltf.template_npz import shipped_template  # noqa: E402


def random_pose(rng: np.random.Generator) -> Pose:
    rot = Rotation.from_rotvec(rng.normal(scale=0.3, size=(len(JOINT_NAMES), 3))).as_quat()
    return Pose(rng.normal(scale=0.05, size=3), dict(zip(JOINT_NAMES, rot, strict=True)))


def median_ms(fn, repeats: int = 300) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main() -> None:
    print(describe_machine())
    body = create_twin_body(
        Measurements(1.76, 0.92, 0.74, 0.98, 0.81, 0.40), shipped_template().body
    )
    skinner = body.skinner()
    rng = np.random.default_rng(7)
    poses = [random_pose(rng) for _ in range(64)]
    mats = [skinning_matrices(body.skeleton, p) for p in poses]
    k = iter(range(10**9))
    fk = median_ms(lambda: skinning_matrices(body.skeleton, poses[next(k) % 64]))
    sk = median_ms(lambda: skinner.vertices(mats[next(k) % 64]))
    skn = median_ms(lambda: skinner.vertices_and_normals(mats[next(k) % 64]))
    print(f"{'step':<44}{'vertices':>10}{'median ms':>12}")
    print(f"{'forward kinematics (22 joints)':<44}{'-':>10}{fk:>12.3f}")
    print(f"{'linear-blend skinning, positions':<44}{body.vertex_count:>10}{sk:>12.3f}")
    print(f"{'linear-blend skinning, positions + normals':<44}{body.vertex_count:>10}{skn:>12.3f}")
    print(f"{'pose → posed positions (FK + skinning)':<44}{body.vertex_count:>10}{fk + sk:>12.3f}")
    print("target: ≤ 2 ms for a 20k-vertex body")


if __name__ == "__main__":
    main()
