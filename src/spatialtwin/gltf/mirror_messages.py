"""The mirror protocol's messages (`docs/mirror-protocol.md`, version 1): what a mirror or a
watcher sends, checked before any work, and the result frames the server sends back.

Outside input is hostile: every client message is checked here for its size, type and fields
before anything is done with it, and a refusal is a `MirrorProtocolError` carrying the
WebSocket close code the doc gives it (4400 bad message, 4406 unsupported version, 1009 too
big). Pure functions over bytes and JSON values; nothing here holds state or does I/O.

Binary layouts (little-endian):

- camera frame `STMF` (client → server): 24-byte header (magic, version, kind, reserved,
  frame_id uint32, capture_t_ms float64, payload_bytes uint32), then the payload: an encoded
  image (kind 1) or 33 image + 33 world landmarks (kind 2, `LANDMARK_PAYLOAD_BYTES`);
- result frame `STMR` (server → client): 40-byte header (magic, version, flags, joint_count,
  frame_id, capture_t_ms, json_bytes, stream_count, reserved, root_m), the joints' local
  rotations, a UTF-8 JSON object, then per garment stream a uint32 length and one vertex-stream
  frame (`gltf.vertex_stream`).

Example:
    frame = read_camera_frame(data)            # raises MirrorProtocolError
    hello = check_hello(parse_text(text))      # the first message of a session
    packet = result_frame(7, 1234.5, True, False, root, quats, {"timings_ms": {}}, [stvs])
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

PROTOCOL_VERSION = 1
FRAME_MAGIC = b"STMF"
RESULT_MAGIC = b"STMR"
FRAME_HEADER = struct.Struct("<4sBBHIdI")
FRAME_HEADER_BYTES = FRAME_HEADER.size  # 24
RESULT_HEADER = struct.Struct("<4sBBHIdIHH3f")
RESULT_HEADER_BYTES = RESULT_HEADER.size  # 40
STREAM_LENGTH = struct.Struct("<I")

KIND_IMAGE = 1
KIND_LANDMARKS = 2
FLAG_TRACKED = 1
FLAG_RATE_LIMITED = 2

LANDMARKS = 33
LANDMARK_SIZE = struct.Struct("<II")
LANDMARK_PAYLOAD_BYTES = LANDMARK_SIZE.size + LANDMARKS * 5 * 4 + LANDMARKS * 4 * 4  # 1196

MAX_FRAME_BYTES = 4 * 1024 * 1024  # an encoded camera frame (= live.frames.MAX_FRAME_BYTES)
MAX_TEXT_BYTES = 64 * 1024
MAX_FRAME_ID = 0xFFFFFFFF
MAX_GARMENTS = 4
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 125 bytes with its code

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_BAD_MESSAGE = 4400
CLOSE_UNAUTHORISED = 4401
CLOSE_LICENSE = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_VERSION = 4406
CLOSE_TIMEOUT = 4408
CLOSE_ATTACHED = 4409
CLOSE_TOO_MANY = 4429
CLOSE_NOT_READING = 4460

INPUTS = ("frames", "landmarks")
MODELS = ("full", "lite", "heavy")
HELLO_FIELDS = (
    "type",
    "version",
    "token",
    "look",
    "garments",
    "twin",
    "height_m",
    "input",
    "model",
    "camera",
    "resume",
)
CLIENT_TYPES = ("switch", "key_frame", "share", "ping", "bye")
WATCHER_TYPES = ("ping", "bye")
MIN_HEIGHT_M, MAX_HEIGHT_M = 1.0, 2.3
MAX_TILT_DEG = 45.0
MAX_ID_CHARS = 128
MAX_T_MS = 1e15  # a client clock in ms: 31,000 years

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class MirrorProtocolError(SpatialTwinError):
    """A refused client message: `close_code` is how the session ends (`docs/mirror-protocol.md`
    §5); `code`, `message` and `detail` go into the `error` message sent before the close."""

    def __init__(
        self, close_code: int, code: str, message: str, detail: Any = None, *, status: int = 400
    ) -> None:
        super().__init__(code, message, detail, status=status)
        self.close_code = close_code

    @property
    def close_reason(self) -> str:
        """The close frame's reason: the error code, and the field when one is named."""
        field = self.detail.get("field") if isinstance(self.detail, dict) else None
        return close_reason(f"{self.code}: {field}" if field else self.code)


