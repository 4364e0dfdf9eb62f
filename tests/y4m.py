"""A raw YUV4MPEG2 (.y4m) writer: the file Chromium's fake camera plays
(`--use-file-for-fake-video-capture=FILE.y4m`).

Chromium's file capture reads uncompressed 4:2:0 frames and loops the file at its header's
frame rate, so a test camera is a .y4m written from a test video's frames. The file is a test
fixture made from `../shared/data/people/*.mp4`, written to a temporary directory, never to the
repository (the videos are licensed as test fixtures only, see `../shared/data/SOURCES.md`).

    frames = squat_frames()                              # RGB arrays
    write_y4m(tmp / "squats.y4m", frames, fps=15, repeat=3, size_px=(360, 640))

Layout (the format as `mjpegtools`' yuv4mpeg(5) describes it): one header line
`YUV4MPEG2 W<w> H<h> F<num>:<den> Ip A1:1 C420jpeg`, then per frame the line `FRAME` and the
Y plane (w·h bytes), the U plane and the V plane (each (w/2)·(h/2) bytes), i.e. I420.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray


def i420_bytes(rgb: NDArray[np.uint8], size_px: tuple[int, int] | None = None) -> bytes:
    """One RGB frame (H, W, 3) as I420 planes, resized to `size_px` (width, height) first.

    Both sides must be even (the chroma planes are half size)."""
    if size_px is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size_px):
        rgb = cv2.resize(rgb, tuple(size_px), interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"y4m 4:2:0 frames need even sides, not {w}x{h}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).tobytes()


def write_y4m(
    path: Path,
    frames_rgb: Iterable[NDArray[np.uint8]],
    *,
    fps: int,
    repeat: int = 1,
    size_px: tuple[int, int] | None = None,
) -> int:
    """Write the frames to `path` at `fps`, each one `repeat` times (a 5 fps video played as a
    15 fps camera: fps=15, repeat=3, same speed). Returns the number of frames written."""
    if fps < 1 or repeat < 1:
        raise ValueError("fps and repeat must be ≥ 1")
    written = 0
    with Path(path).open("wb") as out:
        header_done = False
        for rgb in frames_rgb:
            planes = i420_bytes(rgb, size_px)
            if not header_done:
                w, h = size_px if size_px is not None else (rgb.shape[1], rgb.shape[0])
                out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
                header_done = True
            for _ in range(repeat):
                out.write(b"FRAME\n")
                out.write(planes)
                written += 1
    if written == 0:
        raise ValueError("no frames to write")
    return written


def read_y4m(path: Path) -> tuple[int, list[NDArray[np.uint8]]]:
    """(fps, RGB frames) of a file `write_y4m` wrote: the writer's own check."""
    data = Path(path).read_bytes()
    end = data.index(b"\n")
    fields = data[:end].decode("ascii").split()
    if fields[0] != "YUV4MPEG2":
        raise ValueError("not a y4m file")
    params = {f[0]: f[1:] for f in fields[1:]}
    w, h = int(params["W"]), int(params["H"])
    num, den = (int(x) for x in params["F"].split(":"))
    size = w * h * 3 // 2
    frames = []
    pos = end + 1
    while pos < len(data):
        if data[pos : pos + 6] != b"FRAME\n":
            raise ValueError(f"bad frame marker at byte {pos}")
        pos += 6
        yuv = np.frombuffer(data[pos : pos + size], dtype=np.uint8).reshape(h * 3 // 2, w)
        frames.append(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420))
        pos += size
    return num // den, frames
