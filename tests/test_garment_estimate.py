"""A bare garment's authoring body: its sleeves and trouser legs pose the template, a skirt
does not.

The estimate turns the template's limbs to the garment's own sleeve and leg axes. A skirt's
halves lie nearest the template's legs as trouser legs do; taken for legs they turned them
62-68° apart, and MakeHuman's elegant suit (a jacket and a pencil skirt) then refitted across
both legs of base.obj: 71.1 % of it on the same body part (bench/garment.py, bare OBJ).
"""

from __future__ import annotations

import numpy as np
import pytest

from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.estimate import wraps_limb_alone
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import shared


def estimate(name: str):
    obj = shared("garments", f"{name}.obj").read_bytes()
    template = AuthoringBody.from_template(shipped_template())
    return prepare_garment(obj, f"{name}.obj", "outfit", estimate_from=template)


def test_a_skirt_does_not_pose_the_legs():
    prepared = estimate("female_elegantsuit01")
    turns = prepared.estimate["limb_turns_deg"]
    assert "leftUpperLeg" not in turns and "rightUpperLeg" not in turns  # were -68.4°, 62.2°
    # the skirt's waistband is then placed at the template's waist, not 32 cm below it
    placement = prepared.estimate["placement"]
    assert placement["waist_y_m"] == pytest.approx(1.082, abs=0.01)


def test_trouser_legs_and_sleeves_still_do():
    prepared = estimate("male_casualsuit06")
    turns = prepared.estimate["limb_turns_deg"]
    assert {"leftUpperArm", "rightUpperArm", "leftUpperLeg", "rightUpperLeg"} <= set(turns)
    assert all(abs(t) <= 40.0 for t in turns.values())


def test_a_tube_round_one_leg_is_told_from_one_round_both():
    template = shipped_template().body
    v, f = template.welded()
    sk = template.skeleton
    # the template's own skin: at mid-thigh each thigh is a section of its own
    assert wraps_limb_alone(v, f, sk, "leftUpperLeg", np.array([0.6]))
    assert wraps_limb_alone(v, f, sk, "rightUpperLeg", np.array([0.6]))
    # above the crotch (0.77 m) the section is the pelvis, round both hip joints
    assert not wraps_limb_alone(v, f, sk, "leftUpperLeg", np.array([0.9]))


def test_an_outfits_pieces_are_put_on_together():
    """Each piece on its own anchor (a collar at the neck joint, a waistband at the waist)
    parted the worksuit's layers: its overalls went 2.7 cm up and its shirt 3 cm down, so
    the overalls' straps stood over the shoulders and the bib fell away from the shirt."""
    prepared = estimate("male_worksuit01")
    moves = np.array(prepared.estimate["placement"]["translations_m"])
    assert len(moves) == 2 and np.abs(moves - moves[0]).max() == 0.0
