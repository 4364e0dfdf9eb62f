"""Checks on outside input at the HTTP edge: strict, bounded JSON and the shapes handlers read.

Outside input is hostile. JSON is parsed so that what reaches a handler can be stored and
served back as JSON: `NaN`/`Infinity` and numbers no float can hold are refused (they would
make `GET /api/v1/twins` answer something that is not JSON), nesting is bounded (deep arrays
would exhaust the parser's recursion), text must be UTF-8. Every refusal is a
`SpatialTwinError` with a 400 status, so no malformed value reaches code that would answer 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from spatialtwin.errors import SpatialTwinError

MAX_JSON_DEPTH = 32
# The longest integer literal accepted: 309 digits reach the largest float (1.8e308); any
# longer literal is a number no float can hold, and Python's own limit (4300 digits) would
# raise a plain ValueError.
MAX_INT_DIGITS = 309
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _invalid_number(token: str, why: str) -> SpatialTwinError:
    return SpatialTwinError(
        "invalid_number",
        f"JSON numbers must be finite and fit a 64-bit float ({why})",
        {"number": token[:40] + ("…" if len(token) > 40 else "")},
    )


def _parse_constant(token: str) -> Any:
    raise _invalid_number(token, f"{token} is not JSON")


def _parse_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _invalid_number(token, "too large for a float")
    return value


def _parse_int(token: str) -> int:
    if len(token.lstrip("-")) > MAX_INT_DIGITS:
        raise _invalid_number(token, "too large for a float")
    value = int(token)
    try:
        float(value)
    except OverflowError:
        raise _invalid_number(token, "too large for a float") from None
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` and `{}` are 1), iteratively."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes | str, what: str = "request body", code: str = "invalid_json") -> Any:
    """`raw` as JSON, strictly: UTF-8 (UTF-16/32 with a BOM as `json` detects them), no
    NaN/Infinity, every number a finite float, at most `MAX_JSON_DEPTH` levels deep."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode(json.detect_encoding(raw))
        except UnicodeDecodeError as exc:
            raise SpatialTwinError(
                code, f"{what} is not UTF-8 text", {"byte_offset": exc.start}
            ) from exc
    else:
        text = raw
    try:
        value = json.loads(
            text,
            parse_constant=_parse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        raise SpatialTwinError(
            code, f"{what} is not JSON: {exc.msg}", {"line": exc.lineno, "column": exc.colno}
        ) from exc
    except RecursionError as exc:
        raise _too_deep(what, code) from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(what, code)
    return value


def _too_deep(what: str, code: str) -> SpatialTwinError:
    return SpatialTwinError(
        code,
        f"{what} is nested more than {MAX_JSON_DEPTH} levels deep",
        {"max_depth": MAX_JSON_DEPTH},
    )


def require_object(value: Any, field: str, code: str = "invalid_request") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpatialTwinError(
            code, f"{field} must be a JSON object", {"field": field, "got": json_type(value)}
        )
    return value


def optional_string(
    value: Any, field: str, max_chars: int, code: str = "invalid_request"
) -> str | None:
    """None or a string of at most `max_chars` characters (longer ones are refused, not cut)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise SpatialTwinError(
            code,
            f"{field} must be a string of at most {max_chars} characters",
            {"field": field, "got": json_type(value)},
        )
    return value


def optional_id(value: Any, field: str = "id") -> str | None:
    """None, or an id a client may choose: 1–128 letters, digits, `_`, `.` or `-`."""
    if value is None:
        return None
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise SpatialTwinError(
            "invalid_id",
            f"{field} must be 1–128 letters, digits, '_', '.' or '-' (no '..')",
            {"field": field, "got": json_type(value)},
        )
    return value


def joint_map(value: Any) -> dict[str, str] | None:
    """An import's `joint_map`: None, or an object of source joint name -> canonical name."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 200 and 0 < len(v) <= 64
        for k, v in value.items()
    ):
        raise SpatialTwinError(
            "invalid_joint_map",
            "joint_map must be a JSON object of source joint names to canonical joint names",
            {"got": json_type(value)},
        )
    return value


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    )


def pose_json(value: Any) -> Any:
    """Refuse a pose whose parts have the wrong JSON type before anything converts it:
    `root` three numbers (metres), `joints` an object of name -> four numbers [x, y, z, w].
    Names, finiteness and zero quaternions are the pose parser's (422) to judge."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpatialTwinError(
            "invalid_pose", "a pose is a JSON object with 'root' and 'joints'", status=422
        )
    if "root" in value and not _numbers(value["root"], 3):
        raise SpatialTwinError(
            "invalid_pose",
            "pose 'root' must be three numbers (metres)",
            {"got": json_type(value["root"])},
        )
    joints = value.get("joints", {})
    if not isinstance(joints, Mapping) or not all(_numbers(q, 4) for q in joints.values()):
        raise SpatialTwinError(
            "invalid_pose",
            "pose 'joints' must map joint names to quaternions [x, y, z, w] of numbers",
            {"got": json_type(joints)},
        )
    return value


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value, for error details that never echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
