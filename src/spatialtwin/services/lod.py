"""The LOD service: a scene in, level files and a manifest out (`build_lod_for_scene`).

It joins the numerics of `lod` (levels) to the level writer of `gltf` (`level_glb`).

    build = build_lod_for_scene(scene_from_twin_body(body), url_prefix="/api/v1/lod/")
    build.manifest["levels"][-1]["url"]   # the small first level a client shows at once

Steps: (1) levels (cull, simplify pose-aware, clear garments, measure), (2) one position grid
for all levels so their bounding boxes agree, (3) per level a meshopt-compressed GLB with an
uncompressed fallback buffer beside it and a quantised-only GLB (the AR hand-off), textures
scaled down per level, (4) the manifest. File names are the SHA-256 of their bytes, which is
also the store's blob key, so URLs are content-hashed and immutable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from spatialtwin import __version__
from spatialtwin.gltf.level_glb import PositionGrid, write_level
from spatialtwin.lod.levels import DEFAULTS, Level, LevelOptions, build_levels
from spatialtwin.lod.scene import LodScene
from spatialtwin.lod.selection import DISPLAY_PROFILES, pick_level
from spatialtwin.lod.simplifier import backend_name

PIPELINE_VERSION = "lod-1"
TEXTURE_MAX_PX = (2048, 1024, 512, 256)
AR_LEVEL = 1  # the 25 % level: sharp at arm's length, small enough for a phone to place


@dataclass
class LodBuild:
    manifest: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # "<sha256>.glb|.bin" -> bytes
    levels: list[Level] = field(default_factory=list)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_lod_for_scene(
    scene: LodScene,
    options: LevelOptions = DEFAULTS,
    *,
    url_prefix: str = "",
    inputs: dict[str, str] | None = None,
) -> LodBuild:
    """Build every level of `scene`; `inputs` (name -> content hash) are echoed in the manifest."""
    levels = build_levels(scene, options)
    grid = PositionGrid.for_scene(levels[0].scene)
    files: dict[str, bytes] = {}
    entries = []
    for lv in levels:
        tex = TEXTURE_MAX_PX[min(lv.index, len(TEXTURE_MAX_PX) - 1)]
        extras = {
            "spatialtwin": {
                "version": __version__,
                **scene.extras,
                "lod": {
                    "level": lv.index,
                    "triangles": lv.triangles,
                    "geometricError_m": round(lv.error_m, 6),
                },
            }
        }
        fallback = write_level(
            lv.scene, grid, compress=True, fallback_uri="x", texture_max_px=tex, extras=extras
        ).fallback
        assert fallback is not None
        fb_name = f"{_sha(fallback)}.bin"
        glb = write_level(
            lv.scene, grid, compress=True, fallback_uri=fb_name, texture_max_px=tex, extras=extras
        ).glb
        plain = write_level(lv.scene, grid, compress=False, texture_max_px=tex, extras=extras).glb
        glb_name, plain_name = f"{_sha(glb)}.glb", f"{_sha(plain)}.glb"
        files.update({glb_name: glb, fb_name: fallback, plain_name: plain})
        entries.append(
            {
                "level": lv.index,
                "ratio": lv.ratio,
                "url": url_prefix + glb_name,
                "bytes": len(glb),
                "triangles": lv.triangles,
                "geometricError_m": round(lv.error_m, 6),
                "errorByPose_m": {k: round(v, 6) for k, v in lv.error_by_pose_m.items()},
                "textureMaxPx": tex,
                "fallback": {"url": url_prefix + fb_name, "bytes": len(fallback)},
                "quantized": {"url": url_prefix + plain_name, "bytes": len(plain)},
                "garmentVerticesPushed": lv.garment_vertices_pushed,
                "skinThroughCloth_m": round(lv.skin_through_cloth_m, 6),
            }
        )
    lo, hi = levels[0].scene.bounds_m()
    ar = entries[min(AR_LEVEL, len(entries) - 1)]
    manifest = {
        "version": 1,
        "pipeline": PIPELINE_VERSION,
        "scene": scene.name,
        "units": "metres",
        "inputs": dict(inputs or {}),
        "bounds_m": {
            "min": [round(float(x), 6) for x in lo],
            "max": [round(float(x), 6) for x in hi],
        },
        "positionStep_m": grid.step_m,
        "simplifier": backend_name(),
        "hiddenBodyTrianglesCulled": scene.triangle_count - levels[0].triangles,
        "errorMetric": "sampled symmetric Hausdorff distance to the full level, metres, worst "
        "of the bind pose and the bent poses in errorByPose_m",
        "levels": entries,
        "firstLevel": len(entries) - 1,
        "ar": {
            "level": ar["level"],
            "url": ar["quantized"]["url"],
            "bytes": ar["quantized"]["bytes"],
            "note": "KHR_mesh_quantization only, no EXT_meshopt_compression: for Android Scene "
            "Viewer; iOS Quick Look needs USDZ converted from this file",
        },
        "displayProfiles": {
            name: {**profile, "level": pick_level(entries, profile["mmPerPx"])}
            for name, profile in DISPLAY_PROFILES.items()
        },
        "selection": "coarsest level with geometricError_m <= maxPixelError * mmPerPx / 1000",
    }
    return LodBuild(manifest, files, levels)
