"""Every limit at the parser edge (docs/limits.md) tested at its edge: exactly the limit
passes, one past it is refused with the documented code and status, and an HTTP refusal
leaves the store as it was.

Inputs are real files from ../shared/data (MakeHuman's base mesh, outfit, .mhclo and
thumbnail, MediaPipe's pose.jpg) cut, padded or repeated to land exactly on a limit. The
last test reads docs/limits.md and holds its table of defaults to the code's constants, so
the document cannot drift from what is enforced.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import TextureImage
from spatialtwin.garment.pipeline import IngestOptions, prepare_source
from spatialtwin.gltf import makehuman
from spatialtwin.gltf.archive import ARCHIVE_DEFAULTS, ArchiveLimits, read_zip
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.garment_material import IMAGE_DEFAULTS, ReadAppearance, checked_image
from spatialtwin.gltf.mirror_messages import (
    MAX_FRAME_BYTES,
    MAX_TEXT_BYTES,
    camera_frame,
    parse_text,
    read_camera_frame,
)
from spatialtwin.gltf.read_scene import SCENE_DEFAULTS, SceneLimits, read_scene
from spatialtwin.gltf.vertex_stream import MAX_VERTICES, VertexStreamDecoder, VertexStreamEncoder
from spatialtwin.live import frames
from spatialtwin.server import requests, validate
from tests.conftest import REPO, shared
from tests.fuzz_strategies import obj_slice
from tests.test_fuzz_requests import EdgeServer


def refused(call, code: str, status: int) -> SpatialTwinError:  # type: ignore[no-untyped-def]
    with pytest.raises(SpatialTwinError) as caught:
        call()
    assert (caught.value.code, caught.value.status) == (code, status), caught.value.to_json()
    return caught.value


# ---------------------------------------------------------------- JSON depth and size


def nested(depth: int) -> str:
    """`{"terms": [[...]]}`: an object and `depth - 1` arrays, `depth` levels in all."""
    return '{"terms": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def test_json_exactly_max_depth_deep_parses_and_one_level_more_is_invalid_json() -> None:
    depth = validate.MAX_JSON_DEPTH
    assert validate.json_depth(validate.parse_json(nested(depth))) == depth
    error = refused(lambda: validate.parse_json(nested(depth + 1)), "invalid_json", 400)
    assert error.detail == {"max_depth": depth}


async def test_a_json_body_one_level_too_deep_leaves_the_store_unchanged(twin_api) -> None:
    before = twin_api.store.snapshot(content=True)
    path = f"/api/v1/twins/{twin_api.twin_id}/license"
    headers = {"Content-Type": "application/json"}
    at_limit = await twin_api.patch(path, data=nested(validate.MAX_JSON_DEPTH), headers=headers)
    assert (await at_limit.json())["error"]["code"] != "invalid_json"  # parsed; terms checked
    over = await twin_api.patch(path, data=nested(validate.MAX_JSON_DEPTH + 1), headers=headers)
    assert over.status == 400 and (await over.json())["error"]["code"] == "invalid_json"
    assert twin_api.store.snapshot(content=True) == before


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = EdgeServer(tmp_path_factory.mktemp("limits-store"))
    yield server
    server.close()


def json_of_exactly(n_bytes: int) -> bytes:
    """A JSON object of exactly `n_bytes` bytes: a real request padded in a string field."""
    record = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
    head = json.dumps({**record, "pad": ""}).encode()
    body = head[:-2] + b"x" * (n_bytes - len(head)) + head[-2:]
    assert len(body) == n_bytes and json.loads(body)["id"] == record["id"]
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_json_body_of_exactly_max_bytes_is_read_and_one_byte_more_is_413(edge, chunked) -> None:
    limit = requests.MAX_JSON_BYTES
    headers = {"Content-Type": "application/json"}

    def send(body: bytes) -> tuple[int, bytes]:
        if not chunked:
            return edge.post("/json", body, headers)
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        return edge.post("/json", pieces, headers)

    status, answer = send(json_of_exactly(limit))
    assert (status, json.loads(answer)) == (200, {"type": "dict"})
    status, answer = send(json_of_exactly(limit + 1))
    error = json.loads(answer)["error"]
    assert (status, error["code"], error["detail"]) == (
        413,
        "payload_too_large",
        {"limit_bytes": limit},
    )


def upload_with_metadata(metadata: bytes) -> tuple[bytes, str]:
    obj = obj_slice(shared("garments", "female_sportsuit01.obj").read_bytes(), 40)
    b = "limitsBoundary"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="metadata"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode() + metadata
    body += (
        f'\r\n--{b}\r\nContent-Disposition: form-data; name="file"; filename="s.obj"\r\n\r\n'
    ).encode() + obj
    return body + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def test_a_metadata_part_of_exactly_max_bytes_is_read_and_one_byte_more_is_413(edge) -> None:
    limit = requests.MAX_METADATA_BYTES
    body, ctype = upload_with_metadata(json_of_exactly(limit))
    status, answer = edge.post("/upload", body, {"Content-Type": ctype})
    assert status == 200 and json.loads(answer)["metadata"]["id"] == "twn_sample_ava"
    body, ctype = upload_with_metadata(json_of_exactly(limit + 1))
    status, answer = edge.post("/upload", body, {"Content-Type": ctype})
    error = json.loads(answer)["error"]
    assert (status, error["code"], error["detail"]) == (
        413,
        "payload_too_large",
        {"limit_bytes": limit},
    )
    assert list((edge_scratch(edge)).iterdir()) == []  # the streamed file part is gone


def edge_scratch(edge) -> Path:  # type: ignore[no-untyped-def]
    from spatialtwin.server.keys import STORE

    return edge.runner.app[STORE].scratch_dir()


def test_a_mirror_text_message_of_exactly_max_bytes_parses_and_one_more_is_1009() -> None:
    def ping(n_bytes: int) -> bytes:
        head = b'{"type": "ping", "t_ms": 1.5, "pad": ""}'
        return head[:-2] + b" " * (n_bytes - len(head)) + head[-2:]

    assert parse_text(ping(MAX_TEXT_BYTES))["type"] == "ping"
    error = refused(lambda: parse_text(ping(MAX_TEXT_BYTES + 1)), "message_too_large", 413)
    assert error.close_code == 1009 and error.detail["limit"] == MAX_TEXT_BYTES


# ---------------------------------------------------------------- triangles and vertices


@pytest.fixture(scope="module")
def outfit_source():  # type: ignore[no-untyped-def]
    return read_garment_file(shared("garments", "female_sportsuit01.obj").read_bytes(), "s.obj")


class _ValidationPassedError(Exception):
    """Raised at the first progress step after validation: the limits were passed."""


def _stop_after_validation(stage: str, fraction: float) -> None:
    if stage == "welding":
        raise _ValidationPassedError


def test_a_garment_of_exactly_max_triangles_passes_and_one_more_is_413(outfit_source) -> None:
    triangles = len(outfit_source.faces)  # 1718 quads of the MakeHuman outfit, fanned
    assert triangles == 3436
    options = IngestOptions.from_settings({"garment_max_triangles": triangles})
    with pytest.raises(_ValidationPassedError):
        prepare_source(outfit_source, "s.obj", "outfit", "dm", options, _stop_after_validation)
    options = IngestOptions.from_settings({"garment_max_triangles": triangles - 1})
    error = refused(
        lambda: prepare_source(outfit_source, "s.obj", "outfit", "dm", options),
        "too_many_triangles",
        413,
    )
    assert error.detail == {"triangles": triangles, "limit": triangles - 1}
    assert IngestOptions().max_triangles == 200_000


@pytest.fixture(scope="module")
def body_obj() -> bytes:
    return obj_slice(shared("bodies", "base.obj").read_bytes(), 40)


@pytest.mark.parametrize("what", ["triangles", "vertices"])
def test_a_body_file_of_exactly_the_limit_imports_and_one_more_is_413(body_obj, what) -> None:
    mesh = read_scene(body_obj, "base.obj")
    count = len(mesh.faces) if what == "triangles" else len(mesh.vertices)
    exact = SceneLimits(**{f"max_{what}": count})
    assert len(read_scene(body_obj, "base.obj", exact).faces) == len(mesh.faces)
    error = refused(
        lambda: read_scene(body_obj, "base.obj", SceneLimits(**{f"max_{what}": count - 1})),
        f"too_many_{what}",
        413,
    )
    assert error.detail == {"filename": "base.obj", what: count, "limit": count - 1}


def test_an_authoring_obj_of_exactly_max_vertices_reads_and_one_more_is_413(monkeypatch) -> None:
    """The real base.obj (19,158 vertices) against a limit set to its count, then one below;
    the default (500,000) is held to docs/limits.md below."""
    data = shared("bodies", "base.obj").read_bytes()
    monkeypatch.setattr(makehuman, "MAX_BINDING_VERTICES", 19158)
    assert makehuman.obj_vertex_positions(data).shape == (19158, 3)
    monkeypatch.setattr(makehuman, "MAX_BINDING_VERTICES", 19157)
    refused(lambda: makehuman.obj_vertex_positions(data), "too_many_vertices", 413)


def test_a_mhclo_binding_exactly_max_vertices_reads_and_one_more_is_422(monkeypatch) -> None:
    data = shared("garments", "female_sportsuit01.mhclo").read_bytes()
    lines = data.decode().splitlines()
    start, end = lines.index("verts 0"), lines.index("delete_verts")
    bound = sum(1 for ln in lines[start + 1 : end] if ln.strip())
    monkeypatch.setattr(makehuman, "MAX_BINDING_VERTICES", bound)
    assert len(makehuman.read_mhclo(data).ref_vertices) == bound
    monkeypatch.setattr(makehuman, "MAX_BINDING_VERTICES", bound - 1)
    error = refused(lambda: makehuman.read_mhclo(data), "bad_mhclo", 422)
    assert error.detail == {"limit": bound - 1}


def test_a_mhclo_of_exactly_max_bytes_reads_and_one_byte_more_is_413() -> None:
    data = shared("garments", "female_sportsuit01.mhclo").read_bytes()
    limit = makehuman.MAX_MHCLO_BYTES
    padded = data + b"#" * (limit - len(data) - 1) + b"\n"
    assert len(padded) == limit and len(makehuman.read_mhclo(padded).ref_vertices) > 1000
    error = refused(lambda: makehuman.read_mhclo(padded + b"\n"), "mhclo_too_large", 413)
    assert error.detail == {"bytes": limit + 1, "limit": limit}


def test_a_vertex_stream_of_exactly_max_vertices_decodes_and_one_more_is_refused() -> None:
    rows = [
        ln.split()[1:4]
        for ln in shared("bodies", "base.obj").read_bytes().splitlines()
        if ln.startswith(b"v ")
    ]
    base_m = np.asarray(rows, dtype=np.float64) * 0.1
    tiled = np.tile(base_m, (MAX_VERTICES // len(base_m) + 1, 1))[:MAX_VERTICES]
    frame = VertexStreamEncoder().encode(tiled)
    decoded = VertexStreamDecoder().decode(frame)
    assert decoded.positions_m.shape == (MAX_VERTICES, 3)
    assert np.abs(decoded.positions_m - tiled).max() <= 0.0005 + 1e-9
    over = frame[:12] + struct.pack("<I", MAX_VERTICES + 1) + frame[16:]
    error = refused(lambda: VertexStreamDecoder().decode(over), "bad_vertex_stream", 400)
    assert error.detail["count"] == MAX_VERTICES + 1


# ---------------------------------------------------------------- texture and frame pixels


def png_of(width: int, height: int) -> bytes:
    """The outfit's real thumbnail scaled (nearest) to `width` × `height`, as PNG."""
    thumb = Image.open(io.BytesIO(shared("garments", "female_sportsuit01.thumb").read_bytes()))
    buf = io.BytesIO()
    thumb.convert("RGB").resize((width, height), Image.NEAREST).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def test_a_texture_of_exactly_max_pixels_is_kept_and_one_pixel_row_more_is_413() -> None:
    side = 4096
    assert IMAGE_DEFAULTS.max_pixels == side * side
    kept = checked_image(png_of(side, side), "suit.png")
    assert (kept.width_px, kept.height_px, kept.mime) == (side, side, "image/png")
    error = refused(
        lambda: checked_image(png_of(side, side + 1), "suit.png"), "image_too_large", 413
    )
    assert (error.detail["width_px"], error.detail["height_px"]) == (side, side + 1)


