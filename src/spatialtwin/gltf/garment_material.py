"""A garment upload's materials and texture images: glTF/GLB materials, OBJ's MTL, image checks.

What is kept (`garment.appearance`): base colour factor and texture, normal map (and its
scale), metallic and roughness factors and their texture, alpha mode and cutoff,
double-sidedness, and each texture's wrap modes. Only the first UV set is kept, so a texture
on `TEXCOORD_1` is dropped with a warning; `KHR_texture_transform` and other extensions are
ignored.

Images are untrusted input and are checked before anything decodes them: the header alone
(PIL reads it lazily) gives the format and size, and an image over `IMAGE_DEFAULTS` —
4096 × 4096 = 16.8 million pixels, no side over 8192 px, 16 images per garment — is refused
with 413 `image_too_large` / `too_many_images`; bytes that are no image, or a truncated PNG, are
refused with 422 `corrupt_image`. PNG and JPEG (the formats core glTF 2.0 allows) are kept
byte for byte; BMP, TGA, TIFF, GIF and WebP, common beside OBJ files, are decoded after the
size check and stored as PNG.

MTL (Wavefront material library, with the PBR extension's `Pr`/`Pm`): `Kd` → base colour,
`d` or `Tr` → alpha (BLEND below 1), `map_Kd` → base colour texture, `norm` → normal map,
`map_Bump`/`bump` → normal map when the image is in colour (a tangent-space normal map),
otherwise a height map, which glTF cannot use (dropped with a warning), `Pr` → roughness,
`Pm` → metallic. `Ns` (a Phong exponent, usually an exporter default) is ignored: cloth is
rough. OBJ faces are double-sided (the format cannot say otherwise and cloth is seen from
inside too).

trimesh parses the geometry. So that each of its meshes can be traced back to the material it
came from, the glTF handed to it has its materials renamed `spatialtwin-material-<index>` and
its images and textures removed (trimesh would decode every image; the kept bytes never need
decoding), and OBJ image files are hidden from it.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import (
    ALPHA_MODES,
    CLOTH_ROUGHNESS,
    DEFAULT_BASE_COLOUR,
    REPEAT,
    WRAP_MODES,
    GarmentMaterial,
    TextureImage,
    TextureRef,
)

MATERIAL_TAG = "spatialtwin-material-"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".gif", ".webp")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_CONVERTIBLE = {"BMP", "TGA", "TIFF", "GIF", "WEBP"}


@dataclass(frozen=True)
class ImageLimits:
    """Ceilings for a garment's textures, checked from each image's header."""

    max_pixels: int = 4096 * 4096
    max_side_px: int = 8192
    max_images: int = 16


IMAGE_DEFAULTS = ImageLimits()


@dataclass
class ReadAppearance:
    """Materials in file order, the images they use (deduplicated), and what was dropped."""

    materials: list[GarmentMaterial] = field(default_factory=list)
    images: list[TextureImage] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    by_name: dict[str, int] = field(default_factory=dict)  # MTL material name → index

    def add_image(self, image: TextureImage, limits: ImageLimits) -> int:
        for i, known in enumerate(self.images):
            if known.data == image.data:
                return i
        if len(self.images) >= limits.max_images:
            raise SpatialTwinError(
                "too_many_images",
                f"a garment may use at most {limits.max_images} texture images",
                {"limit": limits.max_images},
                status=413,
            )
        self.images.append(image)
        return len(self.images) - 1


def material_index(name: str | None) -> int | None:
    """The material index a tagged name carries (`spatialtwin-material-3` → 3), else None."""
    if name and name.startswith(MATERIAL_TAG):
        tail = name[len(MATERIAL_TAG) :]
        if tail.isdigit():
            return int(tail)
    return None


# --- images ------------------------------------------------------------------------------------


def _corrupt_image(name: str, why: str) -> SpatialTwinError:
    return SpatialTwinError(
        "corrupt_image",
        f"the texture {name!r} is not a readable image: {why}",
        {"image": name},
        status=422,
    )


def checked_image(data: bytes, name: str, limits: ImageLimits = IMAGE_DEFAULTS) -> TextureImage:
    """An uploaded image, its size checked from the header before any pixel is decoded."""
    if not data:
        raise _corrupt_image(name, "it is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # lazy: reads the header only
            width, height, fmt = int(image.width), int(image.height), str(image.format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SpatialTwinError(
            "image_too_large",
            f"the texture {name!r} is far larger than {limits.max_pixels} pixels",
            {"image": name, "max_pixels": limits.max_pixels},
            status=413,
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _corrupt_image(name, f"{type(exc).__name__}: {exc}") from exc
    if width * height > limits.max_pixels or max(width, height) > limits.max_side_px:
        raise SpatialTwinError(
            "image_too_large",
            f"the texture {name!r} is {width} × {height} px; at most {limits.max_pixels} pixels "
            f"and {limits.max_side_px} px a side are allowed",
            {
                "image": name,
                "width_px": width,
                "height_px": height,
                "max_pixels": limits.max_pixels,
                "max_side_px": limits.max_side_px,
            },
            status=413,
        )
    if width == 0 or height == 0:
        raise _corrupt_image(name, "it has no pixels")
    if fmt == "PNG" and data.startswith(_PNG_MAGIC):
        _check_png_chunks(data, name)
        return TextureImage("image/png", bytes(data), width, height)
    if fmt in ("JPEG", "MPO") and data.startswith(_JPEG_MAGIC):
        if data.rfind(b"\xff\xd9") < 4:
            raise _corrupt_image(name, "the JPEG is cut short (no end-of-image marker)")
        return TextureImage("image/jpeg", bytes(data), width, height)
    if fmt in _CONVERTIBLE:
        return _as_png(image, name, width, height)
    raise SpatialTwinError(
        "unsupported_image_format",
        f"the texture {name!r} is {fmt}; send PNG or JPEG (or BMP, TGA, TIFF, GIF, WebP)",
        {"image": name, "format": fmt},
        status=422,
    )


def _check_png_chunks(data: bytes, name: str) -> None:
    """Walk the PNG's chunks and their CRCs (no decompression): a cut file is refused here."""
    pos = len(_PNG_MAGIC)
    seen_end = False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise _corrupt_image(name, f"the PNG chunk {kind!r} is cut short")
        if (
            zlib.crc32(data[pos + 4 : pos + 8 + length])
            != struct.unpack(">I", data[end - 4 : end])[0]
        ):
            raise _corrupt_image(name, f"the PNG chunk {kind!r} fails its CRC")
        pos = end
        if kind == b"IEND":
            seen_end = True
            break
    if not seen_end:
        raise _corrupt_image(name, "the PNG has no IEND chunk")


