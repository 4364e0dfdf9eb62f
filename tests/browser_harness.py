"""Pytest plugin: Debian chromium driven by Playwright, and a live `spatialtwin serve`.

Register it once in `tests/conftest.py`:

    pytest_plugins = ["tests.browser_harness"]

Fixtures:
- `chromium` (module): one headless chromium shared by the tests of a module.
- `launch_chromium_browser` (module): factory for an extra browser with other flags, e.g. a
  fake camera playing a .y4m file: `launch_chromium_browser(fake_video=path)`.
- `browser_page` (function): a fresh context and page (1280×1000 CSS px, device scale 1) whose
  console errors and uncaught exceptions are collected in `page_problems(page)`.
- `spatialtwin_server` (session): one server on a free loopback port with a temporary data
  directory (seeded with the sample twin on first start), stopped gracefully at the end.
- `start_spatialtwin_server(data_dir)` is the same as a context manager, for a test that needs
  its own server (say, to revoke a licence without disturbing other tests).

Why module and not session scope: Playwright's sync API keeps its own asyncio loop marked as
running on the main thread while it is started, and every pytest-asyncio / pytest-aiohttp test
run in that window fails with "Runner.run() cannot be called from a running event loop". Closing
Playwright at the end of each browser module keeps the async tests of other modules working;
a launch costs ~0.3 s. Do not put async tests in a module that uses these browser fixtures.

Chromium runs with WebGL on SwiftShader (software Vulkan through ANGLE), so three.js renders
in CI without a GPU. Playwright's `launch` gives every browser a fresh temporary profile
(user-data-dir) and removes it on close. Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_EXECUTABLE = Path("/usr/bin/chromium")

# Flags every test browser gets: headless, no sandbox (root in a container), no GPU process,
# WebGL on SwiftShader, and nothing that phones home (updates, sync, QUIC probes).
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
)

DEFAULT_VIEWPORT = {"width": 1280, "height": 1000}
SERVER_START_TIMEOUT_S = 90.0  # first start builds and stores the sample twin's body
SERVER_STOP_TIMEOUT_S = 15.0


# ---------------------------------------------------------------------------------------------
# Chromium


def chromium_args(*, fake_video: Path | None = None, extra_args: tuple[str, ...] = ()) -> list[str]:
    """Command-line flags for a test chromium; `fake_video` plays a .y4m file as the camera.

    Camera frames are biometric data: the .y4m must be a test fixture (for instance one made
    from `../shared/data/people/*.mp4`), and nothing here records what the page captures.
    """
    args = list(CHROMIUM_ARGS)
    if fake_video is not None:
        video = Path(fake_video)
        if video.suffix != ".y4m" or not video.is_file():
            raise ValueError(f"fake camera needs an existing .y4m file, not {video}")
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ]
    args += list(extra_args)
    return args


def launch_chromium(
    playwright: Any, *, fake_video: Path | None = None, extra_args: tuple[str, ...] = ()
) -> Any:
    """Launch Debian's chromium through a started Playwright (sync API)."""
    if not CHROMIUM_EXECUTABLE.exists():
        raise RuntimeError(f"browser tests need Debian chromium at {CHROMIUM_EXECUTABLE}")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM_EXECUTABLE),
        headless=True,
        args=chromium_args(fake_video=fake_video, extra_args=extra_args),
    )


@pytest.fixture(scope="module")
def playwright_session() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    manager = sync_playwright()
    playwright = manager.start()
    try:
        yield playwright
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def chromium(playwright_session: Any) -> Iterator[Any]:
    browser = launch_chromium(playwright_session)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def launch_chromium_browser(playwright_session: Any) -> Iterator[Callable[..., Any]]:
    """Factory for browsers with their own flags; all are closed at the end of the session."""
    launched: list[Any] = []

    def launch(*, fake_video: Path | None = None, extra_args: tuple[str, ...] = ()) -> Any:
        browser = launch_chromium(playwright_session, fake_video=fake_video, extra_args=extra_args)
        launched.append(browser)
        return browser

    try:
        yield launch
    finally:
        for browser in launched:
            browser.close()


_PAGE_PROBLEMS: dict[int, list[str]] = {}