def test_a_texture_side_of_exactly_max_side_is_kept_and_one_more_is_413() -> None:
    side = IMAGE_DEFAULTS.max_side_px
    assert checked_image(png_of(side, 2), "strip.png").width_px == side
    refused(lambda: checked_image(png_of(side + 1, 2), "strip.png"), "image_too_large", 413)


def test_a_garment_may_use_exactly_max_images_and_one_more_is_413() -> None:
    thumb = Image.open(io.BytesIO(shared("garments", "female_sportsuit01.thumb").read_bytes()))
    found = ReadAppearance()
    for k in range(IMAGE_DEFAULTS.max_images + 1):
        buf = io.BytesIO()
        thumb.crop((k, 0, k + 64, 64)).save(buf, format="PNG")
        image = TextureImage("image/png", buf.getvalue(), 64, 64)
        if k < IMAGE_DEFAULTS.max_images:
            assert found.add_image(image, IMAGE_DEFAULTS) == k
        else:
            refused(lambda i=image: found.add_image(i, IMAGE_DEFAULTS), "too_many_images", 413)
    assert len(found.images) == 16


def jpeg_claiming(width: int, height: int) -> bytes:
    """MediaPipe's pose.jpg with its SOF header claiming `width` × `height`."""
    jpeg = bytearray(shared("people", "pose.jpg").read_bytes())
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def test_a_camera_frame_of_exactly_max_pixels_passes_and_one_row_more_is_refused() -> None:
    assert frames.MAX_FRAME_PIXELS == 4096 * 4096
    assert frames.check_frame(1, jpeg_claiming(4096, 4096)).frame_id == 1
    error = refused(lambda: frames.check_frame(1, jpeg_claiming(4096, 4097)), "bad_frame", 400)
    assert error.detail == {"width": 4096, "height": 4097}