def _as_png(image: Image.Image, name: str, width: int, height: int) -> TextureImage:
    try:
        image.load()
        converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        converted.save(out, format="PNG", optimize=False)
    except (OSError, ValueError, SyntaxError) as exc:
        raise _corrupt_image(name, f"{type(exc).__name__}: {exc}") from exc
    return TextureImage("image/png", out.getvalue(), width, height)


def _image_bands(data: bytes) -> int:
    """Colour channels of an encoded image, from its header (1 for greyscale)."""
    try:
        return len(Image.open(io.BytesIO(data)).getbands())
    except (UnidentifiedImageError, OSError, ValueError):
        return 0


# --- glTF / GLB ---------------------------------------------------------------------------------


def join_glb(doc: dict[str, Any], blob: bytes | None) -> bytes:
    """A GLB from a JSON document and an optional BIN chunk (both padded as the spec says)."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 4)
    chunks = struct.pack("<I4s", len(body), b"JSON") + body
    if blob is not None:
        padded = blob + b"\x00" * (-len(blob) % 4)
        chunks += struct.pack("<I4s", len(padded), b"BIN\x00") + padded
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def _corrupt(filename: str, why: str) -> SpatialTwinError:
    return SpatialTwinError(
        "corrupt_file",
        f"{filename!r} is corrupt or truncated: {why}",
        {"filename": filename},
        status=422,
    )


def tagged_for_trimesh(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the glTF document whose materials carry their index in their name and whose
    textures and images are gone (see the module docstring)."""
    out = dict(doc)
    out["materials"] = [
        {"name": f"{MATERIAL_TAG}{i}"} for i in range(len(doc.get("materials") or []))
    ]
    for key in ("images", "textures", "samplers"):
        out.pop(key, None)
    return out


def _number(value: Any, default: float, lo: float = 0.0, hi: float = 1.0) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi:
        return float(value)
    return default