def watch_page(page: Any) -> Any:
    """Collect the page's console errors and uncaught exceptions for `page_problems`."""
    problems: list[str] = []
    _PAGE_PROBLEMS[id(page)] = problems
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    return page


def page_problems(page: Any) -> list[str]:
    """Console errors and uncaught exceptions seen on a page opened by `browser_page`."""
    return list(_PAGE_PROBLEMS.get(id(page), []))


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport=DEFAULT_VIEWPORT, device_scale_factor=1)
    page = watch_page(context.new_page())
    try:
        yield page
    finally:
        _PAGE_PROBLEMS.pop(id(page), None)
        context.close()


def wait_for_twin_viewer(page: Any, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until web_client's viewer has drawn a twin or shown an error; return its state.

    The state is `window.spatialTwinViewer`: `ready`, `twinId`, `boundingBox` (metres, skinning
    applied), `pxPerMetre`, `canvasSizePx`, `background`, `provenance` and `error`
    (`{status, code, message, detail}` or null).
    """
    page.wait_for_function(
        "() => { const v = window.spatialTwinViewer;"
        " return !!v && (v.ready || v.error !== null); }",
        timeout=timeout_s * 1000,
    )
    return page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinViewer))")


# ---------------------------------------------------------------------------------------------
# spatialtwin serve


@dataclass
class RunningServer:
    """A `spatialtwin serve` subprocess listening on `base_url`."""

    base_url: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    token: str | None = field(default=None, repr=False)  # an admin's, sent by get/post_json

    def url(self, path: str) -> str:
        """The URL of `path`; the merchandiser page is opened with the admin token, as an
        operator opens it (`?token=`, kept by the page in localStorage)."""
        path = path if path.startswith("/") else "/" + path
        if self.token and path.startswith(TOKEN_PAGES) and "token=" not in path:
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        return self.base_url + path

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post_json(self, path: str, payload: Any, *, timeout_s: float = 60.0) -> tuple[int, Any]:
        """POST a JSON body; returns (status, parsed reply). A 4xx/5xx raises HTTPError."""
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **self.auth_headers()},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())

    def get(self, path: str, *, timeout_s: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        """GET a path; returns (status, headers, body) for 4xx/5xx answers as well."""
        request = urllib.request.Request(self.url(path), headers=self.auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get_json(self, path: str) -> Any:
        status, _, body = self.get(path)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {body[:500]!r}")
        return json.loads(body)

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except FileNotFoundError:
            return ""


TOKEN_PAGES = ("/web/merchandiser.html",)


def admin_token(data_dir: Path) -> str:
    """An admin token of the server on `data_dir`: the demo token `serve` wrote on its first
    start, else one signed with its keys (`DATA/keys`, made when the server started)."""
    demo = Path(data_dir) / "demo-token"
    if demo.exists():
        return demo.read_text().strip()
    from spatialtwin.services.auth import KeyRing

    return KeyRing(Path(data_dir) / "keys").issue("admin", None, subject="tests")


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
            return response.status == 200 and json.loads(response.read()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets aiohttp run its cleanup (close stores, finish requests); kill if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def start_spatialtwin_server(
    data_dir: Path,
    *,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> Iterator[RunningServer]:
    """Run `python -m spatialtwin serve` on a free loopback port until the block ends.

    Waits for `GET /healthz` to answer `{"status": "ok"}`; if the process dies or never gets
    healthy, the error carries the tail of its log. The log is `<data_dir>.server.log`.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = data_dir.with_name(data_dir.name + ".server.log")
    command = [
        sys.executable, "-m", "spatialtwin", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir), *extra_args,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = RunningServer(base_url, port, data_dir, log_path, process)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(base_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"spatialtwin serve exited with {process.returncode} before it was healthy:\n"
                    + server.log_tail()
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"spatialtwin serve was not healthy after {timeout_s:.0f} s:\n"
                    + server.log_tail()
                )
            time.sleep(0.1)
        server.token = admin_token(data_dir)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def spatialtwin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("spatialtwin-server") / "data"
    with start_spatialtwin_server(data_dir) as server:
        yield server