def test_a_camera_frame_of_exactly_max_bytes_passes_its_header_and_one_more_is_1009() -> None:
    jpeg = shared("people", "pose.jpg").read_bytes()
    payload = jpeg + b"\0" * (MAX_FRAME_BYTES - len(jpeg))  # padding after the JPEG's end
    assert len(read_camera_frame(camera_frame(1, 7, 10.0, payload), MAX_FRAME_BYTES).payload) == (
        MAX_FRAME_BYTES
    )
    error = refused(
        lambda: read_camera_frame(camera_frame(1, 7, 10.0, payload + b"\0"), MAX_FRAME_BYTES),
        "frame_too_large",
        413,
    )
    assert error.close_code == 1009 and error.detail["limit"] == MAX_FRAME_BYTES
    assert frames.MAX_FRAME_BYTES == MAX_FRAME_BYTES


# ---------------------------------------------------------------- zip archives


def outfit_entries(count: int) -> dict[str, bytes]:
    """`count` entries cut from the real garment files (each outfit's OBJ, .mhclo, thumb)."""
    files = sorted(p for p in shared("garments").iterdir() if p.suffix != ".json")
    return {
        f"part{k:02d}/{files[k % len(files)].name}": files[k % len(files)].read_bytes()[:8000]
        for k in range(count)
    }


