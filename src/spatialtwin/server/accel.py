"""Blob answers handed to the front proxy: nginx's `X-Accel-Redirect`.

Behind nginx (`deploy/nginx/spatialtwin.conf.template`) a server started with
`--accel-redirect PREFIX` (`settings["accel_redirect"]`, e.g. `/_spatialtwin_blobs/`) still
decides every blob download — the access door, ETag and 304 — but answers with an empty
response whose `X-Accel-Redirect` names the file under PREFIX; nginx's `internal` location
there aliases the store's `blob_root()` and streams the file itself (sendfile, Range), keeping
this response's Content-Type and Cache-Control. The server process never reads the bytes, so a
server that dies after answering cannot cut a download short, and nginx's retry of a request
whose server died before answering (`proxy_next_upstream`) is always safe.

Without the setting, or for a blob with no local file under the root (a store on an object
store), the route sends the bytes itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from spatialtwin.server import keys

if TYPE_CHECKING:
    from pathlib import Path

ACCEL_HEADER = "X-Accel-Redirect"


def accel_redirect(
    app: web.Application, path: Path | None, media_type: str, cache_control: str
) -> web.Response | None:
    """The redirect for the blob file at `path`, or None when it must be sent from here."""
    prefix = app[keys.SETTINGS].get("accel_redirect")
    if not prefix or path is None:
        return None
    root = app[keys.STORE].blob_root()
    if root is None:
        return None
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    return web.Response(
        headers={
            ACCEL_HEADER: prefix + relative.as_posix(),
            "Content-Type": media_type,
            "Cache-Control": cache_control,
        }
    )