def close_reason(text: str) -> str:
    """`text` cut to what a close frame holds (123 UTF-8 bytes, whole characters)."""
    data = text.encode("utf-8")[:MAX_CLOSE_REASON_BYTES]
    return data.decode("utf-8", errors="ignore")


def _bad(code: str, message: str, detail: Any = None) -> MirrorProtocolError:
    return MirrorProtocolError(CLOSE_BAD_MESSAGE, code, message, detail)


# --- camera frames (STMF) ---------------------------------------------------------------------


@dataclass(frozen=True)
class CameraFrame:
    """A checked `STMF` frame: the payload is still the client's bytes (a view, not a copy)."""

    kind: int
    frame_id: int
    capture_t_ms: float
    payload: memoryview


def camera_frame(kind: int, frame_id: int, capture_t_ms: float, payload: bytes) -> bytes:
    """An `STMF` frame (what a mirror sends; used by clients and tests)."""
    header = FRAME_HEADER.pack(
        FRAME_MAGIC, PROTOCOL_VERSION, kind, 0, frame_id, capture_t_ms, len(payload)
    )
    return header + bytes(payload)


def read_camera_frame(data: bytes | bytearray | memoryview, max_frame_bytes: int) -> CameraFrame:
    """The header of a client's binary message checked against its bytes; raises
    `MirrorProtocolError` (4400, or 4406 for another protocol version) before any payload
    byte is looked at."""
    view = memoryview(data)
    if len(view) < FRAME_HEADER_BYTES:
        raise _bad(
            "bad_frame_header",
            "a binary message starts with a 24-byte STMF header",
            {"bytes": len(view)},
        )
    magic, version, kind, reserved, frame_id, t_ms, size = FRAME_HEADER.unpack_from(view)
    if magic != FRAME_MAGIC:
        raise _bad(
            "bad_frame_header",
            "a binary message must start with STMF",
            {"magic": bytes(magic).hex()},
        )
    if version != PROTOCOL_VERSION:
        raise MirrorProtocolError(
            CLOSE_VERSION,
            "unsupported_version",
            "this server speaks STMF version 1",
            {"version": version, "supported": [PROTOCOL_VERSION]},
        )
    if kind not in (KIND_IMAGE, KIND_LANDMARKS) or reserved != 0:
        raise _bad(
            "bad_frame_header",
            "STMF kind must be 1 (image) or 2 (landmarks), reserved 0",
            {"kind": kind, "reserved": reserved},
        )
    if size != len(view) - FRAME_HEADER_BYTES:
        raise _bad(
            "bad_frame_header",
            "payload_bytes does not match the bytes that follow",
            {"payload_bytes": size, "present": len(view) - FRAME_HEADER_BYTES},
        )
    if size > max_frame_bytes:
        raise MirrorProtocolError(
            CLOSE_TOO_BIG,
            "frame_too_large",
            f"a frame holds at most {max_frame_bytes} bytes",
            {"payload_bytes": size, "limit": max_frame_bytes},
            status=413,
        )
    if not math.isfinite(t_ms):
        raise _bad("bad_frame_header", "capture_t_ms must be finite")
    if kind == KIND_LANDMARKS and size != LANDMARK_PAYLOAD_BYTES:
        raise _bad(
            "bad_frame_header",
            f"a landmark frame's payload is {LANDMARK_PAYLOAD_BYTES} bytes",
            {"payload_bytes": size},
        )
    return CameraFrame(kind, frame_id, t_ms, view[FRAME_HEADER_BYTES:])


@dataclass(frozen=True)
class LandmarkPayload:
    """A kind-2 payload: the image size (pixels) and MediaPipe's two landmark sets."""

    size_px: tuple[int, int]
    image: NDArray[np.float32]  # (33, 5): x, y normalised, z, visibility, presence
    world: NDArray[np.float32]  # (33, 4): x, y, z metres (MediaPipe's axes), visibility


def landmark_payload(
    size_px: tuple[int, int], image: NDArray[np.floating], world: NDArray[np.floating]
) -> bytes:
    """The kind-2 payload for landmarks (33, 5) and (33, 4) (clients and tests)."""
    img = np.asarray(image, dtype="<f4").reshape(LANDMARKS, 5)
    wld = np.asarray(world, dtype="<f4").reshape(LANDMARKS, 4)
    return LANDMARK_SIZE.pack(int(size_px[0]), int(size_px[1])) + img.tobytes() + wld.tobytes()