def zipped(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_a_zip_of_exactly_max_entries_reads_and_one_entry_more_is_413() -> None:
    limit = ARCHIVE_DEFAULTS.max_entries
    assert len(read_zip(zipped(outfit_entries(limit)))) == limit
    error = refused(
        lambda: read_zip(zipped(outfit_entries(limit + 1))), "archive_too_many_entries", 413
    )
    assert error.detail == {"entries": limit + 1, "limit": limit}


async def test_a_garment_zip_one_entry_over_leaves_the_store_unchanged(twin_api) -> None:
    entries = outfit_entries(ARCHIVE_DEFAULTS.max_entries + 1)
    entries["outfit.obj"] = obj_slice(shared("garments", "female_sportsuit01.obj").read_bytes())
    form = aiohttp.FormData()
    form.add_field("file", zipped(entries), filename="outfit.zip")
    meta = {
        "sku": "SS-1",
        "name": "Suit",
        "category": "outfit",
        "size_label": "M",
        "fabric": "cotton-jersey",
    }
    form.add_field("metadata", json.dumps(meta), content_type="application/json")
    before = twin_api.store.snapshot(content=True)
    r = await twin_api.post("/api/v1/garments", data=form)
    body = await r.json()
    assert r.status == 413 and body["error"]["code"] == "archive_too_many_entries", body
    assert twin_api.store.snapshot(content=True) == before


def test_a_zip_entry_at_exactly_the_expansion_ratio_reads_and_just_past_it_is_a_zip_bomb() -> None:
    obj = shared("garments", "female_sportsuit01.obj").read_bytes()
    data = zipped({"outfit.obj": obj}, zipfile.ZIP_DEFLATED)
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    ratio = info.file_size / info.compress_size  # ~3.4 for OBJ text
    assert read_zip(data, ArchiveLimits(max_ratio=ratio))["outfit.obj"] == obj
    past = ArchiveLimits(max_ratio=float(np.nextafter(ratio, 0.0)))
    error = refused(lambda: read_zip(data, past), "zip_bomb", 413)
    assert error.detail == {
        "entry": "outfit.obj",
        "uncompressed_bytes": len(obj),
        "compressed_bytes": info.compress_size,
    }


def test_a_zip_bomb_past_the_default_ratio_is_refused_before_it_is_inflated() -> None:
    """A real OBJ's vertex line repeated 2.4 million times (32 MB) deflates ~1000:1."""
    line = next(
        ln
        for ln in shared("bodies", "base.obj").read_bytes().splitlines(keepends=True)
        if ln.startswith(b"v ")
    )
    bomb = zipped({"body.obj": line * (32_000_000 // len(line))}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 200_000
    error = refused(lambda: read_zip(bomb), "zip_bomb", 413)
    assert error.detail["uncompressed_bytes"] > ARCHIVE_DEFAULTS.max_ratio * len(bomb)


@pytest.mark.parametrize("field", ["max_entry_bytes", "max_total_bytes"])
def test_zip_byte_limits_pass_at_exactly_the_limit_and_refuse_one_byte_more(field) -> None:
    entries = outfit_entries(3)
    size = (
        len(next(iter(entries.values())))
        if field == "max_entry_bytes"
        else sum(map(len, entries.values()))
    )
    data = zipped(entries)
    assert len(read_zip(data, ArchiveLimits(**{field: size}))) == 3
    refused(lambda: read_zip(data, ArchiveLimits(**{field: size - 1})), "zip_bomb", 413)


# ---------------------------------------------------------------- the document


def documented_defaults() -> dict[str, str]:
    """The `default` column of docs/limits.md's table, by the limit's config name."""
    text = (REPO / "docs" / "limits.md").read_text()
    rows = re.findall(
        r"^\| ([^|]+) \| `([^`]+)` \| ([^|]+) \| `([a-z_]+)` (\d{3}|1009)", text, re.MULTILINE
    )
    return {config: default.strip() for _, config, default, _, _ in rows}


def test_docs_limits_states_every_default_the_code_enforces() -> None:
    from spatialtwin.gltf.glb_reader import MESHOPT_MAX_RATIO, ZERO_FILL_PER_BYTE
    from spatialtwin.jobs.queue import DEFAULT_MAX_ACTIVE_PER_TENANT
    from spatialtwin.rights.tokens import MAX_TOKEN_CHARS
    from spatialtwin.server.app import MAX_UPLOAD_BYTES
    from spatialtwin.server.ratelimit import DEFAULT_RATE_LIMIT_PER_MINUTE
    from spatialtwin.server.routes_twins import MAX_POSE_CHARS

    expected = {
        "server.requests.MAX_JSON_BYTES": requests.MAX_JSON_BYTES,
        "server.requests.MAX_METADATA_BYTES": requests.MAX_METADATA_BYTES,
        "server.requests.MAX_PARTS": requests.MAX_PARTS,
        "server.validate.MAX_JSON_DEPTH": validate.MAX_JSON_DEPTH,
        "server.validate.MAX_INT_DIGITS": validate.MAX_INT_DIGITS,
        "server.routes_twins.MAX_POSE_CHARS": MAX_POSE_CHARS,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "garment_max_triangles": IngestOptions().max_triangles,
        "garment_max_simulation_triangles": IngestOptions().max_simulation_triangles,
        "read_scene.SceneLimits.max_triangles": SCENE_DEFAULTS.max_triangles,
        "read_scene.SceneLimits.max_vertices": SCENE_DEFAULTS.max_vertices,
        "makehuman.MAX_BINDING_VERTICES": makehuman.MAX_BINDING_VERTICES,
        "makehuman.MAX_MHCLO_BYTES": makehuman.MAX_MHCLO_BYTES,
        "makehuman.MAX_JSON_BYTES": makehuman.MAX_JSON_BYTES,
        "makehuman.MAX_BONES": makehuman.MAX_BONES,
        "vertex_stream.MAX_VERTICES": MAX_VERTICES,
        "ImageLimits.max_pixels": IMAGE_DEFAULTS.max_pixels,
        "ImageLimits.max_side_px": IMAGE_DEFAULTS.max_side_px,
        "ImageLimits.max_images": IMAGE_DEFAULTS.max_images,
        "ArchiveLimits.max_entries": ARCHIVE_DEFAULTS.max_entries,
        "ArchiveLimits.max_ratio": ARCHIVE_DEFAULTS.max_ratio,
        "ArchiveLimits.max_entry_bytes": ARCHIVE_DEFAULTS.max_entry_bytes,
        "ArchiveLimits.max_total_bytes": ARCHIVE_DEFAULTS.max_total_bytes,
        "glb_reader.ZERO_FILL_PER_BYTE": ZERO_FILL_PER_BYTE,
        "glb_reader.MESHOPT_MAX_RATIO": MESHOPT_MAX_RATIO,
        "live.frames.MAX_FRAME_BYTES": frames.MAX_FRAME_BYTES,
        "live.frames.MAX_FRAME_PIXELS": frames.MAX_FRAME_PIXELS,
        "mirror_messages.MAX_TEXT_BYTES": MAX_TEXT_BYTES,
        "rights.tokens.MAX_TOKEN_CHARS": MAX_TOKEN_CHARS,
        "rate_limit_per_minute": DEFAULT_RATE_LIMIT_PER_MINUTE,
        "max_active_jobs_per_tenant": DEFAULT_MAX_ACTIVE_PER_TENANT,
    }
    documented = documented_defaults()
    assert sorted(documented) == sorted(expected)
    for name, value in expected.items():
        number = float(re.sub(r"[ ,_]", "", documented[name].split("(")[0]))
        assert number == value, (name, documented[name], value)
