"""Fuzzing zip uploads (the archive reader and garment ingest of a zipped OBJ with its MTL and
texture), MTL material libraries, and texture images.

The seed archive is what a merchandiser's tool exports: a MakeHuman outfit's OBJ (cut down),
an MTL naming its texture, and the outfit's real thumbnail PNG as that texture, deflated and
stored. Archive mutations are header-level (every size, count, offset, name length and
method field of the local headers, the central directory and its end record, set to edges:
a zip bomb's lying sizes, entries that run past the file) besides byte-level. Texture seeds
are the thumbnail and a real photo in each format garment ingest accepts.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from functools import cache

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spatialtwin.garment.appearance import TextureImage
from spatialtwin.garment.source import MeshSource
from spatialtwin.gltf.archive import read_zip
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.garment_material import checked_image, mtl_appearance
from tests.conftest import shared
from tests.fuzz_strategies import (
    INTERESTING_32,
    FuzzInput,
    as_input,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    mutated_bytes,
    mutated_lines,
    obj_slice,
    write_field,
)

MTL = (
    b"# exported with the outfit\n"
    b"newmtl cloth\n"
    b"Kd 0.8 0.7 0.6\n"
    b"d 1.0\n"
    b"Pr 0.9\n"
    b"map_Kd -s 1 1 1 textures/sportsuit.png\n"
)


@cache
def outfit_files() -> dict[str, bytes]:
    obj = obj_slice(
        shared("garments", "female_sportsuit01.obj").read_bytes(),
        150,
        b"mtllib outfit.mtl\nusemtl cloth\n",
    )
    thumb = shared("garments", "female_sportsuit01.thumb").read_bytes()
    return {
        "outfit/outfit.obj": obj,
        "outfit/outfit.mtl": MTL,
        "outfit/textures/sportsuit.png": thumb,
    }


@cache
def zip_seeds() -> list[bytes]:
    out = []
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as archive:
            for name, data in outfit_files().items():
                archive.writestr(name, data)
        out.append(buf.getvalue())
    return out


# Field offsets (format) of the zip records, from APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16.
LOCAL_FIELDS = {6: "<H", 8: "<H", 14: "<I", 18: "<I", 22: "<I", 26: "<H", 28: "<H"}
CENTRAL_FIELDS = {
    8: "<H",
    10: "<H",
    20: "<I",
    24: "<I",
    28: "<H",
    30: "<H",
    32: "<H",
    38: "<I",
    42: "<I",
}
END_FIELDS = {8: "<H", 10: "<H", 12: "<I", 16: "<I", 20: "<H"}
RECORDS = {b"PK\x03\x04": LOCAL_FIELDS, b"PK\x01\x02": CENTRAL_FIELDS, b"PK\x05\x06": END_FIELDS}


@st.composite
def zip_with_edited_headers(draw: st.DrawFn) -> bytes:
    """A real archive with 1-3 record fields set to edge values (sizes, counts, offsets,
    name/extra lengths, method, flags, external attributes)."""
    data = draw(st.sampled_from(zip_seeds()))
    records = [(at, fields) for magic, fields in RECORDS.items() for at in _find_all(data, magic)]
    for _ in range(draw(st.integers(1, 3))):
        at, fields = draw(st.sampled_from(records))
        offset = draw(st.sampled_from(sorted(fields)))
        fmt = fields[offset]
        limit = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
        value = draw(st.sampled_from([v for v in INTERESTING_32 if v <= limit] + [8, 12, 99]))
        if offset == 38 and fmt == "<I" and draw(st.booleans()):
            value = 0o120777 << 16  # a symbolic link's mode in the external attributes
        data = write_field(data, at + offset, fmt, value)
    return data


def _find_all(data: bytes, magic: bytes) -> list[int]:
    out, at = [], data.find(magic)
    while at >= 0:
        out.append(at)
        at = data.find(magic, at + 1)
    return out


def zip_input() -> st.SearchStrategy[FuzzInput]:
    return as_input(
        lambda: st.one_of(zip_with_edited_headers(), mutated_bytes(zip_seeds(), hot=512)),
        "fuzz.zip",
    )


@fuzz_settings(1.5)
@given(zip_input())
def test_the_archive_reader_reads_or_refuses_every_mutated_zip(item: FuzzInput) -> None:
    def check(entries: dict[str, bytes]) -> None:
        assert all(not name.startswith("/") and ".." not in name.split("/") for name in entries)
        assert sum(map(len, entries.values())) <= 200 * len(item.data)

    exercise("archive.read_zip", lambda: read_zip(item.data), len(item), check)


def check_garment_source(source: MeshSource) -> None:
    assert len(source.faces) and source.faces.min() >= 0
    assert source.faces.max() < len(source.vertices)
    assert len(source.face_material) == len(source.faces)
    assert all(image.width_px * image.height_px <= 4096 * 4096 for image in source.images)


@fuzz_settings(1.0)
@given(zip_input())
def test_garment_ingest_reads_or_refuses_every_mutated_zip(item: FuzzInput) -> None:
    exercise(
        "garment_io.read_garment_file(zip)",
        lambda: read_garment_file(item.data, "outfit.zip"),
        len(item),
        check_garment_source,
    )


# ---------------------------------------------------------------- MTL


@fuzz_settings(1.0)
@given(as_input(lambda: mutated_lines([MTL]), "outfit.mtl"))
def test_the_mtl_reader_reads_or_refuses_every_mutated_material_library(item: FuzzInput) -> None:
    files = dict(outfit_files(), **{"outfit.mtl": item.data})

    def find(name: str) -> bytes | None:
        return files.get(name) or files.get(f"outfit/{name}")

    exercise(
        "garment_material.mtl_appearance",
        lambda: mtl_appearance(files["outfit/outfit.obj"], find),
        len(item),
    )


# ---------------------------------------------------------------- texture images


@cache
def image_seeds() -> list[bytes]:
    """The outfit's thumbnail (PNG) and a real photo as JPEG, BMP, GIF, TGA, TIFF and WebP."""
    out = [shared("garments", "female_sportsuit01.thumb").read_bytes()]
    photo = shared("people", "pose.jpg").read_bytes()
    out.append(photo)
    with Image.open(io.BytesIO(photo)) as im:
        small = im.convert("RGB").resize((64, 48))
    for fmt in ("BMP", "GIF", "TGA", "TIFF", "WEBP"):
        buf = io.BytesIO()
        small.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


@st.composite
def image_with_edited_size(draw: st.DrawFn) -> bytes:
    """The PNG thumbnail claiming another size in its IHDR (CRC left stale or fixed)."""
    png = bytearray(image_seeds()[0])
    width = draw(st.sampled_from([0, 1, 4096, 4097, 8192, 8193, 2**31 - 1]))
    height = draw(st.sampled_from([0, 1, 4096, 4097, 8192, 65536]))
    png[16:24] = struct.pack(">II", width, height)
    if draw(st.booleans()):
        png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@fuzz_settings(1.5)
@given(
    as_input(
        lambda: st.one_of(image_with_edited_size(), mutated_bytes(image_seeds(), hot=256)),
        "texture.img",
    )
)
def test_texture_images_are_checked_from_their_header_or_refused(item: FuzzInput) -> None:
    def check(image: TextureImage) -> None:
        assert 0 < image.width_px * image.height_px <= 4096 * 4096
        assert image.mime in ("image/png", "image/jpeg")

    exercise(
        "garment_material.checked_image",
        lambda: checked_image(item.data, "t.png"),
        len(item),
        check,
    )
