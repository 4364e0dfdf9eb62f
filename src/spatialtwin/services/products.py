"""The shop's view of a garment: its sizes and, on every twin licensed for the shop, the look.

`GET /api/v1/products/{sku}` answers the size run of the sku (smallest first) and the twins
usable in the channel asked for (`ecommerce`, or `ar`) — each with its height and tape
measurements, so a shopper can pick "a body like mine", its provenance and its credit — and,
for each selected twin × size, the look: the twin wearing that size, with its level-of-detail
manifest, the AR files (the quantised GLB for Scene Viewer / WebXR and the USDZ for AR Quick
Look, only for a twin licensed for `ar`) and its poster (a studio still at default settings).

A look of a product is made once, by the `product.look` job: drape (the rest pose, as the
look service does), build its levels (the manifest's `lod.build`, run inside the job), render
its poster (`services.stills`), and record `product_looks/<key>`. The key is the SHA-256 of
what the look depends on: the twin's body blob, the garment record's id and content blobs,
the look options and the pipeline's version; so a new upload (a new garment, new blobs) or a
new drape (other options) gives a new look, new level files and new URLs, while the same
inputs find what was made. While a look is built its entry is `"status": "building"` with
the job's link and progress, and the product answers 202 (`Retry-After`); once every
selected look is built, 200.

Which looks are listed (and so built): `?twin=<id>` and `?size=<label>` (each repeatable; by
default all usable twins and all sizes, at most `MAX_LOOKS` combinations); `?looks=none`
lists the sizes and twins alone and builds nothing (what a page asks first).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import NotFoundError, SpatialTwinError
from spatialtwin.garment.sizes import size_sort_key
from spatialtwin.jobs.records import unique_job_id
from spatialtwin.rights.license import now_utc, provenance
from spatialtwin.services.access import AR_CHANNEL
from spatialtwin.services.lod import BUILD, PIPELINE_VERSION
from spatialtwin.services.stills import (
    DEFAULT_SIZE_PX,
    StillRequest,
    parse_still_request,
)
from spatialtwin.services.views import API, job_view, still_url
from spatialtwin.store.twin_repository import body_key

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext
    from spatialtwin.services.garments import GarmentService
    from spatialtwin.services.lod import LodService
    from spatialtwin.services.looks import LookService
    from spatialtwin.services.stills import StillService

PRODUCT_LOOK = "product.look"
KIND = "product_looks"
PRODUCT_VERSION = "product-1"
SHOP_CHANNELS = ("ecommerce", AR_CHANNEL)
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/ ]{0,63}$")  # as garments take it
MAX_LOOKS = 48
MAX_FILTER_VALUES = 16
Progress = Callable[[str, float], None]


def _noop(stage: str, fraction: float) -> None:
    return None


@dataclass(frozen=True)
class ProductOptions:
    """`poster_size_px`: the poster still's size (settings `poster_size_px`)."""

    poster_size_px: tuple[int, int] = DEFAULT_SIZE_PX

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ProductOptions:
        size = settings.get("poster_size_px", DEFAULT_SIZE_PX)
        return cls((int(size[0]), int(size[1])))

    def poster_request(self, channel: str) -> StillRequest:
        """The poster: a still at default settings (rest pose, front, three-point light)."""
        return parse_still_request({"size_px": list(self.poster_size_px), "channel": channel})


@dataclass
class ProductAnswer:
    body: dict[str, Any]
    building: bool = False
    retry_after_s: int = 2
    jobs: list[str] = field(default_factory=list)


def check_sku(sku: Any) -> str:
    """The sku of a product path, checked as garments check it: 400 `invalid_sku`."""
    if not isinstance(sku, str) or not SKU_PATTERN.fullmatch(sku):
        shown = sku[:80] if isinstance(sku, str) else None
        raise SpatialTwinError(
            "invalid_sku",
            "a sku is 1–64 letters, digits or _ . - / space, starting with a letter or digit",
            {"sku": shown, "max_length": 64},
        )
    return sku


def check_channel(channel: Any) -> str:
    if channel not in SHOP_CHANNELS:
        raise SpatialTwinError(
            "invalid_channel",
            "a product is shown in the 'ecommerce' or 'ar' channel",
            {"channel": str(channel)[:40], "allowed": list(SHOP_CHANNELS)},
        )
    return str(channel)


def _filter(values: list[str], name: str) -> list[str]:
    if len(values) > MAX_FILTER_VALUES or any(not 0 < len(v) <= 64 for v in values):
        raise SpatialTwinError(
            "invalid_filter",
            f"'{name}' takes at most {MAX_FILTER_VALUES} values of 1–64 characters",
            {name: [v[:64] for v in values[:MAX_FILTER_VALUES]]},
        )
    return values