def read_landmark_payload(payload: bytes | memoryview) -> LandmarkPayload:
    """The arrays of a kind-2 payload (its length is checked by `read_camera_frame`; the values
    — finite, in range — by `live.frames.check_landmarks`)."""
    view = memoryview(payload)
    if len(view) != LANDMARK_PAYLOAD_BYTES:
        raise _bad(
            "bad_frame_header",
            f"a landmark payload is {LANDMARK_PAYLOAD_BYTES} bytes",
            {"bytes": len(view)},
        )
    w, h = LANDMARK_SIZE.unpack_from(view)
    floats = np.frombuffer(view, dtype="<f4", offset=LANDMARK_SIZE.size)
    image = floats[: LANDMARKS * 5].reshape(LANDMARKS, 5).astype(np.float32)
    world = floats[LANDMARKS * 5 :].reshape(LANDMARKS, 4).astype(np.float32)
    return LandmarkPayload((int(w), int(h)), image, world)


# --- result frames (STMR) ---------------------------------------------------------------------


def result_frame(
    frame_id: int,
    capture_t_ms: float,
    tracked: bool,
    rate_limited: bool,
    root_m: NDArray[np.floating],
    rotations: NDArray[np.floating],
    info: dict[str, Any] | bytes,
    streams: list[bytes],
) -> bytes:
    """One `STMR` frame: the pose (root translation, (J, 4) local rotations in the welcome's
    joint order), `info` as JSON (or JSON bytes already made, when one result goes to several
    receivers), and the garments' vertex-stream frames in stream order."""
    quats = np.ascontiguousarray(rotations, dtype="<f4")
    if quats.ndim != 2 or quats.shape[1] != 4 or len(quats) > 0xFFFF:
        raise ValueError("rotations must be (J, 4) with J < 65536")
    root = np.asarray(root_m, dtype=np.float64).reshape(3)
    text = info if isinstance(info, bytes) else info_json(info)
    flags = (FLAG_TRACKED if tracked else 0) | (FLAG_RATE_LIMITED if rate_limited else 0)
    header = RESULT_HEADER.pack(
        RESULT_MAGIC,
        PROTOCOL_VERSION,
        flags,
        len(quats),
        int(frame_id) & MAX_FRAME_ID,
        float(capture_t_ms),
        len(text),
        len(streams),
        0,
        *(float(c) for c in root),
    )
    parts = [header, quats.tobytes(), text]
    for stream in streams:
        parts += [STREAM_LENGTH.pack(len(stream)), stream]
    return b"".join(parts)


