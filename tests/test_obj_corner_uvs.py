"""OBJ garments keep every corner's own UV (`gltf.obj_mesh`), seams included.

The expected UVs are read from the file with a few lines of plain text handling here, not
with the product's reader: corner k of polygon p has the `vt` its `f v/vt` token names.
"""

from __future__ import annotations

import numpy as np
import pytest

from spatialtwin.gltf.garment_io import read_garment_file
from tests.conftest import shared


def _expected(text: str) -> tuple[np.ndarray, int]:
    vt, corners, seam_pairs = [], [], set()
    for line in text.splitlines():
        p = line.split()
        if not p:
            continue
        if p[0] == "vt":
            vt.append((float(p[1]), float(p[2])))
        elif p[0] == "f":
            tokens = [t.split("/") for t in p[1:]]
            for k in range(1, len(tokens) - 1):
                for t in (tokens[0], tokens[k], tokens[k + 1]):
                    corners.append(vt[int(t[1]) - 1])
            for t in tokens:
                u, v = np.float32(vt[int(t[1]) - 1][0]), np.float32(vt[int(t[1]) - 1][1])
                seam_pairs.add((int(t[0]) - 1, float(u), float(v)))
    return np.asarray(corners, dtype=np.float32).reshape(-1, 3, 2), len(seam_pairs)


@pytest.mark.parametrize("name", ["male_worksuit01", "female_elegantsuit01", "male_casualsuit02"])
def test_every_corner_keeps_the_uv_the_file_gives_it(name):
    data = shared("garments", f"{name}.obj").read_bytes()
    source = read_garment_file(data, f"{name}.obj")
    expected, vertex_uv_pairs = _expected(data.decode("latin-1"))
    # trimesh dropped these two outfits' UVs altogether; every corner must carry its own
    assert source.corner_uvs is not None
    assert source.corner_uvs.shape == expected.shape
    assert np.abs(source.corner_uvs - expected).max() < 1e-6
    # seams: more (vertex, uv) pairs than vertices, every one of them kept
    pairs = {
        (int(v), float(u[0]), float(u[1]))
        for v, u in zip(source.faces.ravel(), source.corner_uvs.reshape(-1, 2), strict=True)
    }
    assert len(pairs) == vertex_uv_pairs > len(source.vertices)


def test_a_texture_index_out_of_range_is_refused():
    from spatialtwin.errors import SpatialTwinError

    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n"
    with pytest.raises(SpatialTwinError) as err:
        read_garment_file(obj, "bad.obj")
    assert err.value.code == "corrupt_file" and err.value.status == 422


def test_a_textured_material_on_a_mesh_without_uvs_writes_a_valid_glb():
    """glTF forbids a texture on a primitive without TEXCOORD_0; the factors are kept."""
    from spatialtwin.garment.appearance import Appearance, GarmentMaterial, TextureImage, TextureRef
    from spatialtwin.gltf.builder import GlbBuilder
    from spatialtwin.gltf.garment_io import GarmentGltfWriter
    from tests.gltf_validation import validate_glb
    from tests.textured_garment import checkerboard_png

    image = TextureImage("image/png", checkerboard_png(), 256, 256)
    material = GarmentMaterial("print", (0.2, 0.4, 0.8, 1.0), base_color_texture=TextureRef(0))
    appearance = Appearance([material], [image])
    builder = GlbBuilder()
    writer = GarmentGltfWriter(builder)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    node = writer.garment("g", v, np.array([[0, 1, 2]]), None, np.zeros(1, np.int32), appearance)
    builder.scene([node])
    report = validate_glb(builder.to_bytes())
    assert report["numErrors"] == 0, report["messages"]
    assert builder.gltf.materials[0].pbrMetallicRoughness.baseColorTexture is None
