"""The LOD service: a scene in, level files and a manifest out; manifests and level files.

`build_lod_for_scene` joins the numerics of `lod` (levels) to the level writer of `gltf`
(`level_glb`). `LodService` answers a twin's or a look's manifest from the store, or queues the
`lod.build` job that makes it (levels are never built inside a request), and serves level
files through the access door on every read.

    build = build_lod_for_scene(scene_from_twin_body(body), url_prefix="/api/v1/lod/")
    build.manifest["levels"][-1]["url"]   # the small first level a client shows at once

Steps: (1) levels (cull, simplify pose-aware, clear garments, measure), (2) one position grid
for all levels so their bounding boxes agree, (3) per level a meshopt-compressed GLB with an
uncompressed fallback buffer beside it and a quantised-only GLB (the AR hand-off for Android),
textures scaled down per level, (4) the AR level again as an ARKit USDZ (`gltf.usdz_writer`,
for iOS AR Quick Look), (5) the manifest. File names are the SHA-256 of their bytes, which is
also the store's blob key, so URLs are content-hashed and immutable.

A look draped in a pose has levels too: its meshes are baked where they are shown
(`LodScene.baked`: the posed body and the draped garments as static meshes, no skin), the
levels are simplified from those and measured in that pose, and the manifest says
`"skinned": false`. A rest-pose look or a twin keeps its skin, so a client can still pose it.
USDZ files are AR use: they are served only while every twin they show is licensed for the
`ar` channel (`Access.check_ar_file`), whatever channel the request names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatialtwin import __version__
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.body_arrays import body_from_npz
from spatialtwin.gltf.level_glb import PositionGrid, write_level
from spatialtwin.gltf.read_glb import read_glb_scene
from spatialtwin.gltf.usdz_writer import MEDIA_TYPE as USDZ_MEDIA_TYPE
from spatialtwin.gltf.usdz_writer import UsdzOptions, scene_to_usdz
from spatialtwin.lod.levels import DEFAULTS, Level, LevelOptions, build_levels
from spatialtwin.lod.scene import LodScene, scene_from_twin_body
from spatialtwin.lod.selection import DISPLAY_PROFILES, pick_level
from spatialtwin.lod.simplifier import backend_name
from spatialtwin.rights.license import provenance
from spatialtwin.services.access import AR_CHANNEL
from spatialtwin.services.views import LOD_FILE_PREFIX
from spatialtwin.store.lod_cache import MEDIA_TYPES, cache_key
from spatialtwin.store.twin_repository import body_key

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext
    from spatialtwin.services.looks import LookService

PIPELINE_VERSION = "lod-2"  # lod-2: the AR level as USDZ beside the GLBs
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
    skinned = scene.rig is not None and any(m.skinned for m in scene.meshes)
    files: dict[str, bytes] = {}
    entries = []
    # A coarser level never claims less error than a finer one: errors are measured on
    # samples, and a coarse level can measure lower by chance (a posed look: 15.4 then 13.3
    # mm); clients pick the coarsest level under their budget, so the ladder must be monotone.
    advertised_m = 0.0
    for lv in levels:
        advertised_m = max(advertised_m, lv.error_m)
        tex = TEXTURE_MAX_PX[min(lv.index, len(TEXTURE_MAX_PX) - 1)]
        extras = {
            "spatialtwin": {
                "version": __version__,
                **scene.extras,
                "lod": {
                    "level": lv.index,
                    "triangles": lv.triangles,
                    "geometricError_m": round(advertised_m, 6),
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
                "geometricError_m": round(advertised_m, 6),
                "measuredError_m": round(lv.error_m, 6),
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
    usdz = scene_to_usdz(
        levels[ar["level"]].scene,
        UsdzOptions(texture_max_px=ar["textureMaxPx"]),
        provenance=scene.extras,
    )
    usdz_name = f"{_sha(usdz)}.usdz"
    files[usdz_name] = usdz
    manifest = {
        "version": 1,
        "pipeline": PIPELINE_VERSION,
        "scene": scene.name,
        "units": "metres",
        "inputs": dict(inputs or {}),
        "skinned": skinned,
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
            "Viewer; `usdz` is the same level for iOS AR Quick Look",
            "usdz": {
                "url": url_prefix + usdz_name,
                "bytes": len(usdz),
                "mediaType": USDZ_MEDIA_TYPE,
                "channel": AR_CHANNEL,
            },
        },
        "displayProfiles": {
            name: {**profile, "level": pick_level(entries, profile["mmPerPx"])}
            for name, profile in DISPLAY_PROFILES.items()
        },
        "selection": "coarsest level with geometricError_m <= maxPixelError * mmPerPx / 1000",
    }
    return LodBuild(manifest, files, levels)


def lod_of_glb(data: bytes, name: str, options: LevelOptions = DEFAULTS) -> LodBuild:
    """Levels of any GLB (`spatialtwin lod`): read with the one GLB reader, then built."""
    return build_lod_for_scene(read_glb_scene(data, name=name), options)


# --- the LOD service: manifests answered from the store, builds as jobs ----------------------

BUILD = "lod.build"
FILE_PREFIX = LOD_FILE_PREFIX


@dataclass
class ManifestAnswer:
    """What a manifest request gets: `not_modified` (the client's ETag is the key), the
    `manifest` (built), or the `job` building it."""

    key: str
    manifest: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    not_modified: bool = False


@dataclass(frozen=True)
class LevelFile:
    """A servable level file: its hash, media type, size and, where the store has one, a
    local path (for `sendfile`); otherwise it is streamed with `Store.open_blob`."""

    sha256: str
    media_type: str
    size: int
    path: Path | None


def options_json(options: LevelOptions) -> dict[str, Any]:
    """The level options as JSON (a build job's payload)."""
    return json.loads(json.dumps(asdict(options)))


def options_from_json(data: dict[str, Any]) -> LevelOptions:
    values = dict(data)
    values["ratios"] = tuple(float(r) for r in values["ratios"])
    values["candidates"] = tuple(tuple(c) for c in values["candidates"])
    return LevelOptions(**values)


def _key_options(options: LevelOptions) -> dict[str, Any]:
    return {**asdict(options), "pipeline": PIPELINE_VERSION, "simplifier": backend_name()}


def _provenance_hash(twin: dict[str, Any]) -> str:
    return _sha(json.dumps(provenance(twin), sort_keys=True).encode())


def twin_inputs(twin: dict[str, Any]) -> dict[str, str]:
    """Content hashes of everything a twin's levels depend on."""
    return {"twinBody": body_key(twin), "provenance": _provenance_hash(twin)}


def look_inputs(look: dict[str, Any], twin: dict[str, Any]) -> dict[str, str]:
    """A look's levels depend on its GLB (a new drape, a new GLB) and the twin's provenance."""
    return {"lookGlb": look["blobs"]["glb"], "provenance": _provenance_hash(twin)}


def _file_not_found(sha: str, ext: str) -> SpatialTwinError:
    return SpatialTwinError(
        "lod_file_not_found",
        "no level file with this content hash is served here (unknown, or withdrawn "
        "with its twin's license)",
        {"file": f"{sha}.{ext}"},
        status=404,
    )


class LodService:
    def __init__(self, services: ServiceContext, access: Access, looks: LookService) -> None:
        self.services = services
        self.access = access
        self.looks = looks
        self.records = services.lod_records

    @property
    def options(self) -> LevelOptions:
        return self.services.options.lod

    async def twin_manifest(
        self, twin_id: str, channel: str, if_none_match: Collection[str] = ()
    ) -> ManifestAnswer:
        twin = await self.access.twin_for_use(twin_id, channel)
        key = cache_key(twin_inputs(twin), _key_options(self.options))
        if key in if_none_match or "*" in if_none_match:
            return ManifestAnswer(key, not_modified=True)
        return await self._answer(key, "twin", twin["id"], channel, {"twinId": twin["id"]})

    async def look_manifest(
        self, look_id: str, channel: str, if_none_match: Collection[str] = ()
    ) -> ManifestAnswer:
        look = await self.looks.get_for_use(look_id, channel)
        twin = await self.services.twin_records.get(look["twin"])
        key = cache_key(look_inputs(look, twin), _key_options(self.options))
        if key in if_none_match or "*" in if_none_match:
            return ManifestAnswer(key, not_modified=True)
        extra = {"lookId": look["id"], "twinId": twin["id"]}
        return await self._answer(key, "look", look["id"], channel, extra)

    async def _answer(
        self, key: str, subject: str, subject_id: str, channel: str, extra: dict[str, Any]
    ) -> ManifestAnswer:
        """The built manifest, or the build job (queued once per key, whoever asks)."""
        record = await self.records.get_set(key)
        if record is not None and await self.records.set_is_complete(record):
            return ManifestAnswer(key, manifest={**record["manifest"], **extra, "key": key})
        payload = {
            "subject": subject,
            "id": subject_id,
            "channel": channel,
            "key": key,
            "options": options_json(self.options),
        }
        job, _ = await self.services.jobs.submit_unique(BUILD, payload, f"lod.{key}")
        return ManifestAnswer(key, job=job)

    async def build_job(self, payload: dict[str, Any], progress: Any) -> dict[str, Any]:
        """The `lod.build` job: build a twin's or a look's levels and publish them, unless a
        twin they show may no longer be used — checked before publishing and again after (a
        revocation that lands meanwhile withdraws what was published)."""
        options = options_from_json(payload["options"])
        channel = str(payload["channel"])
        access = self.access
        store = self.services.store
        progress("reading", 0.02)
        if payload["subject"] == "twin":
            twin = await access.twin_for_use(str(payload["id"]), channel)
            inputs, owners = twin_inputs(twin), [twin["id"]]
            data = await store.get_blob(inputs["twinBody"])

            def scene() -> LodScene:
                assert data is not None
                return scene_from_twin_body(
                    body_from_npz(data), name=twin["id"], extras=provenance(twin)
                )
        else:
            look = await self.looks.get_for_use(str(payload["id"]), channel)
            twin = await self.services.twin_records.get(look["twin"])
            inputs, owners = look_inputs(look, twin), [twin["id"], look["id"]]
            data = await store.get_blob(inputs["lookGlb"])

            posed = bool(look.get("pose"))

            def scene() -> LodScene:
                assert data is not None
                read = read_glb_scene(data)
                return read.baked() if posed else read

        if data is None:
            raise SpatialTwinError(
                "lod_source_missing",
                "the data the levels are built from is missing",
                {"id": payload["id"], "inputs": inputs},
                status=500,
            )
        key = cache_key(inputs, _key_options(options))
        existing = await self.records.get_set(key)
        if existing is not None and await self.records.set_is_complete(existing):
            return {"key": key, "built": False}
        progress("building levels", 0.05)
        build = await self.services.run(
            lambda: build_lod_for_scene(scene(), options, url_prefix=FILE_PREFIX, inputs=inputs)
        )
        progress("publishing", 0.9)
        await access.check_level_file(owners, channel)
        for name, blob in build.files.items():
            sha, ext = name.split(".")
            got, _ = await store.put_blob(blob)
            assert got == sha, "level file names must be the SHA-256 of their bytes"
            # A file can show several twins (geometry-only fallbacks are shared when only
            # provenance differs): it keeps every owner, and a withdrawal stays withdrawn.
            await self.records.publish_file(sha, ext, owners)
        await self.records.put_set(key, owners, sorted(build.files), build.manifest)
        try:
            await access.check_level_file(owners, channel)
        except SpatialTwinError:
            await self.withdraw(twin["id"])
            raise
        return {"key": key, "built": True, "levels": len(build.manifest["levels"])}

    async def level_file(self, sha: str, ext: str, channel: str | None) -> LevelFile:
        """The file behind `/lod/<sha>.<ext>`, if it is a live level file whose twins may be
        used now (each read asks the access door; a revoked twin's files are gone: 404). A
        USDZ is AR use, whatever `channel` says."""
        record = await self.records.get_file(sha)
        if record is None or record.get("ext") != ext or record.get("withdrawn"):
            raise _file_not_found(sha, ext)
        owners = list(record.get("owners", ()))
        try:
            if ext == "usdz":  # an AR launch, each time
                await self.access.meter("ar", await self.access.check_ar_file(owners))
            else:  # a level download, the first per shopper session and level set
                decisions = await self.access.check_level_file(owners, channel)
                await self.access.meter("level", decisions, once=",".join(sorted(owners)))
        except SpatialTwinError as exc:
            if exc.code in ("license_revoked", "twin_not_found"):
                raise _file_not_found(sha, ext) from exc
            raise
        size = self.services.cache.get(("blob_size", sha))
        if size is None:
            size = await self.services.store.blob_size(sha)
            if size is None:
                raise _file_not_found(sha, ext)
            self.services.cache.put(("blob_size", sha), size, 64)
        return LevelFile(sha, MEDIA_TYPES[ext], size, self.services.store.blob_path(sha))

    async def withdraw(self, twin_id: str) -> int:
        """Withdraw every level file showing the twin; returns how many this call withdrew."""
        return await self.records.withdraw_owner(twin_id)