def product_look_key(twin: dict[str, Any], garment: dict[str, Any], look_options: Any) -> str:
    """What a product look depends on, hashed: twin body, garment content, look options."""
    blobs = garment.get("blobs") or {}
    inputs = {
        "version": PRODUCT_VERSION,
        "lod": PIPELINE_VERSION,
        "twin": twin["id"],
        "twinBody": body_key(twin),
        "garment": garment["id"],
        "garmentBlobs": {k: blobs[k] for k in sorted(blobs)},
        "fabric": garment.get("fabric"),
        "lookOptions": repr(look_options),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def twin_entry(twin: dict[str, Any]) -> dict[str, Any]:
    """What a shopper compares: height and tape measurements; who the twin is and may be."""
    m = twin.get("measurements") or {}
    return {
        "id": twin["id"],
        "name": twin.get("name"),
        "height_m": m.get("height_m"),
        "measurements_m": {
            k: m[k] for k in ("chest_m", "waist_m", "hips_m", "inseam_m", "shoulder_m") if k in m
        },
        "credit": {"model": twin["owner"]["model"], "agency": twin["owner"]["agency"]},
        "disclosure": twin["disclosure"],
        "provenance": provenance(twin),
        "ar": AR_CHANNEL in twin["license"]["channels"],
        "links": {"self": f"{API}/twins/{twin['id']}"},
    }


def size_entry(garment: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": garment.get("size_label") or "",
        "garment": garment["id"],
        "name": garment.get("name"),
        "links": {"garment": f"{API}/garments/{garment['id']}"},
    }


class ProductService:
    def __init__(
        self,
        services: ServiceContext,
        access: Access,
        garments: GarmentService,
        looks: LookService,
        lod: LodService,
        stills: StillService,
        options: ProductOptions | None = None,
    ) -> None:
        self.services = services
        self.access = access
        self.garments = garments
        self.looks = looks
        self.lod = lod
        self.stills = stills
        self.options = options or ProductOptions()

    async def product(
        self,
        sku: Any,
        channel: Any = "ecommerce",
        twin_ids: list[str] | None = None,
        sizes: list[str] | None = None,
        list_looks: bool = True,
    ) -> ProductAnswer:
        """The product: sizes, usable twins, the selected looks (built or building); with
        `list_looks` false, the sizes and twins alone (nothing is built)."""
        sku = check_sku(sku)
        channel = check_channel(channel)
        twin_ids = _filter(twin_ids or [], "twin")
        sizes = _filter(sizes or [], "size")
        run = await self.garments.size_run(sku)
        if not run:
            raise SpatialTwinError(
                "product_not_found", f"no garment has sku {sku!r}", {"sku": sku}, status=404
            )
        twins = await self.access.twins_for_use(channel)
        twins.sort(key=lambda t: ((t.get("measurements") or {}).get("height_m") or 0, t["id"]))
        if twin_ids:
            chosen = [await self.access.twin_for_use(t, channel) for t in twin_ids]
        else:
            chosen = twins
        labels = [g.get("size_label") or "" for g in run]
        missing = [s for s in sizes if s not in labels]
        if missing:
            raise SpatialTwinError(
                "size_not_in_run",
                f"sku {sku!r} has no size {missing[0]!r}",
                {"sku": sku, "size": missing[0], "sizes": labels},
                status=404,
            )
        worn = [g for g in run if not sizes or (g.get("size_label") or "") in sizes]
        if len(chosen) * len(worn) > MAX_LOOKS:
            raise SpatialTwinError(
                "too_many_looks",
                f"a product lists at most {MAX_LOOKS} looks; choose twins or sizes",
                {"looks": len(chosen) * len(worn), "max": MAX_LOOKS},
                status=422,
            )
        looks, jobs = [], []
        for twin in chosen if list_looks else []:
            for garment in worn:
                entry = await self._look_entry(sku, twin, garment, channel)
                if entry["status"] != "ready" and entry.get("job"):
                    jobs.append(entry["job"]["id"])
                looks.append(entry)
        first = run[0]
        building = any(e["status"] != "ready" for e in looks)
        body = {
            "sku": sku,
            "name": first.get("name"),
            "category": first.get("category"),
            "fabric": first.get("fabric"),
            "channel": channel,
            "status": "building" if building else "ready",
            "sizes": [
                size_entry(g) for g in sorted(run, key=lambda g: size_sort_key(g.get("size_label")))
            ],
            "twins": [twin_entry(t) for t in twins],
            "looks": looks,
            "links": {"self": f"{API}/products/{sku}"},
        }
        return ProductAnswer(body, building, jobs=jobs)

    async def _look_entry(
        self, sku: str, twin: dict[str, Any], garment: dict[str, Any], channel: str
    ) -> dict[str, Any]:
        key = product_look_key(twin, garment, self.services.options.look)
        entry: dict[str, Any] = {
            "twin": twin["id"],
            "size": garment.get("size_label") or "",
            "garment": garment["id"],
            "key": key,
        }
        record = await self.services.store.get_record(KIND, key)
        look = None
        if record is not None:
            look = await self.services.look_records.find(record["look"])
        if record is None or look is None:
            try:
                previous = await self.services.jobs.status(unique_job_id(f"product.{key}"))
            except NotFoundError:
                previous = None
            if previous is not None and previous.get("status") == "failed":
                # Not queued again on every read: the error stands until the inputs change.
                return {**entry, "status": "failed", "error": previous.get("error")}
            payload = {
                "sku": sku,
                "twin": twin["id"],
                "garment": garment["id"],
                "channel": channel,
                "key": key,
            }
            job, _ = await self.services.jobs.submit_unique(PRODUCT_LOOK, payload, f"product.{key}")
            return {**entry, **_building(job)}
        answer = await self.lod.look_manifest(look["id"], channel)
        if answer.manifest is None:  # levels withdrawn or built with other options: again
            assert answer.job is not None
            return {**entry, "look": look["id"], **_building(answer.job)}
        return {**entry, **self._ready(look, twin, answer.manifest, record, channel)}

    def _ready(
        self,
        look: dict[str, Any],
        twin: dict[str, Any],
        manifest: dict[str, Any],
        record: dict[str, Any],
        channel: str,
    ) -> dict[str, Any]:
        look_id = look["id"]
        ar = self.ar_allowed(twin)
        first = manifest["levels"][manifest["firstLevel"]]
        poster = record.get("poster") or {}
        return {
            "status": "ready",
            "look": look_id,
            "bounds_m": manifest["bounds_m"],
            "warnings": look.get("warnings", []),
            "fit": {k: v.get("fit") for k, v in (look.get("stats") or {}).items()},
            "lod": {
                "manifest": f"{API}/looks/{look_id}/lod/manifest.json?channel={channel}",
                "firstLevel": {"url": first["url"], "bytes": first["bytes"]},
                "levels": len(manifest["levels"]),
            },
            "ar": {
                "glb": manifest["ar"]["url"] if ar else None,
                "usdz": manifest["ar"]["usdz"]["url"] if ar else None,
                "glbBytes": manifest["ar"]["bytes"] if ar else None,
                "usdzBytes": manifest["ar"]["usdz"]["bytes"] if ar else None,
            },
            "posters": [poster] if poster else [],
            "credit": {"model": twin["owner"]["model"], "agency": twin["owner"]["agency"]},
            "disclosure": twin["disclosure"],
            "links": {
                "look": f"{API}/looks/{look_id}?channel={channel}",
                "glb": f"{API}/looks/{look_id}/look.glb?channel={channel}",
                "stills": f"{API}/looks/{look_id}/stills",
            },
        }

    def ar_allowed(self, twin: dict[str, Any]) -> bool:
        """Whether the twin may be placed in a room now (its AR files are served)."""
        try:
            self.access.check(twin, AR_CHANNEL)
        except SpatialTwinError:
            return False
        return True

    async def look_job(self, payload: dict[str, Any], progress: Progress = _noop) -> dict[str, Any]:
        """The `product.look` job: drape the size on the twin, build its levels, render its
        poster, record it. Run again after an interruption, it reuses each step's result."""
        key = str(payload["key"])
        channel = check_channel(payload["channel"])
        twin = await self.access.twin_for_use(str(payload["twin"]), channel)
        store = self.services.store
        existing = await store.get_record(KIND, key)
        look_id = existing["look"] if existing else f"look_{key[:12]}"
        look = await self.services.look_records.find(look_id)
        if look is None:
            progress("draping", 0.02)
            request = await self.looks.check_request(
                {"twin": twin["id"], "garments": [str(payload["garment"])], "channel": channel}
            )
            look = await self.looks.create(
                request, lambda s, f: progress(f"draping: {s}", 0.02 + 0.5 * f), look_id
            )
        progress("levels", 0.55)
        answer = await self.lod.look_manifest(look_id, channel)
        if answer.manifest is None:
            assert answer.job is not None
            build = await self.services.jobs.status(answer.job["id"])
            if build.get("kind") == BUILD:
                await self.lod.build_job(
                    build["payload"], lambda s, f: progress(s, 0.55 + 0.25 * f)
                )
        progress("poster", 0.82)
        still = await self.stills.render(
            look_id, self.options.poster_request(channel), lambda s, f: progress(s, 0.82 + 0.16 * f)
        )
        record = {
            "id": key,
            "sku": payload["sku"],
            "twin": twin["id"],
            "garment": payload["garment"],
            "look": look_id,
            "poster": {
                "url": still_url(still["id"], still["format"]),
                "width_px": still["width_px"],
                "height_px": still["height_px"],
                "format": still["format"],
                "bytes": still["bytes"],
            },
            "created_at": now_utc().isoformat(),
        }
        await store.put_record(KIND, key, record)
        return {"key": key, "look": look_id, "poster": record["poster"]}


def _building(job: dict[str, Any]) -> dict[str, Any]:
    view = job_view(job)
    return {
        "status": "building",
        "job": {k: view[k] for k in ("id", "kind", "status", "progress", "stage")},
        "links": {"job": f"{API}/jobs/{job['id']}"},
    }
