"""Studio stills drawn by three.js in Debian's headless Chromium, driven over the DevTools
protocol: the same stage (`web_client/lib/stage.js`) the product page draws on, so a poster
looks like the page, with the physically based materials and room environment light of
three.js, on SwiftShader (software WebGL: the same pixels on every run of this machine, no GPU).

    still = await render_still(StillPage(files, spec), 1024, 1536)
    still.rgb.shape  # (1536, 1024, 3), sRGB; `gltf.still_image` writes the PNG

Why Chromium and not Blender/Cycles: the shop already ships three.js, the stills then match
the viewer shoppers turn, Debian packages Chromium (Blender's `bpy` wheel is 400 MB and a path
tracer is slower on two cores), and SwiftShader rasterises in a fixed order, so identical
input gives identical pixels, which a Monte Carlo renderer only gives with fixed seeds and
sample counts.

How: (1) Chromium starts headless with a throwaway profile and `--remote-debugging-port=0`
(the port it picked is read from its stderr); (2) a page target is opened and every request
it makes is intercepted (`Fetch.requestPaused`) and answered from memory: the still page, the
stage and three.js from the checkout, the look GLB and the still's JSON spec; anything else
is refused, so the page can reach no network at all; (3) the page draws one frame (and the
visible label, if asked, as HTML over it), says so (`window.spatialTwinStill`), and the
compositor's frame is captured (`Page.captureScreenshot`: reading a 1.5-megapixel WebGL canvas
back in the page costs seconds under SwiftShader, the screenshot tens of milliseconds); (4) the
browser is closed and its profile removed, whatever happened. One browser per still (its
start is about 0.5 s of a render): nothing lives between jobs, so an idle worker holds no
Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import mimetypes
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.still_image import decode_png_rgb

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
# The page's origin: requests never leave the browser (each is answered from memory), and one
# that did would go to the loopback discard port.
ORIGIN = "http://127.0.0.1:9"
STILL_PAGE = "/web/still.html"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class StillRenderOptions:
    chromium: Path = CHROMIUM
    project_root: Path = PROJECT_ROOT
    start_timeout_s: float = 30.0
    render_timeout_s: float = 120.0


@dataclass(frozen=True)
class RenderedStill:
    """The frame as drawn: sRGB pixels, rows top-down, and the page's milestones (ms since
    navigation: script, stage, loaded, compiled, drawn, read)."""

    rgb: NDArray[np.uint8]  # (height, width, 3)
    timings_ms: dict[str, float]


@dataclass
class StillPage:
    """What the still page is given: files by URL path (bytes, or a path to read) and the
    still's spec as JSON (served as `/still.json`)."""

    files: Mapping[str, bytes]
    spec: dict[str, Any] = field(default_factory=dict)


def _served_file(root: Path, path: str, files: Mapping[str, bytes]) -> tuple[bytes, str] | None:
    """The bytes and media type for a URL path, or None: the given files first, then
    `/web/` from web_client/ and `/vendor/three/` from node_modules/three/ (never above)."""
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if path.endswith(".js"):
        media = "text/javascript"
    if path in files:
        return files[path], media
    mounts = {"/web/": root / "web_client", "/vendor/three/": root / "node_modules" / "three"}
    for prefix, folder in mounts.items():
        if path.startswith(prefix):
            target = (folder / path[len(prefix) :]).resolve()
            if target.is_relative_to(folder.resolve()) and target.is_file():
                return target.read_bytes(), media
    return None


class _DevTools:
    """A DevTools protocol connection: commands by id, events to one handler."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.handlers: dict[str, Any] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            elif data.get("method") in self.handlers:
                task = asyncio.ensure_future(self.handlers[data["method"]](data))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("Chromium closed the DevTools connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps(message))
        reply = await fut
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


async def _devtools_url(proc: asyncio.subprocess.Process, timeout_s: float) -> str:
    assert proc.stderr is not None
    async with asyncio.timeout(timeout_s):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise RuntimeError("Chromium exited before it listened for DevTools")
            found = _LISTENING.search(line)
            if found:
                return found.group(1).decode()


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Read Chromium's stderr to its end, so the pipe never fills and blocks it."""
    if stream is None:
        return
    while await stream.read(65536):
        pass


