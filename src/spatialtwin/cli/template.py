"""`spatialtwin template build`: derive the hm08 template body from MakeHuman's CC0 files.

The shipped `assets/bodies/hm08_template.npz` is made by this command from `base.obj`,
`default.mhskel` and `default_weights.mhw` (MakeHuman, CC0 1.0): the base mesh in metres with
MakeHuman's own skin weights mapped onto the canonical skeleton, helper geometry included,
because MakeHuman garments bind to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spatialtwin.body.importer import import_scene
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.source_mesh import SourceRig
from spatialtwin.body.template import HM08, TemplateBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.makehuman import HM08_VERTEX_COUNT, read_mhskel, read_mhw
from spatialtwin.gltf.read_scene import read_scene
from spatialtwin.gltf.template_npz import TEMPLATE_PATH, template_to_npz

SOURCE_INFLUENCES = 8


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    template = sub.add_parser("template", help="the template bodies shipped in assets/")
    tsub = template.add_subparsers(dest="template_command", required=True)
    build = tsub.add_parser("build", help="derive hm08_template.npz from MakeHuman's files")
    build.add_argument(
        "--source",
        type=Path,
        default=Path("../shared/data/bodies"),
        help="folder with base.obj, default.mhskel, default_weights.mhw",
    )
    build.add_argument("-o", "--out", type=Path, default=TEMPLATE_PATH)
    build.set_defaults(func=run_build)


def build_hm08_template(source: Path) -> TemplateBody:
    """hm08 imported with MakeHuman's rig, plus every base vertex in the twin's frame."""
    names = ("base.obj", "default.mhskel", "default_weights.mhw")
    missing = [n for n in names if not (source / n).is_file()]
    if missing:
        raise SpatialTwinError(
            "template_source_missing", f"{source} lacks {', '.join(missing)}", {"missing": missing}
        )
    scene = read_scene((source / "base.obj").read_bytes(), "base.obj")
    assert scene.source_index is not None
    base = np.zeros((HM08_VERTEX_COUNT, 3))
    base[scene.source_index] = scene.vertices
    rig = read_mhskel((source / "default.mhskel").read_bytes(), base)
    dense = read_mhw((source / "default_weights.mhw").read_bytes(), rig.bone_names, len(base))
    per_vertex = dense[scene.source_index]
    top = np.argsort(-per_vertex, axis=1)[:, :SOURCE_INFLUENCES]
    scene.rig = SourceRig(rig.bone_names, rig.parents, rig.heads)
    scene.skin_joints = top
    scene.skin_weights = np.take_along_axis(per_vertex, top, axis=1)
    twin = import_scene(scene, "base.obj", units="dm")
    assert twin.source_index is not None
    # Every base vertex (helpers too) in the twin's frame, with weights on the canonical joints.
    base_m = base @ twin.transform[:3, :3].T + twin.transform[:3, 3]
    canonical = twin.report.source_weights_to
    from spatialtwin.body.skeleton import JOINT_INDEX

    to_joint = np.array([JOINT_INDEX[canonical[b]] for b in rig.bone_names])
    canon_dense = np.zeros((len(base), len(JOINT_INDEX)))
    for b in range(len(rig.bone_names)):
        canon_dense[:, to_joint[b]] += dense[:, b]
    unweighted = canon_dense.sum(axis=1) == 0
    canon_dense[unweighted, JOINT_INDEX["hips"]] = 1.0
    skin_mask = np.zeros(len(base), dtype=bool)
    skin_mask[twin.source_index] = True
    return TemplateBody(
        name=HM08,
        body=twin.body,
        base_vertices_m=base_m,
        base_skin=SkinWeights.from_dense(canon_dense),
        body_base_index=twin.source_index,
        skin_mask=skin_mask,
    )


def run_build(args: argparse.Namespace) -> int:
    template = build_hm08_template(args.source)
    data = template_to_npz(template)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"{args.out}: {len(data)} bytes, {template.body.vertex_count} skin vertices")
    return 0
