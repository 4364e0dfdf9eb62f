"""One error type for everything a user can get wrong.

Every refusal carries a stable machine code, a human message and the offending detail, so the
HTTP layer can answer `{"error": {"code", "message", "detail"}}` with a 4xx status and the CLI
can print the message and exit with status 2, without either knowing where the error arose.
"""

from __future__ import annotations

from typing import Any


class SpatialTwinError(Exception):
    """A request the user can fix; `status` is the HTTP status it maps to (4xx)."""

    def __init__(self, code: str, message: str, detail: Any = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return {"error": body}


class NotFoundError(SpatialTwinError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(
            f"{what}_not_found", f"no {what} with id {ident!r}", {"id": ident}, status=404
        )


class RecordExistsError(SpatialTwinError):
    """A create found its id taken (a store's create-only write)."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(
            "record_exists",
            f"a {kind} record with id {record_id!r} exists",
            {"kind": kind, "id": record_id},
            status=409,
        )


class RecordChangedError(SpatialTwinError):
    """A compare-and-set found the record changed (or gone) since it was read."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(
            "record_changed",
            f"the {kind} record {record_id!r} changed while this request was updating it; "
            "read it again and retry",
            {"kind": kind, "id": record_id},
            status=409,
        )


class StoreUnavailableError(SpatialTwinError):
    """The store's server (Redis) cannot be reached: 503, worth retrying after `retry_after_s`
    (nothing was half-written: every store write is one atomic step)."""

    retry_after_s = 1

    def __init__(self, url: str, reason: str = "") -> None:
        super().__init__(
            "store_unavailable",
            f"the store at {url} cannot be reached; retry shortly",
            {"url": url, "reason": reason[:200]} if reason else {"url": url},
            status=503,
        )
