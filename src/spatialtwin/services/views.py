"""Records as the API shows them: without blob keys, with links; jobs with their warnings.

Shared by the HTTP routes, the CLI's `--json` output and job results (a drape job's result is
the look as the API shows it), so all three agree.
"""

from __future__ import annotations

from typing import Any

API = "/api/v1"
LOD_FILE_PREFIX = f"{API}/lod/"  # a level file's URL: this prefix, its SHA-256, .glb or .bin


def _without_blobs(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "blobs"}


def twin_view(record: dict[str, Any]) -> dict[str, Any]:
    out = _without_blobs(record)
    out["links"] = {
        "self": f"{API}/twins/{record['id']}",
        "body": f"{API}/twins/{record['id']}/body.glb",
    }
    return out


def garment_view(record: dict[str, Any]) -> dict[str, Any]:
    out = _without_blobs(record)
    out["links"] = {
        "self": f"{API}/garments/{record['id']}",
        "preview": f"{API}/garments/{record['id']}/preview.glb",
    }
    return out


def look_view(record: dict[str, Any]) -> dict[str, Any]:
    out = _without_blobs(record)
    out["links"] = {
        "self": f"{API}/looks/{record['id']}",
        "glb": f"{API}/looks/{record['id']}/look.glb",
    }
    return out


def public_kind(kind: str) -> str:
    """The API names a kind as it always has: `look.drape` is `look_drape`."""
    return kind.replace(".", "_")


JOB_FIELDS = ("id", "status", "progress", "stage", "result", "error", "attempts")


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job's state; a finished job whose result carries warnings (a look that missed a
    quality threshold) shows them beside its status, so `done` is never silent about them."""
    body = {k: job.get(k) for k in JOB_FIELDS}
    body["kind"] = public_kind(str(job.get("kind", "")))
    result = job.get("result")
    body["warnings"] = result.get("warnings", []) if isinstance(result, dict) else []
    return body


def job_started(job: dict[str, Any], **links: str) -> dict[str, Any]:
    """The 202 answer of a request that started (or joined) a job."""
    return {
        "job": {k: job[k] for k in ("id", "status", "progress")},
        "links": {"job": f"{API}/jobs/{job['id']}", **links},
    }


def still_url(key: str, fmt: str) -> str:
    return f"{API}/stills/{key}.{fmt}"


def still_view(record: dict[str, Any]) -> dict[str, Any]:
    """A still as the API shows it: its file's URL, size, the request it answers (here, not
    in `services.stills`, so the routes import no renderer before the server listens)."""
    keys = ("id", "look", "shown_look", "twin", "format", "media_type", "bytes", "width_px")
    out = {k: record.get(k) for k in (*keys, "height_px", "request", "render_ms", "created_at")}
    out["links"] = {
        "self": f"{API}/stills/{record['id']}",
        "file": still_url(record["id"], record["format"]),
        "look": f"{API}/looks/{record['look']}",
    }
    out["disclosure"] = record.get("disclosure")
    return out