def info_json(info: dict[str, Any]) -> bytes:
    """A result's JSON part: compact, strict (a non-finite number is a bug, not a token)."""
    return json.dumps(info, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class ResultFrame:
    """A decoded `STMR` frame (what a client reads; used by tests and Python clients)."""

    frame_id: int
    capture_t_ms: float
    tracked: bool
    rate_limited: bool
    root_m: NDArray[np.float32]  # (3,)
    rotations: NDArray[np.float32]  # (J, 4)
    info: dict[str, Any]
    streams: list[bytes]


def read_result_frame(data: bytes | bytearray | memoryview) -> ResultFrame:
    """Decode an `STMR` frame, every length checked against the bytes present."""
    view = memoryview(data)
    if len(view) < RESULT_HEADER_BYTES:
        raise SpatialTwinError(
            "bad_result_frame", "shorter than the STMR header", {"bytes": len(view)}
        )
    (magic, version, flags, joints, frame_id, t_ms, json_bytes, stream_count, _, *root) = (
        RESULT_HEADER.unpack_from(view)
    )
    if magic != RESULT_MAGIC or version != PROTOCOL_VERSION:
        raise SpatialTwinError(
            "bad_result_frame",
            "not an STMR version 1 frame",
            {"magic": bytes(magic).hex(), "version": version},
        )
    at = RESULT_HEADER_BYTES
    end = at + 16 * joints
    if end + json_bytes > len(view):
        raise SpatialTwinError("bad_result_frame", "rotations and JSON run past the frame")
    rotations = np.frombuffer(view[at:end], dtype="<f4").reshape(joints, 4).copy()
    try:
        info = json.loads(bytes(view[end : end + json_bytes]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        raise SpatialTwinError("bad_result_frame", "the JSON part is not one JSON object")
    at = end + json_bytes
    streams = []
    for _ in range(stream_count):
        if at + 4 > len(view):
            raise SpatialTwinError("bad_result_frame", "stream length runs past the frame")
        (length,) = STREAM_LENGTH.unpack_from(view, at)
        at += 4
        if at + length > len(view):
            raise SpatialTwinError("bad_result_frame", "stream runs past the frame")
        streams.append(bytes(view[at : at + length]))
        at += length
    if at != len(view):
        raise SpatialTwinError(
            "bad_result_frame", "bytes left after the last stream", {"left": len(view) - at}
        )
    return ResultFrame(
        frame_id,
        t_ms,
        bool(flags & FLAG_TRACKED),
        bool(flags & FLAG_RATE_LIMITED),
        np.array(root, dtype=np.float32),
        rotations,
        info,
        streams,
    )


def is_key_stream(frame: bytes) -> bool:
    """True for a vertex-stream key frame (`STVS` kind byte 0): a receiver can start on it."""
    return len(frame) > 5 and frame[5] == 0


# --- text messages ----------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_text(data: bytes | str, max_text_bytes: int = MAX_TEXT_BYTES) -> dict[str, Any]:
    """A client's text message as a JSON object with a string `type`: at most
    `max_text_bytes` (1009 beyond), UTF-8, strict JSON (no NaN/Infinity), else 4400."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_text_bytes:
        raise MirrorProtocolError(
            CLOSE_TOO_BIG,
            "message_too_large",
            f"a text message holds at most {max_text_bytes} bytes",
            {"bytes": len(raw), "limit": max_text_bytes},
            status=413,
        )
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad("bad_json", "a text message must be one strict JSON object") from exc
    if not isinstance(value, dict):
        raise _bad("bad_message", "a text message must be a JSON object")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise _bad("bad_message", "a message needs a string 'type'", {"field": "type"})
    return value


def _unknown(message: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(message) - set(allowed))
    if extra:
        raise _bad(
            "unknown_field",
            f"unknown field {extra[0]!r} in {message['type']!r}",
            {"field": extra[0], "allowed": list(allowed)},
        )


def _string(value: Any, field: str, pattern: re.Pattern[str] = _ID) -> str:
    if not isinstance(value, str) or not pattern.match(value) or ".." in value:
        raise _bad(
            "bad_field",
            f"{field} must be an id (1–{MAX_ID_CHARS} of A-Za-z0-9_.-)",
            {"field": field},
        )
    return value


def _number(value: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad("bad_field", f"{field} must be a number", {"field": field})
    number = float(value)
    if not (math.isfinite(number) and lo <= number <= hi):
        raise _bad("bad_field", f"{field} must lie in {lo}..{hi}", {"field": field})
    return number


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices or not isinstance(value, str):
        raise _bad(
            "bad_field",
            f"{field} must be one of {list(choices)}",
            {"field": field, "allowed": list(choices)},
        )
    return value


@dataclass(frozen=True)
class WearSpec:
    """What to wear: a look, or garment ids on a twin (an id, or the closest by height)."""

    look: str | None = None
    garments: tuple[str, ...] = ()
    twin: str | None = None  # a twin id, "closest", or None (with a look)
    height_m: float | None = None


def _wear(message: dict[str, Any], allow_twin: bool, required: bool) -> WearSpec | None:
    has_look, has_garments = "look" in message, "garments" in message
    if has_look and has_garments:
        raise _bad("bad_field", "name a look or garments, not both", {"field": "garments"})
    if not has_look and not has_garments:
        if required:
            raise _bad("missing_field", "a session wears a look or garments", {"field": "look"})
        for name in ("twin", "height_m"):
            if name in message:
                raise _bad("bad_field", f"{name} goes with garments", {"field": name})
        return None
    if has_look:
        for name in ("twin", "height_m"):
            if name in message:
                raise _bad("bad_field", f"{name} goes with garments, not a look", {"field": name})
        return WearSpec(look=_string(message["look"], "look"))
    garments = message["garments"]
    if not isinstance(garments, list) or not 1 <= len(garments) <= MAX_GARMENTS:
        raise _bad(
            "bad_field",
            f"garments must be a list of 1–{MAX_GARMENTS} garment ids",
            {"field": "garments"},
        )
    ids = tuple(_string(g, "garments") for g in garments)
    if len(set(ids)) != len(ids):
        raise _bad("bad_field", "garments must differ", {"field": "garments"})
    if not allow_twin:
        for name in ("twin", "height_m"):
            if name in message:
                raise _bad(
                    "bad_field", f"a switch keeps the session's twin ({name})", {"field": name}
                )
        return WearSpec(garments=ids)
    twin = message.get("twin")
    if twin is None:
        raise _bad(
            "missing_field", 'garments need "twin": a twin id or "closest"', {"field": "twin"}
        )
    twin = _string(twin, "twin")
    height = message.get("height_m")
    if twin == "closest":
        if height is None:
            raise _bad("missing_field", 'twin "closest" needs height_m', {"field": "height_m"})
        height = _number(height, "height_m", MIN_HEIGHT_M, MAX_HEIGHT_M)
    elif height is not None:
        raise _bad("bad_field", 'height_m goes with twin "closest"', {"field": "height_m"})
    return WearSpec(garments=ids, twin=twin, height_m=height)


@dataclass(frozen=True)
class Hello:
    """A checked `hello`: a new session (`wear` set) or a resumed one (`resume` set)."""

    token: str
    wear: WearSpec | None
    input: str = "frames"
    model: str = "full"
    camera_deg: tuple[float, float] | None = None  # (pitch, roll)
    resume: tuple[str, str] | None = None  # (session id, resume key)


def check_hello(message: dict[str, Any]) -> Hello:
    """The first message of a session, every field checked; the version first (a client of
    another version gets 4406 whatever else it sends), then unknown fields (4400)."""
    if message.get("type") != "hello":
        raise _bad("expected_hello", "the first message must be a hello", {"field": "type"})
    version = message.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad("bad_field", "version must be an integer", {"field": "version"})
    if version != PROTOCOL_VERSION:
        raise MirrorProtocolError(
            CLOSE_VERSION,
            "unsupported_version",
            "this server speaks mirror protocol version 1",
            {"version": version, "supported": [PROTOCOL_VERSION]},
        )
    _unknown(message, HELLO_FIELDS)
    token = message.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= 256:
        raise _bad("bad_field", "token must be the mirror's device token", {"field": "token"})
    resume = None
    if "resume" in message:
        raw = message["resume"]
        if not isinstance(raw, dict) or set(raw) != {"session", "key"}:
            raise _bad(
                "bad_field", 'resume is {"session": id, "key": resume key}', {"field": "resume"}
            )
        resume = (
            _string(raw["session"], "resume.session"),
            _string(raw["key"], "resume.key", _KEY),
        )
    wear = _wear(message, allow_twin=True, required=resume is None)
    camera = None
    if "camera" in message:
        raw = message["camera"]
        if not isinstance(raw, dict) or set(raw) != {"pitch_deg", "roll_deg"}:
            raise _bad(
                "bad_field", 'camera is {"pitch_deg": n, "roll_deg": n}', {"field": "camera"}
            )
        camera = (
            _number(raw["pitch_deg"], "camera.pitch_deg", -MAX_TILT_DEG, MAX_TILT_DEG),
            _number(raw["roll_deg"], "camera.roll_deg", -MAX_TILT_DEG, MAX_TILT_DEG),
        )
    return Hello(
        token=token,
        wear=wear,
        input=_choice(message.get("input", "frames"), "input", INPUTS),
        model=_choice(message.get("model", "full"), "model", MODELS),
        camera_deg=camera,
        resume=resume,
    )


@dataclass(frozen=True)
class ClientMessage:
    """A checked control message after the hello: its type and what it carries."""

    type: str
    wear: WearSpec | None = None  # switch
    t_ms: float | None = None  # ping


def check_client_message(message: dict[str, Any], watcher: bool = False) -> ClientMessage:
    """A mirror's control message (`switch`, `key_frame`, `share`, `ping`, `bye`), or a
    watcher's (`ping`, `bye` only); anything else is 4400."""
    kind = message["type"]
    allowed = WATCHER_TYPES if watcher else CLIENT_TYPES
    if kind not in allowed:
        raise _bad(
            "unknown_type",
            f"a {'watcher' if watcher else 'mirror'} sends {', '.join(allowed)}",
            {"field": "type", "allowed": list(allowed)},
        )
    if kind == "switch":
        _unknown(message, ("type", "look", "garments"))
        return ClientMessage(kind, wear=_wear(message, allow_twin=False, required=True))
    if kind == "ping":
        _unknown(message, ("type", "t_ms"))
        return ClientMessage(kind, t_ms=_number(message.get("t_ms"), "t_ms", -MAX_T_MS, MAX_T_MS))
    _unknown(message, ("type",))
    return ClientMessage(kind)