def _colour(value: Any) -> tuple[float, float, float, float]:
    if (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in value)
    ):
        return tuple(float(min(max(c, 0.0), 1.0)) for c in value)  # type: ignore[return-value]
    return (1.0, 1.0, 1.0, 1.0)


def gltf_appearance(
    doc: dict[str, Any],
    buffer_bytes: Callable[[int], bytes | None],
    uri_bytes: Callable[[str], bytes | None],
    filename: str,
    limits: ImageLimits = IMAGE_DEFAULTS,
) -> ReadAppearance:
    """Materials and images of a glTF document.

    `buffer_bytes(i)` gives buffer i's bytes (the GLB's BIN chunk, an archive entry, a data
    URI), `uri_bytes(uri)` an image's bytes by URI; either answers None when it cannot.
    """
    found = ReadAppearance()
    images = doc.get("images") or []
    textures = doc.get("textures") or []
    samplers = doc.get("samplers") or []
    views = doc.get("bufferViews") or []
    kept: dict[int, int] = {}  # glTF image index → our image index

    def image_data(index: int) -> tuple[bytes | None, str]:
        image = (
            images[index] if 0 <= index < len(images) and isinstance(images[index], dict) else {}
        )
        label = str(image.get("name") or image.get("uri") or f"image {index}")[:120]
        if "bufferView" in image:
            view_index = image["bufferView"]
            view = (
                views[view_index]
                if isinstance(view_index, int) and 0 <= view_index < len(views)
                else None
            )
            if not isinstance(view, dict) or not isinstance(view.get("buffer"), int):
                raise _corrupt(filename, f"{label} refers to a missing buffer view")
            buf = buffer_bytes(view["buffer"])
            start = int(view.get("byteOffset", 0))
            length = int(view.get("byteLength", 0))
            if buf is None or start < 0 or length <= 0 or start + length > len(buf):
                raise _corrupt(filename, f"{label} lies outside its buffer")
            return buf[start : start + length], label
        uri = image.get("uri")
        if isinstance(uri, str):
            return uri_bytes(uri), label
        return None, label

    def texture(info: Any, slot: str, material_name: str) -> TextureRef | None:
        if not isinstance(info, dict) or not isinstance(info.get("index"), int):
            return None
        tex_index = info["index"]
        tex = textures[tex_index] if 0 <= tex_index < len(textures) else None
        if not isinstance(tex, dict) or not isinstance(tex.get("source"), int):
            found.warnings.append(
                {
                    "code": "texture_unsupported",
                    "material": material_name,
                    "slot": slot,
                    "reason": "the texture has no core glTF image source",
                }
            )
            return None
        if int(info.get("texCoord", 0)) != 0:
            found.warnings.append(
                {
                    "code": "texture_uv_set_dropped",
                    "material": material_name,
                    "slot": slot,
                    "texCoord": info.get("texCoord"),
                }
            )
            return None
        source = tex["source"]
        if source not in kept:
            data, label = image_data(source)
            if data is None:
                found.warnings.append(
                    {
                        "code": "texture_missing",
                        "material": material_name,
                        "slot": slot,
                        "image": label,
                    }
                )
                return None
            kept[source] = found.add_image(checked_image(data, label, limits), limits)
        sampler_index = tex.get("sampler")
        sampler = (
            samplers[sampler_index]
            if isinstance(sampler_index, int) and 0 <= sampler_index < len(samplers)
            else {}
        )
        wrap_s = sampler.get("wrapS", REPEAT) if isinstance(sampler, dict) else REPEAT
        wrap_t = sampler.get("wrapT", REPEAT) if isinstance(sampler, dict) else REPEAT
        scale = info.get("scale", 1.0) if slot == "normal_texture" else 1.0
        return TextureRef(
            image=kept[source],
            wrap_s=wrap_s if wrap_s in WRAP_MODES else REPEAT,
            wrap_t=wrap_t if wrap_t in WRAP_MODES else REPEAT,
            scale=_number(scale, 1.0, 0.0, 10.0),
        )

    for i, mat in enumerate(doc.get("materials") or []):
        mat = mat if isinstance(mat, dict) else {}
        name = str(mat.get("name") or f"material_{i}")[:120]
        pbr = mat.get("pbrMetallicRoughness")
        pbr = pbr if isinstance(pbr, dict) else {}
        alpha_mode = mat.get("alphaMode", "OPAQUE")
        found.materials.append(
            GarmentMaterial(
                name=name,
                base_color_factor=_colour(pbr.get("baseColorFactor", [1, 1, 1, 1])),
                # glTF's defaults (metallic and roughness 1) where the file says nothing.
                metallic_factor=_number(pbr.get("metallicFactor"), 1.0),
                roughness_factor=_number(pbr.get("roughnessFactor"), 1.0),
                base_color_texture=texture(pbr.get("baseColorTexture"), "base_color_texture", name),
                normal_texture=texture(mat.get("normalTexture"), "normal_texture", name),
                metallic_roughness_texture=texture(
                    pbr.get("metallicRoughnessTexture"), "metallic_roughness_texture", name
                ),
                alpha_mode=alpha_mode if alpha_mode in ALPHA_MODES else "OPAQUE",
                alpha_cutoff=_number(mat.get("alphaCutoff"), 0.5),
                double_sided=mat.get("doubleSided") is True,
            )
        )
    return found


