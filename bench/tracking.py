"""Body-tracking benchmark: landmarks per 640×480 frame and filtering + retargeting per frame.

Run: `.venv/bin/python bench/tracking.py [--frames N]`. Pinned to one CPU core. Prints the
machine it ran on and medians (milliseconds). Targets (issue #5): full model ≤ 20 ms per
640×480 frame on one core; One Euro filtering + retargeting ≤ 0.5 ms per frame.

Frames: the squat video (people/pose_squats.mp4, 720×1280 portrait) letterboxed into 640×480,
decoded in memory, fed in VIDEO mode at 30 fps timestamps, looped as needed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import mediapipe
import numpy as np

from spatialtwin.native_logs import quiet_native_logs
from spatialtwin.tracking.anthropometric import anthropometric_skeleton
from spatialtwin.tracking.bundle import build_bundles
from spatialtwin.tracking.landmarker import LandmarkerOptions, PoseLandmarkerStream
from spatialtwin.tracking.one_euro import OneEuroParams
from spatialtwin.tracking.tracker import PoseFromLandmarks, TrackerOptions

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "people" / "pose_squats.mp4"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} cores (pinned to 1) | "
        f"Python {platform.python_version()} | numpy {np.__version__} | "
        f"mediapipe {mediapipe.__version__} | OpenCV {cv2.__version__} | "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)"
    )


def letterboxed_frames(width: int = 640, height: int = 480) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        scale = min(width / w, height / h)
        small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
        canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        frames.append(np.ascontiguousarray(canvas[:, :, ::-1]))
    cap.release()
    return frames


def time_landmarks(model: str, max_people: int, frames: list[np.ndarray], n: int):
    times, found = [], []
    with PoseLandmarkerStream(LandmarkerOptions(model=model, max_people=max_people)) as stream:
        for i in range(n + 10):
            frame = frames[i % len(frames)]
            t0 = time.perf_counter()
            people = stream.detect(frame, i / 30.0)
            dt = time.perf_counter() - t0
            if i >= 10:  # warm-up: delegate set-up and first detections
                times.append(dt)
            if people:
                found.append(people[0])
    return statistics.median(times) * 1e3, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="show TFLite/MediaPipe log lines")
    args = parser.parse_args()
    if not args.verbose:
        quiet_native_logs()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    build_bundles()
    print(machine())
    frames = letterboxed_frames()
    print(f"input: {len(frames)} frames of {VIDEO.name} letterboxed to 640×480, VIDEO mode")

    landmarks = []
    for model in ("lite", "full", "heavy"):
        for people in (1, 2):
            n = args.frames if model != "heavy" else max(30, args.frames // 4)
            ms, found = time_landmarks(model, people, frames, n)
            print(f"landmarks  model={model:5s} max_people={people}: median {ms:6.2f} ms/frame")
            if model == "full" and people == 2:
                landmarks = found

    skeleton = anthropometric_skeleton(1.70)
    for label, opts in (
        ("retarget only", TrackerOptions()),
        ("One Euro + retarget", TrackerOptions(landmark_filter=OneEuroParams())),
    ):
        tracker = PoseFromLandmarks(skeleton, opts)
        times = []
        for i in range(max(len(landmarks), 1) * 3):
            lm = landmarks[i % len(landmarks)]
            t0 = time.perf_counter()
            tracker.update(lm, i / 30.0)
            times.append(time.perf_counter() - t0)
        print(f"pose       {label:20s}: median {statistics.median(times) * 1e3:6.3f} ms/frame")


if __name__ == "__main__":
    main()
