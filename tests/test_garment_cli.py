"""`spatialtwin garment add`: a JSON record on stdout, exit 2 and nothing written on bad input."""

from __future__ import annotations

import json

import pytest

from spatialtwin.cli import main
from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import shared


def test_add_prints_the_stored_record(tmp_path, capsys):
    path = shared("garments", "female_sportsuit01.obj")
    code = main(
        [
            "garment",
            "add",
            str(path),
            "--category",
            "outfit",
            "--fabric",
            "cotton-jersey",
            "--data",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["units"] == "dm" and record["units_detected"] is True
    # The sibling .mhclo is picked up: the outfit as fitted on hm08 (13.14 dm tall there,
    # SOURCES.md), never rescaled.
    assert record["authoring_body"]["kind"] == "hm08"
    assert record["extent_m"][1] == pytest.approx(1.314, abs=0.002)
    assert record["triangles"] == 2 * 1718
    assert record["id"].startswith("gar_")
    assert EmbeddedStore(tmp_path).snapshot() == {"records": 1, "blobs": 2}


def test_explicit_units_and_bad_input_exit_2_and_write_nothing(tmp_path, capsys):
    path = shared("garments", "female_sportsuit01.obj")
    code = main(
        [
            "garment",
            "add",
            str(path),
            "--category",
            "top",
            "--fabric",
            "denim",
            "--data",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 2
    err = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert err["error"]["code"] == "category_mismatch"
    assert EmbeddedStore(tmp_path).snapshot() == {"records": 0, "blobs": 0}
    bad = tmp_path / "bad.obj"
    bad.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    code = main(
        [
            "garment",
            "add",
            str(bad),
            "--category",
            "top",
            "--fabric",
            "denim",
            "--data",
            str(tmp_path / "d"),
        ]
    )
    assert code == 2
    assert "corrupt" in capsys.readouterr().err
    assert EmbeddedStore(tmp_path / "d").snapshot() == {"records": 0, "blobs": 0}