def data_uri_bytes(uri: str) -> bytes | None:
    """The payload of a base64 `data:` URI, or None for any other URI."""
    if not uri.startswith("data:"):
        return None
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def entry_lookup(entries: dict[str, bytes], folder: str) -> Callable[[str], bytes | None]:
    """Finds a file an archive member refers to (relative to `folder`, or by its base name)."""

    def get(name: str) -> bytes | None:
        if name.startswith("data:"):
            return data_uri_bytes(name)
        clean = name.replace("\\", "/").strip().strip('"')
        joined = str(PurePosixPath(folder) / clean) if folder not in ("", ".") else clean
        for candidate in (joined, clean.lstrip("./"), PurePosixPath(clean).name):
            if candidate in entries:
                return entries[candidate]
        lower = {k.lower(): k for k in entries}
        for candidate in (joined.lower(), PurePosixPath(clean).name.lower()):
            if candidate in lower:
                return entries[lower[candidate]]
        return None

    return get


# --- OBJ + MTL ----------------------------------------------------------------------------------

# Options of MTL map statements and how many values each takes (Wavefront MTL spec).
_MAP_OPTIONS = {
    "-blendu": 1,
    "-blendv": 1,
    "-bm": 1,
    "-boost": 1,
    "-cc": 1,
    "-clamp": 1,
    "-imfchan": 1,
    "-mm": 2,
    "-o": 3,
    "-s": 3,
    "-t": 3,
    "-texres": 1,
    "-type": 1,
}


def _map_statement(args: list[str]) -> tuple[str, dict[str, list[str]]]:
    """(file name, options) of a `map_*` line; the name may contain spaces."""
    options: dict[str, list[str]] = {}
    i = 0
    while i < len(args) and args[i] in _MAP_OPTIONS:
        want = _MAP_OPTIONS[args[i]]
        values = []
        j = i + 1
        while j < len(args) and len(values) < want:
            try:
                float(args[j])
            except ValueError:
                if args[i] not in ("-clamp", "-blendu", "-blendv", "-cc", "-imfchan", "-type"):
                    break
            values.append(args[j])
            j += 1
        options[args[i]] = values
        i = j
    return " ".join(args[i:]), options


def mtl_libraries(obj_text: bytes) -> list[str]:
    """The MTL files an OBJ names in its `mtllib` lines."""
    names: list[str] = []
    for line in obj_text.splitlines():
        if line.startswith(b"mtllib"):
            rest = line[6:].decode("utf-8", "replace").strip()
            if rest:
                names.append(rest)
    return names


def mtl_appearance(
    obj_text: bytes,
    find: Callable[[str], bytes | None] | None,
    limits: ImageLimits = IMAGE_DEFAULTS,
) -> ReadAppearance:
    """Materials of an OBJ from its MTL libraries (`find` resolves file names; None when the
    OBJ came alone, without its MTL and textures)."""
    found = ReadAppearance()
    for library in mtl_libraries(obj_text):
        data = find(library) if find is not None else None
        if data is None:
            found.warnings.append(
                {
                    "code": "material_library_missing",
                    "file": library[:200],
                    "hint": "upload a zip holding the OBJ, its MTL and its textures",
                }
            )
            continue
        _parse_mtl(data, library, find, found, limits)  # type: ignore[arg-type]
    return found


