"""Studio stills of a look: posed, framed and lit like a shoot, identical every time.

`POST /api/v1/looks/{id}/stills` is checked in full here (`parse_still_request`), then answered
from the store when a still of exactly these inputs exists (the cache hit), or with the
`still.render` job that makes it. A still's key is the SHA-256 of everything its bytes depend
on: the checked request with every default filled in, the look GLB it shows (its blob key), the
twin's provenance (the disclosure is in the file), and the renderer's version; so the same
request gives the same URL and byte-identical file, and a new drape a new one.

A pose other than the look's own is a look of its own: the same twin and garments draped in
that pose (`LookService.create`, under an id derived from the look and the pose, so it is
draped once), then drawn. Named poses are `body.studio_poses` (standing = the rest pose a
product look is draped in, walking, hand on hip, three-quarter turn).

Rendering is `services.still_render` (three.js on the shared stage in headless Chromium);
the file is written by `gltf.still_image` with the disclosure in its XMP (IPTC
DigitalSourceType `algorithmicMedia`) and, when asked, a visible label. Stills are stored as
records `stills/<key>` naming their blob; every read passes the access door for the look's
twin, so a revoked twin's stills are no longer served.

Request fields (all optional):

| field | default | bounds |
|---|---|---|
| `pose` | the look's own pose | a name of `NAMED_POSES`, or a pose JSON |
| `camera.focal_length_mm` | 70 | 12–300 |
| `camera.framing` | `full` | `full`, `knees`, `waist` |
| `camera.direction` | `[0, 0.08, 1]` (front) | 3 numbers, not all 0 |
| `camera.position_m` | from framing | 3 numbers within 20 m |
| `lights.key/fill/rim` | `DEFAULT_LIGHTS` | direction, intensity 0–20, 1500–15000 K |
| `environment_intensity` | 0.35 | 0–2 |
| `background` | `#f4f2ef` | `#rrggbb` |
| `size_px` | `[1024, 1536]` | each side 64–2048, at most 4.2 megapixels |
| `format` | `png` | `png`, `webp` |
| `label` | false | a visible "digital twin" label in the image |
| `channel` | the look's | a channel of the twin's license |
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spatialtwin.body.studio_poses import NAMED_POSES, named_pose
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.still_image import FORMATS, StillMetadata, encode_still
from spatialtwin.rights.license import now_utc, provenance
from spatialtwin.services.looks import parse_pose
from spatialtwin.services.still_render import StillPage, StillRenderOptions, render_still
from spatialtwin.services.views import still_view

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext
    from spatialtwin.services.looks import LookService

RENDER = "still.render"
RENDERER_VERSION = "still-1"  # bump when the page, the lights or the encoder change pixels
KIND = "stills"
FIELDS = (
    "pose",
    "camera",
    "lights",
    "environment_intensity",
    "background",
    "size_px",
    "format",
    "label",
    "channel",
)
FRAMINGS = ("full", "knees", "waist")
LIGHT_NAMES = ("key", "fill", "rim")
MAX_SIDE_PX, MIN_SIDE_PX, MAX_PIXELS = 2048, 64, 2048 * 2048
DEFAULT_SIZE_PX = (1024, 1536)
DEFAULT_LIGHTS: dict[str, dict[str, Any]] = {
    # A classic three-point set: a warm key high at the front right, a cool soft fill from the
    # front left, a neutral rim from behind on the left to separate the figure from the ground.
    "key": {"direction": [1.2, 1.6, 1.5], "intensity": 2.2, "temperature_k": 5000},
    "fill": {"direction": [-1.5, 0.6, 1.2], "intensity": 0.6, "temperature_k": 7000},
    "rim": {"direction": [-0.6, 1.2, -1.5], "intensity": 1.2, "temperature_k": 6500},
}
DEFAULT_CAMERA = {"focal_length_mm": 70.0, "framing": "full", "direction": [0.0, 0.08, 1.0]}
LABEL = "Digital twin · not a photograph"
Progress = Callable[[str, float], None]


def _noop(stage: str, fraction: float) -> None:
    return None


def _invalid(message: str, detail: dict[str, Any]) -> SpatialTwinError:
    return SpatialTwinError("invalid_still", message, detail, status=422)


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"{name} must be a number", {"field": name})
    if not lo <= float(value) <= hi:
        raise _invalid(f"{name} must be within {lo}–{hi}", {"field": name, "value": value})
    return round(float(value), 6)


def _vector(value: Any, name: str, limit: float, nonzero: bool = False) -> list[float]:
    if not isinstance(value, list) or len(value) != 3:
        raise _invalid(f"{name} must be three numbers", {"field": name})
    out = [_number(v, name, -limit, limit) for v in value]
    if nonzero and math.hypot(*out) < 1e-6:
        raise _invalid(f"{name} must not be zero", {"field": name})
    return out


def _object(value: Any, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{name} must be a JSON object", {"field": name})
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _invalid(f"unknown fields {unknown} in {name}", {"allowed": list(allowed)})
    return value


def kelvin_to_srgb_hex(temperature_k: float) -> str:
    """The sRGB colour of a black body at `temperature_k` (1000–40000 K), normalised to its
    brightest channel: Tanner Helland's fit to Mitchell Charity's blackbody table."""
    t = min(max(temperature_k, 1000.0), 40000.0) / 100.0
    red = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    green = (
        99.4708025861 * math.log(t) - 161.1195681661
        if t <= 66
        else 288.1221695283 * (t - 60) ** -0.0755148492
    )
    blue = (
        255.0 if t >= 66 else 0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307
    )
    rgb = [min(max(round(c), 0), 255) for c in (red, green, blue)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


@dataclass(frozen=True)
class StillRequest:
    """A checked still request: every default filled in (`as_json`, what the key hashes and
    the job is given), the pose as JSON (None: the look's own), and the page's spec."""

    as_json: dict[str, Any]
    pose_json: dict[str, Any] | None
    channel: str | None

    @property
    def width_px(self) -> int:
        return int(self.as_json["size_px"][0])

    @property
    def height_px(self) -> int:
        return int(self.as_json["size_px"][1])

    @property
    def format(self) -> str:
        return str(self.as_json["format"])

    def page_spec(self, glb_path: str) -> dict[str, Any]:
        """What the still page (web_client/still.js) draws from."""
        r = self.as_json
        camera = r["camera"]
        return {
            "widthPx": self.width_px,
            "heightPx": self.height_px,
            "background": r["background"],
            "environmentIntensity": r["environment_intensity"],
            "floorShadowOpacity": 0.2,
            "glb": glb_path,
            "camera": {
                "focalLengthMm": camera["focal_length_mm"],
                "framing": camera["framing"],
                "direction": camera["direction"],
                "positionM": camera.get("position_m"),
            },
            "lights": {
                name: {
                    "direction": light["direction"],
                    "intensity": light["intensity"],
                    "colour": kelvin_to_srgb_hex(light["temperature_k"]),
                }
                for name, light in r["lights"].items()
            },
            "label": LABEL if r["label"] else None,
        }


def parse_still_request(payload: Any) -> StillRequest:
    """Check a still request (types, ranges, sizes) before any work; raises 422."""
    if payload is None:
        payload = {}
    body = _object(payload, "the request", FIELDS)
    pose_raw = body.get("pose")
    pose_json: dict[str, Any] | None
    if pose_raw is None:
        pose_json, pose_field = None, None
    elif isinstance(pose_raw, str):
        if pose_raw not in NAMED_POSES:
            raise _invalid(
                f"unknown pose {pose_raw[:40]!r}",
                {"pose": pose_raw[:40], "named": list(NAMED_POSES)},
            )
        pose_json, pose_field = named_pose(pose_raw).to_json(), pose_raw
    else:
        pose = parse_pose(pose_raw)
        assert pose is not None
        pose_json = pose.to_json()
        pose_field = pose_json
    cam = _object(
        body.get("camera"), "camera", ("focal_length_mm", "framing", "direction", "position_m")
    )
    framing = cam.get("framing", DEFAULT_CAMERA["framing"])
    if framing not in FRAMINGS:
        raise _invalid(
            "camera.framing must be one of " + ", ".join(FRAMINGS), {"framing": str(framing)[:40]}
        )
    camera: dict[str, Any] = {
        "focal_length_mm": _number(
            cam.get("focal_length_mm", DEFAULT_CAMERA["focal_length_mm"]),
            "camera.focal_length_mm",
            12,
            300,
        ),
        "framing": framing,
        "direction": _vector(
            cam.get("direction", DEFAULT_CAMERA["direction"]), "camera.direction", 100, True
        ),
    }
    if cam.get("position_m") is not None:
        camera["position_m"] = _vector(cam["position_m"], "camera.position_m", 20)
    lights_in = _object(body.get("lights"), "lights", LIGHT_NAMES)
    lights = {}
    for name in LIGHT_NAMES:
        given = _object(
            lights_in.get(name), f"lights.{name}", ("direction", "intensity", "temperature_k")
        )
        default = DEFAULT_LIGHTS[name]
        lights[name] = {
            "direction": _vector(
                given.get("direction", default["direction"]), f"lights.{name}.direction", 100, True
            ),
            "intensity": _number(
                given.get("intensity", default["intensity"]), f"lights.{name}.intensity", 0, 20
            ),
            "temperature_k": _number(
                given.get("temperature_k", default["temperature_k"]),
                f"lights.{name}.temperature_k",
                1500,
                15000,
            ),
        }
    background = body.get("background", "#f4f2ef")
    if not isinstance(background, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", background):
        raise _invalid("background must be a colour '#rrggbb'", {"field": "background"})
    size = body.get("size_px", list(DEFAULT_SIZE_PX))
    if (
        not isinstance(size, list)
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in size)
    ):
        raise _invalid("size_px must be [width, height], whole pixels", {"field": "size_px"})
    if not all(MIN_SIDE_PX <= s <= MAX_SIDE_PX for s in size) or size[0] * size[1] > MAX_PIXELS:
        raise _invalid(
            f"size_px sides must be {MIN_SIDE_PX}–{MAX_SIDE_PX} px, at most {MAX_PIXELS} pixels",
            {"size_px": size},
        )
    fmt = body.get("format", "png")
    if fmt not in FORMATS:
        raise _invalid("format must be png or webp", {"format": str(fmt)[:20]})
    label = body.get("label", False)
    if not isinstance(label, bool):
        raise _invalid("label must be true or false", {"field": "label"})
    channel = body.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise SpatialTwinError("invalid_request", "'channel' must be a string", status=422)
    as_json = {
        "pose": pose_field,
        "camera": camera,
        "lights": lights,
        "environment_intensity": _number(
            body.get("environment_intensity", 0.35), "environment_intensity", 0, 2
        ),
        "background": background.lower(),
        "size_px": [int(size[0]), int(size[1])],
        "format": fmt,
        "label": label,
    }
    return StillRequest(as_json, pose_json, channel)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class StillAnswer:
    """A still request's answer: the stored still (a cache hit) or the job making it."""

    key: str
    still: dict[str, Any] | None = None
    job: dict[str, Any] | None = None


class StillService:
    def __init__(
        self,
        services: ServiceContext,
        access: Access,
        looks: LookService,
        render_options: StillRenderOptions | None = None,
    ) -> None:
        self.services = services
        self.access = access
        self.looks = looks
        self.render_options = render_options or StillRenderOptions()

    async def _key(self, look: dict[str, Any], request: StillRequest) -> str:
        twin = await self.services.twin_records.get(look["twin"])
        inputs = {
            "renderer": RENDERER_VERSION,
            "look": look["id"],
            "lookGlb": look["blobs"]["glb"],
            "lookPose": look.get("pose"),
            "pose": request.pose_json,
            "provenance": provenance(twin),
            "request": request.as_json,
        }
        return _sha(_canonical(inputs))

    async def request(self, look_id: str, payload: Any) -> StillAnswer:
        """A checked still request: the still if made, else its (unique) render job."""
        request = parse_still_request(payload)
        look = await self.looks.get_for_use(look_id, request.channel)
        key = await self._key(look, request)
        record = await self.services.store.get_record(KIND, key)
        if record is not None:
            return StillAnswer(key, still=still_view(record))
        payload_json = {
            "look": look["id"],
            "request": request.as_json,
            "channel": request.channel or look["channel"],
            "key": key,
        }
        job, _ = await self.services.jobs.submit_unique(RENDER, payload_json, f"still.{key}")
        return StillAnswer(key, job=job)

    async def render_job(
        self, payload: dict[str, Any], progress: Progress = _noop
    ) -> dict[str, Any]:
        """The `still.render` job: check the look's twin again, drape the pose if it is new,
        draw, store; the still as the API shows it. Run again, it finds its still and ends."""
        request = parse_still_request({**payload["request"], "channel": payload["channel"]})
        record = await self.render(str(payload["look"]), request, progress)
        return still_view(record)

    async def render(
        self, look_id: str, request: StillRequest, progress: Progress = _noop
    ) -> dict[str, Any]:
        """Make (or find) the still of `request` of the look; returns its record."""
        channel = request.channel
        look = await self.looks.get_for_use(look_id, channel)
        key = await self._key(look, request)
        store = self.services.store
        existing = await store.get_record(KIND, key)
        if existing is not None:
            return existing
        shown = await self._shown_look(look, request, progress)
        twin = await self.access.twin_for_use(look["twin"], channel or look["channel"])
        progress("rendering", 0.7)
        glb = await self.looks.glb(shown["id"], channel)
        started = time.perf_counter()
        drawn = await render_still(
            StillPage({"/look.glb": glb}, request.page_spec("/look.glb")),
            request.width_px,
            request.height_px,
            self.render_options,
        )
        render_ms = (time.perf_counter() - started) * 1000
        progress("encoding", 0.95)
        metadata = StillMetadata(
            disclosure=str(twin["disclosure"]),
            model=str(twin["owner"]["model"]),
            agency=str(twin["owner"]["agency"]),
            ids={
                "twinId": twin["id"],
                "lookId": shown["id"],
                "licenseId": str(twin["license"]["id"]),
                "stillKey": key,
            },
        )
        data = await self.services.run(lambda: encode_still(drawn.rgb, request.format, metadata))
        blob, _ = await store.put_blob(data)
        record = {
            "id": key,
            "look": look["id"],
            "shown_look": shown["id"],
            "twin": twin["id"],
            "blob": blob,
            "format": request.format,
            "media_type": FORMATS[request.format],
            "bytes": len(data),
            "width_px": request.width_px,
            "height_px": request.height_px,
            "request": request.as_json,
            "disclosure": twin["disclosure"],
            "render_ms": round(render_ms, 1),
            "page_ms": drawn.timings_ms,
            "renderer": RENDERER_VERSION,
            "created_at": now_utc().isoformat(),
        }
        await store.put_record(KIND, key, record)
        return record

    async def _shown_look(
        self, look: dict[str, Any], request: StillRequest, progress: Progress
    ) -> dict[str, Any]:
        """The look itself when the still keeps its pose, else the same twin and garments
        draped in the still's pose (made once: its id derives from the look and the pose)."""
        if request.pose_json is None or request.pose_json == look.get("pose"):
            return look
        posed_id = "look_" + _sha(_canonical([look["id"], request.pose_json]))[:12]
        found = await self.services.look_records.find(posed_id)
        if found is not None:
            return found
        progress("draping the pose", 0.1)
        checked = await self.looks.check_request(
            {
                "twin": look["twin"],
                "garments": list(look["garments"]),
                "pose": request.pose_json,
                "channel": request.channel or look["channel"],
                "layer_order": look.get("layer_order", "category"),
            }
        )
        return await self.looks.create(checked, lambda s, f: progress(s, 0.1 + 0.6 * f), posed_id)

    async def get(self, key: str, channel: str | None = None) -> dict[str, Any]:
        """A still's record, while its twin may be used (404 unknown, 403/410 refused)."""
        record = await self.services.store.get_record(KIND, key)
        if record is None:
            raise SpatialTwinError(
                "still_not_found", "no still with this key", {"id": key}, status=404
            )
        await self.looks.get_for_use(record["look"], channel)
        return record

    async def file(self, key: str, fmt: str, channel: str | None = None) -> tuple[bytes, str]:
        """A still's bytes and media type, through the access door on every read."""
        record = await self.get(key, channel)
        if record["format"] != fmt:
            raise SpatialTwinError(
                "still_not_found",
                "no still with this key and format",
                {"id": key, "format": fmt},
                status=404,
            )
        data = await self.services.store.get_blob(record["blob"])
        if data is None:
            raise SpatialTwinError(
                "still_missing", "the still's file is missing", {"id": key}, status=500
            )
        await self.access.meter_look("still", record["look"], channel)  # before it is sent
        return data, str(record["media_type"])
