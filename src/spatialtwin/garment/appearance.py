"""How a garment looks: its materials (glTF 2.0 metallic-roughness) and their texture images.

Ingest keeps what the merchandiser uploaded — base colour factor and texture, normal map,
metallic/roughness factors and texture, alpha mode, double-sidedness — so a look shows the
garment, not a flat colour. Images are kept as the encoded PNG/JPEG bytes that were uploaded
(never re-encoded: the look carries the very same bytes), and each is checked for size before
anything decodes it (`gltf.garment_material`).

A material is plain data with a JSON form (the garment record's `materials`); images are
referred to by index into `Appearance.images`, which the store keeps as content-addressed
blobs (a size run's S, M and L share one texture blob).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

Rgba = tuple[float, float, float, float]

DEFAULT_BASE_COLOUR: Rgba = (0.55, 0.60, 0.70, 1.0)
# Woven and knitted fabrics are rough and dielectric; used when a format (OBJ/MTL without the
# PBR extension, PLY, STL) says nothing about it.
CLOTH_ROUGHNESS = 0.85
ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")
WRAP_MODES = (33071, 33648, 10497)  # CLAMP_TO_EDGE, MIRRORED_REPEAT, REPEAT (glTF samplers)
REPEAT = 10497
IMAGE_MIME_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class TextureImage:
    """One encoded image (PNG or JPEG bytes as uploaded) and its size in pixels."""

    mime: str
    data: bytes = field(repr=False)
    width_px: int
    height_px: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The record's view of the image (the bytes live in a blob)."""
        return {
            "mime": self.mime,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "bytes": len(self.data),
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class TextureRef:
    """A material's use of an image: which one, how it wraps, and (normal maps) its scale."""

    image: int
    wrap_s: int = REPEAT
    wrap_t: int = REPEAT
    scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "wrap_s": self.wrap_s,
            "wrap_t": self.wrap_t,
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, data: Any) -> TextureRef | None:
        if not isinstance(data, dict) or not isinstance(data.get("image"), int):
            return None
        return cls(
            image=int(data["image"]),
            wrap_s=int(data.get("wrap_s", REPEAT)),
            wrap_t=int(data.get("wrap_t", REPEAT)),
            scale=float(data.get("scale", 1.0)),
        )


@dataclass(frozen=True)
class GarmentMaterial:
    """A glTF 2.0 metallic-roughness material, as the upload described it."""

    name: str
    base_color_factor: Rgba = DEFAULT_BASE_COLOUR
    metallic_factor: float = 0.0
    roughness_factor: float = CLOTH_ROUGHNESS
    base_color_texture: TextureRef | None = None
    normal_texture: TextureRef | None = None
    metallic_roughness_texture: TextureRef | None = None
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5
    double_sided: bool = True

    def with_images_remapped(self, remap: dict[int, int]) -> GarmentMaterial:
        """The same material with image indices renumbered (dropped ones become None)."""

        def moved(ref: TextureRef | None) -> TextureRef | None:
            if ref is None or ref.image not in remap:
                return None
            return replace(ref, image=remap[ref.image])

        return replace(
            self,
            base_color_texture=moved(self.base_color_texture),
            normal_texture=moved(self.normal_texture),
            metallic_roughness_texture=moved(self.metallic_roughness_texture),
        )

    def untextured(self) -> GarmentMaterial:
        """The same material with its factors only (for a mesh without UVs)."""
        return replace(
            self, base_color_texture=None, normal_texture=None, metallic_roughness_texture=None
        )

    def textures(self) -> dict[str, TextureRef]:
        slots = {
            "base_color_texture": self.base_color_texture,
            "normal_texture": self.normal_texture,
            "metallic_roughness_texture": self.metallic_roughness_texture,
        }
        return {k: v for k, v in slots.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        """The record's form; `base_color` is kept for clients that read only the colour."""
        out: dict[str, Any] = {
            "name": self.name,
            "base_color": list(self.base_color_factor),
            "metallic_factor": self.metallic_factor,
            "roughness_factor": self.roughness_factor,
            "alpha_mode": self.alpha_mode,
            "alpha_cutoff": self.alpha_cutoff,
            "double_sided": self.double_sided,
        }
        for slot, ref in self.textures().items():
            out[slot] = ref.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GarmentMaterial:
        """Read a record's material; records written before materials were kept in full hold
        only `name` and `base_color`, and read as a plain cloth material of that colour."""
        colour = data.get("base_color") or DEFAULT_BASE_COLOUR
        rgba = tuple(float(c) for c in colour)
        alpha_mode = str(data.get("alpha_mode", "OPAQUE"))
        return cls(
            name=str(data.get("name") or "material"),
            base_color_factor=rgba if len(rgba) == 4 else DEFAULT_BASE_COLOUR,  # type: ignore[arg-type]
            metallic_factor=float(data.get("metallic_factor", 0.0)),
            roughness_factor=float(data.get("roughness_factor", CLOTH_ROUGHNESS)),
            base_color_texture=TextureRef.from_json(data.get("base_color_texture")),
            normal_texture=TextureRef.from_json(data.get("normal_texture")),
            metallic_roughness_texture=TextureRef.from_json(data.get("metallic_roughness_texture")),
            alpha_mode=alpha_mode if alpha_mode in ALPHA_MODES else "OPAQUE",
            alpha_cutoff=float(data.get("alpha_cutoff", 0.5)),
            double_sided=bool(data.get("double_sided", True)),
        )


@dataclass(frozen=True)
class Appearance:
    """A garment's materials (indexed by the render mesh's `face_material`) and images."""

    materials: list[GarmentMaterial]
    images: list[TextureImage] = field(default_factory=list)

    def material(self, index: int) -> GarmentMaterial:
        if 0 <= index < len(self.materials):
            return self.materials[index]
        return GarmentMaterial(name=f"material_{index}")

    @classmethod
    def plain(cls, base_color: Rgba = DEFAULT_BASE_COLOUR) -> Appearance:
        """One untextured cloth material: what a garment without any material looks like."""
        return cls([GarmentMaterial(name="cloth", base_color_factor=base_color)])

    @classmethod
    def from_record(cls, materials: list[dict[str, Any]], images: list[TextureImage]) -> Appearance:
        return cls([GarmentMaterial.from_json(m) for m in materials], list(images))