def _unit_number(text: Any, default: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return default
    return min(max(value, 0.0), 1.0)


def _mtl_texture(
    statement: tuple[str, dict[str, list[str]]],
    slot: str,
    material: str,
    folder: str,
    find: Callable[[str], bytes | None],
    found: ReadAppearance,
    limits: ImageLimits,
    *,
    bump: bool = False,
) -> TextureRef | None:
    """One `map_*` statement's image, checked and added to `found` (None: dropped, warned)."""
    file_name, options = statement
    path = str(PurePosixPath(folder) / file_name) if folder not in ("", ".") else file_name
    data = find(path) or find(file_name)
    label = file_name[:200]
    if data is None:
        found.warnings.append(
            {"code": "texture_missing", "material": material, "slot": slot, "image": label}
        )
        return None
    image = checked_image(data, label, limits)
    if bump and _image_bands(image.data) < 3:
        found.warnings.append(
            {
                "code": "bump_height_map_dropped",
                "material": material,
                "image": label,
                "reason": "a greyscale bump map is a height map; glTF needs a normal map",
            }
        )
        return None
    clamp = options.get("-clamp", ["off"])[0].lower() == "on"
    wrap = 33071 if clamp else REPEAT  # CLAMP_TO_EDGE
    return TextureRef(
        image=found.add_image(image, limits),
        wrap_s=wrap,
        wrap_t=wrap,
        scale=_number(_float_or(options.get("-bm", ["1"])[0], 1.0), 1.0, 0.0, 10.0),
    )


def _parse_mtl(
    data: bytes,
    library: str,
    find: Callable[[str], bytes | None],
    found: ReadAppearance,
    limits: ImageLimits,
) -> None:
    folder = str(PurePosixPath(library.replace("\\", "/")).parent)
    # (1) gather each newmtl block's statements
    current: dict[str, Any] | None = None
    entries: list[dict[str, Any]] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, *args = re.split(r"\s+", line)
        key = key.lower()
        if key == "newmtl":
            current = {"name": " ".join(args)[:120] or f"material_{len(entries)}"}
            entries.append(current)
        elif current is None:
            continue
        elif key == "kd" and len(args) >= 3:
            current["kd"] = args[:3]
        elif key in ("d", "tr") and args:
            current[key] = args[-1]
        elif key in ("pr", "pm") and args:
            current[key] = args[0]
        elif key in ("map_kd", "norm", "map_bump", "bump", "map_norm"):
            name, options = _map_statement(args)
            if name:
                current[key] = (name, options)
    # (2) each block as a glTF material
    for entry in entries:
        name = entry["name"]
        kd = [_unit_number(c, 1.0) for c in entry.get("kd", [])] or list(DEFAULT_BASE_COLOUR[:3])
        if "d" in entry:
            alpha = _unit_number(entry["d"], 1.0)
        else:
            alpha = 1.0 - _unit_number(entry.get("tr"), 0.0)
        base_tex = None
        if "map_kd" in entry:
            base_tex = _mtl_texture(
                entry["map_kd"], "base_color_texture", name, folder, find, found, limits
            )
        normal_key = next((k for k in ("norm", "map_norm", "map_bump", "bump") if k in entry), None)
        normal_tex = None
        if normal_key is not None:
            normal_tex = _mtl_texture(
                entry[normal_key],
                "normal_texture",
                name,
                folder,
                find,
                found,
                limits,
                bump=normal_key in ("map_bump", "bump"),
            )
        found.by_name[name] = len(found.materials)
        found.materials.append(
            GarmentMaterial(
                name=name,
                base_color_factor=(kd[0], kd[1], kd[2], alpha),
                metallic_factor=_unit_number(entry.get("pm"), 0.0),
                roughness_factor=_unit_number(entry.get("pr"), CLOTH_ROUGHNESS),
                base_color_texture=base_tex,
                normal_texture=normal_tex,
                alpha_mode="BLEND" if alpha < 1.0 else "OPAQUE",
                double_sided=True,
            )
        )


def _float_or(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def is_image_name(name: str) -> bool:
    return PurePosixPath(name.lower()).suffix in IMAGE_SUFFIXES