def _failed(message: str, detail: dict[str, Any] | None = None) -> SpatialTwinError:
    return SpatialTwinError("still_render_failed", message, detail or {}, status=500)


async def render_still(
    page: StillPage, width_px: int, height_px: int, options: StillRenderOptions | None = None
) -> RenderedStill:
    """The frame the still page draws for `page` at `width_px` × `height_px`; raises
    `SpatialTwinError` (500 `still_render_failed`) when Chromium or the page fails."""
    options = options or StillRenderOptions()
    if not options.chromium.exists():
        raise _failed("stills need Debian's chromium", {"path": str(options.chromium)})
    profile = Path(tempfile.mkdtemp(prefix="spatialtwin-still-"))
    proc = await asyncio.create_subprocess_exec(
        str(options.chromium),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        f"--window-size={width_px},{height_px}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[None] | None = None
    try:
        url = await _devtools_url(proc, options.start_timeout_s)
        drain = asyncio.create_task(_drain(proc.stderr))
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES) as ws,
        ):
            tools = _DevTools(ws)
            try:
                async with asyncio.timeout(options.render_timeout_s):
                    return await _draw(tools, page, width_px, height_px, options.project_root)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(tools.send("Browser.close"), 5)
                await tools.close()
    except TimeoutError as exc:
        raise _failed(
            "the still did not render in time", {"timeout_s": options.render_timeout_s}
        ) from exc
    finally:
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        shutil.rmtree(profile, ignore_errors=True)


async def _draw(
    tools: _DevTools, page: StillPage, width_px: int, height_px: int, root: Path
) -> RenderedStill:
    target = await tools.send("Target.createTarget", {"url": "about:blank"})
    attached = await tools.send(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )
    session = attached["sessionId"]
    files = {**page.files, "/still.json": json.dumps(page.spec).encode()}
    refused: list[str] = []

    async def paused(event: dict[str, Any]) -> None:
        params = event["params"]
        request_url = str(params["request"]["url"])
        path = request_url[len(ORIGIN) :].split("?")[0] if request_url.startswith(ORIGIN) else ""
        served = _served_file(root, path, files) if path else None
        if served is None:
            refused.append(request_url[:200])
            await tools.send(
                "Fetch.failRequest",
                {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                session,
            )
            return
        body, media = served
        await tools.send(
            "Fetch.fulfillRequest",
            {
                "requestId": params["requestId"],
                "responseCode": 200,
                "responseHeaders": [
                    {"name": "Content-Type", "value": media},
                    {"name": "Cache-Control", "value": "no-store"},
                ],
                "body": base64.b64encode(body).decode(),
            },
            session,
        )

    tools.handlers["Fetch.requestPaused"] = paused
    await tools.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session)
    await tools.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width_px, "height": height_px, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    loaded = asyncio.get_running_loop().create_future()

    async def load_fired(event: dict[str, Any]) -> None:
        if not loaded.done():
            loaded.set_result(None)

    tools.handlers["Page.loadEventFired"] = load_fired
    await tools.send("Page.enable", {}, session)
    await tools.send("Page.navigate", {"url": ORIGIN + STILL_PAGE}, session)
    await loaded
    result = await tools.send(
        "Runtime.evaluate",
        {
            "expression": "new Promise((resolve) => { const wait = () => window.spatialTwinStill"
            " ? window.spatialTwinStill.then(resolve) : setTimeout(wait, 20); wait(); })",
            "awaitPromise": True,
            "returnByValue": True,
        },
        session,
    )
    value = result.get("result", {}).get("value")
    if not isinstance(value, dict) or not value.get("drawn"):
        error = value.get("error") if isinstance(value, dict) else str(result)[:500]
        raise _failed("the still page failed", {"error": error, "refused": refused[:5]})
    shot = await tools.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "optimizeForSpeed": True,
            "clip": {"x": 0, "y": 0, "width": width_px, "height": height_px, "scale": 1},
        },
        session,
    )
    rgb = decode_png_rgb(base64.b64decode(shot["data"]))
    if rgb.shape != (height_px, width_px, 3):
        raise _failed("the screenshot has the wrong size", {"shape": list(rgb.shape)})
    timings = {str(k): float(v) for k, v in (value.get("timingsMs") or {}).items()}
    return RenderedStill(rgb, timings)
