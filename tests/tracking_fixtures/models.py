"""Pytest fixtures for tests that run MediaPipe: the bundles (built once) and landmarkers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spatialtwin.tracking.bundle import build_bundles, default_models_dir
from spatialtwin.tracking.landmarker import LandmarkerOptions, PoseLandmarkerStream

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PEOPLE = DATA / "people"
MOTION = DATA / "motion"


@pytest.fixture(scope="session")
def pose_models_dir() -> Path:
    """The default models folder with every bundle built (a no-op when the Makefile did it)."""
    build_bundles()
    return default_models_dir()


@pytest.fixture(scope="module")
def photo_landmarker(pose_models_dir: Path) -> Iterator[PoseLandmarkerStream]:
    """One IMAGE-mode full-model landmarker for unrelated photos, shared by a test module."""
    with PoseLandmarkerStream(
        LandmarkerOptions(model="full", video=False, max_people=3, models_dir=pose_models_dir)
    ) as stream:
        yield stream


@pytest.fixture(scope="module")
def new_landmarker(pose_models_dir: Path) -> Iterator:
    """A factory of fresh VIDEO-mode landmarkers (each new input needs fresh tracking state);
    everything it made is closed at the end of the module."""
    made: list[PoseLandmarkerStream] = []

    def make(model: str = "full", max_people: int = 2) -> PoseLandmarkerStream:
        stream = PoseLandmarkerStream(
            LandmarkerOptions(model=model, max_people=max_people, models_dir=pose_models_dir)
        )
        made.append(stream)
        return stream

    yield make
    for stream in made:
        stream.close()
