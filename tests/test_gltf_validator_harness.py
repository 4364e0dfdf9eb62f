"""The glTF validator harness finds real errors and passes a correct GLB.

Every other test that writes glTF trusts `assert_valid_glb`, so it must be shown to fail on a
broken file, not merely to run.
"""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest

from tests.gltf_validation import (
    assert_valid_glb,
    assert_valid_glbs,
    validate_glb,
    validate_glbs,
)

TRIANGLE_M = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=np.float32)


def triangle_glb(*, claimed_vertex_count: int = 3) -> bytes:
    """A one-triangle GLB in metres; `claimed_vertex_count` > 3 makes the accessor overrun."""
    blob = TRIANGLE_M.tobytes()
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator="spatialtwin tests"),
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0)],
        meshes=[
            pygltflib.Mesh(
                primitives=[pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=0))]
            )
        ],
        accessors=[
            pygltflib.Accessor(
                bufferView=0,
                componentType=pygltflib.FLOAT,
                count=claimed_vertex_count,
                type=pygltflib.VEC3,
                min=TRIANGLE_M.min(axis=0).tolist(),
                max=TRIANGLE_M.max(axis=0).tolist(),
            )
        ],
        bufferViews=[
            pygltflib.BufferView(
                buffer=0, byteOffset=0, byteLength=len(blob), target=pygltflib.ARRAY_BUFFER
            )
        ],
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def test_valid_triangle_has_no_errors_and_is_summarised() -> None:
    report = assert_valid_glb(triangle_glb())

    assert report["numErrors"] == 0
    assert report["numWarnings"] == 0
    assert report["info"]["totalVertexCount"] == 3
    assert report["info"]["totalTriangleCount"] == 1


def test_accessor_past_its_buffer_view_is_an_error() -> None:
    report = validate_glb(triangle_glb(claimed_vertex_count=100))

    assert report["numErrors"] >= 1
    error_codes = {m["code"] for m in report["messages"] if m["severity"] == 0}
    assert "ACCESSOR_TOO_LONG" in error_codes


def test_assert_valid_glb_lists_the_errors() -> None:
    with pytest.raises(AssertionError) as failure:
        assert_valid_glb(triangle_glb(claimed_vertex_count=100))

    message = str(failure.value)
    assert "ACCESSOR_TOO_LONG" in message
    assert "/accessors/0" in message


def test_bytes_that_are_not_gltf_are_an_error() -> None:
    report = validate_glb(b"this is not a GLB at all")

    assert report["numErrors"] == 1
    assert report["messages"][0]["code"] == "NOT_GLTF"


def test_batch_reports_each_input_in_order(tmp_path) -> None:
    good_path = tmp_path / "good.glb"
    good_path.write_bytes(triangle_glb())
    bad = triangle_glb(claimed_vertex_count=100)

    reports = validate_glbs([good_path, bad, good_path])

    assert [r["numErrors"] > 0 for r in reports] == [False, True, False]
    assert reports[0]["path"] == str(good_path)
    with pytest.raises(AssertionError, match=r"<\d+ bytes>: \d+ glTF validation error"):
        assert_valid_glbs([good_path, bad])
