"""The fuzz harness's property can fail: a parser that hangs, allocates far more than its
input, raises a foreign exception or refuses with a 5xx is caught by `exercise`, and a good
refusal or result passes (so the fuzz tests' green means what it says)."""

from __future__ import annotations

import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from tests import fuzz_strategies
from tests.fuzz_strategies import exercise


@pytest.fixture(autouse=True)
def _uncounted():  # type: ignore[no-untyped-def]
    """These deliberate failures stay out of the run's per-parser summary."""
    yield
    for name in [n for n in fuzz_strategies.STATS if n.startswith("harness.")]:
        del fuzz_strategies.STATS[name]


def test_a_parser_that_spins_is_stopped_at_the_time_limit(monkeypatch) -> None:
    monkeypatch.setattr(fuzz_strategies, "TIME_LIMIT_S", 0.2)

    def spin() -> None:
        while True:
            pass

    with pytest.raises(pytest.fail.Exception, match=r"no answer within 0\.2 s"):
        exercise("harness.spin", spin, 100)


def test_a_parser_that_allocates_300_mb_from_100_bytes_is_caught() -> None:
    def balloon() -> int:
        return int(np.ones(300 * 1024 * 1024 // 8).size)

    with pytest.raises(AssertionError, match="allocated"):
        exercise("harness.balloon", balloon, 100)


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda: [][0],
        lambda: {}["x"],
        lambda: (_ for _ in ()).throw(ValueError("bad")),
    ],
    ids=["IndexError", "KeyError", "ValueError"],
)
def test_a_parser_that_raises_anything_but_the_project_error_fails(raise_it) -> None:
    with pytest.raises(AssertionError, match="not a SpatialTwinError"):
        exercise("harness.foreign", raise_it, 10)


def test_a_refusal_must_be_a_4xx_with_a_code_and_a_json_detail() -> None:
    def server_error() -> None:
        raise SpatialTwinError("oops", "broken", status=500)

    def nan_detail() -> None:
        raise SpatialTwinError("bad_value", "bad", {"value": float("nan")})

    with pytest.raises(AssertionError, match="status 500"):
        exercise("harness.5xx", server_error, 10)
    with pytest.raises(ValueError, match="not JSON compliant"):
        exercise("harness.nan", nan_detail, 10)


def test_a_good_refusal_and_a_good_result_pass_and_are_counted() -> None:
    def refuse() -> None:
        raise SpatialTwinError("corrupt_file", "no", {"filename": "x.glb"}, status=422)

    assert exercise("harness.good", refuse, 10).code == "corrupt_file"
    assert exercise("harness.good", lambda: 3, 10, lambda r: None) == 3
    counts = dict(fuzz_strategies.STATS["harness.good"])
    assert (counts["examples"], counts["accepted"], counts["refused:corrupt_file"]) == (2, 1, 1)
