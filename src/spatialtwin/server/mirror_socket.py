"""The mirror protocol on one WebSocket (`docs/mirror-protocol.md`): the mirror's socket and a
watcher's, over `live.mirror_service.MirrorService`.

Each socket is a `Peer`: its handler task reads (hello, frames, control messages); one sender
task writes everything in order (control messages, result frames, pings, the close), so no
send ever blocks a reader; a ticker checks four times a second for silence (3 × heartbeat:
4408) and a client that does not read (its send buffer over `send_buffer_bytes` for
`send_over_s`: 4460), sends `status` once a second and a ping every heartbeat.

Results come from the session's cloth thread through the loop (`offer_result`). A result is
dropped — and the receiver's next one made a key frame — while the transport's write buffer
holds more than `send_buffer_bytes`, or two results already wait to be written; after a drop
only a key frame is sent, so a client never gets a delta whose predecessor it missed. The
kernel's own send buffer is set to `socket_send_bytes` (256 KiB: about a second of results at
most waits in the kernel, so latency stays bounded and the buffer check sees a stalled client
soon), and the transport's high-water mark is set above `send_buffer_bytes`, so aiohttp's flow
control never parks the sender before the drop rule decides.

Privacy: message bodies and frame bytes are never logged; a frame's bytes go from the socket
into `MirrorSession.submit_frame` and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf import mirror_messages as mm
from spatialtwin.live.mirror_service import (
    LiveSessionEntry,
    MirrorOptions,
    MirrorService,
    license_close_reason,
)
from spatialtwin.live.session_registry import RemoteWatch

if TYPE_CHECKING:
    from spatialtwin.services.devices import DeviceService

log = logging.getLogger("spatialtwin.mirror")
TICK_S = 0.25
PROGRESS_EVERY_S = 0.2
RATE_BURST = 3.0  # frames a client may send back to back before the rate limit counts


LINGER_S = 1.0
LINGER_BYTES = 64 << 20
_LINGERING: set[asyncio.Task[None]] = set()


async def _read_out(kept: socket.socket) -> None:
    """Read and drop what a refused client still sends, for a moment, then close."""
    loop = asyncio.get_running_loop()
    end, taken = loop.time() + LINGER_S, 0
    try:
        while taken < LINGER_BYTES and (left := end - loop.time()) > 0:
            data = await asyncio.wait_for(loop.sock_recv(kept, 1 << 16), left)
            if not data:
                break
            taken += len(data)
    except (OSError, TimeoutError):
        pass
    finally:
        kept.close()


def close_for(exc: SpatialTwinError) -> tuple[int, str]:
    """The close code and reason a refusal ends a socket with (§5 of the doc)."""
    if isinstance(exc, mm.MirrorProtocolError):
        return exc.close_code, exc.close_reason
    status = exc.status
    if status in (403, 410):
        return mm.CLOSE_LICENSE, license_close_reason(exc)
    code = {
        400: mm.CLOSE_BAD_MESSAGE,
        401: mm.CLOSE_UNAUTHORISED,
        404: mm.CLOSE_NOT_FOUND,
        409: mm.CLOSE_ATTACHED,
        413: mm.CLOSE_TOO_BIG,
        422: mm.CLOSE_BAD_MESSAGE,
        429: mm.CLOSE_TOO_MANY,
        503: mm.CLOSE_GOING_AWAY,
    }.get(status, mm.CLOSE_INTERNAL)
    return code, mm.close_reason(exc.code)


class RateLimit:
    """A token bucket: `rate_hz` frames a second, `burst` back to back."""

    def __init__(self, rate_hz: float, burst: float = RATE_BURST) -> None:
        self.rate_hz = float(rate_hz)
        self.burst = float(burst)
        self._tokens = self.burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_hz)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Peer:
    """One socket's sending side and timers; `MirrorPeer` and `WatcherPeer` read."""

    kind = "peer"

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, service: MirrorService
    ) -> None:
        self.ws = ws
        self.request = request
        self.service = service
        self.options: MirrorOptions = service.options
        self.loop = asyncio.get_running_loop()
        self.transport = request.transport
        self.outbox: deque[tuple[Any, ...]] = deque()
        self.wake = asyncio.Event()
        self.queued_results = 0
        self.closing = False
        self.close_code: int | None = None
        self.awaiting_key = True
        self.over_since: float | None = None
        self.last_heard = self.loop.time()
        # the session; for a watcher in a fleet possibly one another server holds
        self.entry: LiveSessionEntry | RemoteWatch | None = None
        self.results_sent = 0
        self.results_dropped = 0
        self.refused_with: int | None = None  # the close code of a refusal aiohttp made
        self._tasks: list[asyncio.Task[None]] = []
        self._sender = asyncio.create_task(self._send_loop(), name=f"mirror-{self.kind}-send")

    # --- set-up -------------------------------------------------------------------------------

    @classmethod
    def socket_response(cls, options: MirrorOptions, max_message_bytes: int) -> Any:
        """The WebSocketResponse every mirror socket uses: our own pings and pongs (silence
        is judged on every message), no compression (vertex streams are already coded), bytes
        for text (UTF-8 checked by `parse_text`), a bounded close handshake."""
        return web.WebSocketResponse(
            max_msg_size=max_message_bytes + 1,
            autoping=False,
            compress=False,
            decode_text=False,
            timeout=options.close_timeout_s,
        )

    def tune_socket(self) -> None:
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.options.socket_send_bytes)
        with contextlib.suppress(AttributeError, ValueError):
            transport.set_write_buffer_limits(high=4 * self.options.send_buffer_bytes + (1 << 20))

    def start_ticker(self) -> None:
        self._tasks.append(asyncio.create_task(self._tick(), name=f"mirror-{self.kind}-tick"))

    # --- the Receiver protocol (event loop) ---------------------------------------------------

    def buffered_bytes(self) -> int:
        transport = self.transport
        if transport is None or transport.is_closing():
            return 0
        return int(transport.get_write_buffer_size())

    def offer_result(self, packet: bytes, is_key: bool) -> None:
        if self.closing or self.entry is None:
            return
        if self.awaiting_key and not is_key:
            self._dropped()
            if isinstance(self.entry, RemoteWatch):  # its holder is asked (rate-limited)
                self.service.request_key(self.entry, self)
            return
        over = self.buffered_bytes() > self.options.send_buffer_bytes
        if over or self.queued_results >= 2:
            if over and self.over_since is None:
                self.over_since = self.loop.time()
            self._dropped()
            self.awaiting_key = True
            self.service.request_key(self.entry, self)
            return
        self.awaiting_key = False
        self.queued_results += 1
        self._queue(("bytes", packet))

    def _dropped(self) -> None:
        self.results_dropped += 1
        self.service.stats.results_dropped += 1
        if self.entry is not None:
            self.entry.results_dropped += 1

    def send_message(self, message: dict[str, Any]) -> None:
        if not self.closing:
            self._queue(("text", mm.info_json(message).decode("utf-8")))

    def end(self, close_code: int, close_reason: str, ended: str | None) -> None:
        """Close this socket after what is queued: `ended` first when the session ended."""
        if self.closing:
            return
        if ended is not None:
            self._queue(("text", mm.info_json({"type": "ended", "reason": ended}).decode()))
        self.closing = True
        self.close_code = close_code
        self._queue(("close", close_code, mm.close_reason(close_reason)))

    def fail(self, exc: SpatialTwinError) -> None:
        """Refuse: the `error` message, then the close its code calls for."""
        code, reason = close_for(exc)
        self.send_error(exc)
        self.end(code, reason, None)

    def send_error(self, exc: SpatialTwinError) -> None:
        self.send_message({"type": "error", **exc.to_json()})

    def _queue(self, item: tuple[Any, ...]) -> None:
        self.outbox.append(item)
        self.wake.set()

    # --- sending ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.outbox:
                    item = self.outbox.popleft()
                    kind = item[0]
                    if kind == "bytes":
                        self.queued_results -= 1
                        await ws.send_bytes(item[1])
                        self.results_sent += 1
                    elif kind == "text":
                        await ws.send_str(item[1])
                    elif kind == "ping":
                        await ws.ping()
                    elif kind == "pong":
                        await ws.pong(item[1])
                    elif kind == "close":
                        await self._close(item[1], item[2])
                        return
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away under a send: nothing more to send
            self.closing = True
            self._abort()

    async def _close(self, code: int, reason: str) -> None:
        self.service.stats.count_close(code)
        # a peer that stopped reading may never take the close frame
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode("utf-8")),
                self.options.close_timeout_s + 0.5,
            )
        if self.buffered_bytes() > 0:
            self._abort()

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()

    # --- timers -------------------------------------------------------------------------------

    async def _tick(self) -> None:
        options = self.options
        now = self.loop.time()
        next_status, next_ping = now + 1.0, now + options.heartbeat_s
        while not self.closing:
            await asyncio.sleep(TICK_S)
            now = self.loop.time()
            if now - self.last_heard > 3.0 * options.heartbeat_s:
                self.end(mm.CLOSE_TIMEOUT, "silent", None)
                return
            if self.buffered_bytes() > options.send_buffer_bytes:
                self.over_since = self.over_since if self.over_since is not None else now
                if now - self.over_since > options.send_over_s:
                    self.end(mm.CLOSE_NOT_READING, "not_reading", None)
                    return
            else:
                self.over_since = None
            self.on_tick()
            entry = self.entry
            if now >= next_status and entry is not None:
                next_status += 1.0
                status = self.service.status(entry)
                if status is not None:  # a remote session's holder sends its own
                    self.send_message(status)
            if now >= next_ping:
                next_ping += options.heartbeat_s
                self._queue(("ping",))

    def on_tick(self) -> None:
        """Four times a second while the socket is open (a subclass's own checks)."""

    def linger_after(self, msg: Any) -> None:
        """After aiohttp refused a message itself (1009 too big, a broken frame) it has sent
        the close frame and closes the socket at the next loop turn, while the client may
        still be sending: closing a socket with unread bytes makes the kernel send a reset,
        which discards the close frame on its way (the client sees 1006, not 1009). So the
        socket is kept open on a duplicate descriptor, shut for writing (the close frame, then
        a FIN) and read out for a moment (`LINGER_S`, at most `LINGER_BYTES`) before it is
        closed: a lingering close."""
        if msg.type != WSMsgType.ERROR or self.transport is None:
            return
        code = getattr(msg.data, "code", None)  # aiohttp's WebSocketError
        self.refused_with = int(code) if isinstance(code, int) else None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            kept = socket.socket(fileno=os.dup(sock.fileno()))
            kept.setblocking(False)
            kept.shutdown(socket.SHUT_WR)
        except OSError:
            return
        task = asyncio.create_task(_read_out(kept), name="mirror-linger")
        _LINGERING.add(task)
        task.add_done_callback(_LINGERING.discard)

    # --- reading ------------------------------------------------------------------------------

    def answer_ping(self, t_ms: float | None) -> None:
        now_ms = round(time.time() * 1e3, 3)
        self.send_message({"type": "pong", "t_ms": t_ms, "server_t_ms": now_ms})

    def heard(self) -> None:
        self.last_heard = self.loop.time()

    async def finish(self) -> None:
        """After the reading ends: let the sender write the close (bounded), stop the timers,
        and cut a transport that still holds unsent bytes."""
        if not self.closing:
            self.closing = True
            self.service.stats.count_close(self.refused_with or self.ws.close_code or 1006)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._sender), self.options.close_timeout_s + 1)
        self._sender.cancel()
        for task in (*self._tasks, self._sender):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if not self.ws.closed or self.buffered_bytes() > 0:
            self._abort()


class MirrorPeer(Peer):
    """The mirror's socket: hello, then frames and control messages."""

    kind = "mirror"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rate = RateLimit(self.options.max_rate_hz)
        self.bad_in_a_row = 0
        self.last_frame_id = -1
        self.bye = False
        self._errors_seen = 0
        self._progress_at = 0.0
        self._progress_fraction = -1.0

    def progress(self, stage: str, fraction: float, message: str) -> None:
        now = self.loop.time()
        if fraction < 1.0 and (
            now - self._progress_at < PROGRESS_EVERY_S and fraction - self._progress_fraction < 0.05
        ):
            return
        self._progress_at, self._progress_fraction = now, fraction
        self.send_message(
            {"type": "progress", "stage": stage, "fraction": round(fraction, 3), "message": message}
        )

    async def run(self, devices: DeviceService) -> None:
        """Hello → session (new or resumed) → welcome → frames until the socket ends."""
        hello = await self._hello()
        if hello is None:
            return
        try:
            device = await devices.verify(hello.token)
            if hello.resume is not None:
                entry = await self.service.resume(hello, device, self.progress)
                resumed = True
            else:
                entry = await self.service.open(hello, device, self.progress)
                resumed = False
        except SpatialTwinError as exc:
            self.fail(exc)
            return
        if self.closing or self.ws.closed:  # the client left while its session was made
            if not resumed:
                await self.service.end(entry, "idle", mm.CLOSE_NORMAL, "idle")
            return
        self.entry = entry
        self.send_message(self.service.welcome(entry))
        self.awaiting_key = True
        self.service.attach(entry, self)
        self.heard()
        self.start_ticker()
        try:
            await self._read(entry)
        finally:
            if not entry.ended and not self.bye:
                self.service.detach(entry, self)

    async def _hello(self) -> mm.Hello | None:
        deadline = self.loop.time() + self.options.hello_timeout_s
        while True:
            left = deadline - self.loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                self.end(mm.CLOSE_TIMEOUT, "no_hello", None)
                return None
            if msg.type == WSMsgType.PING:
                self._queue(("pong", msg.data))
                continue
            if msg.type == WSMsgType.PONG:
                continue
            if msg.type == WSMsgType.TEXT:
                try:
                    return mm.check_hello(mm.parse_text(msg.data, self.options.max_text_bytes))
                except mm.MirrorProtocolError as exc:
                    self.fail(exc)
                    return None
            if msg.type == WSMsgType.BINARY:
                self.fail(
                    mm.MirrorProtocolError(
                        mm.CLOSE_BAD_MESSAGE, "expected_hello", "the first message must be a hello"
                    )
                )
                return None
            self.linger_after(msg)
            return None  # closed, closing or a protocol error aiohttp answered itself

    async def _read(self, entry: LiveSessionEntry) -> None:
        ws = self.ws
        while not self.closing:
            msg = await ws.receive()
            self.heard()
            if msg.type == WSMsgType.BINARY:
                self._frame(entry, msg.data)
            elif msg.type == WSMsgType.TEXT:
                self._text(entry, msg.data)
            elif msg.type == WSMsgType.PING:
                self._queue(("pong", msg.data))
            elif msg.type == WSMsgType.PONG:
                continue
            else:
                self.linger_after(msg)
                return

    def on_tick(self) -> None:
        """Frames whose header passed but whose pixels did not decode fail on the tracking
        thread; new failures are answered with an `error` (`bad_frame`)."""
        entry = self.entry
        pipeline = entry.pipeline if entry is not None else None
        if pipeline is None:
            return
        errors = pipeline.stats.errors.total()
        if errors > self._errors_seen:
            self._errors_seen = errors
            self.send_error(
                SpatialTwinError(
                    "bad_frame",
                    "a frame could not be decoded and was dropped",
                    {"failed_frames": errors},
                )
            )

    def _frame(self, entry: LiveSessionEntry, data: bytes) -> None:
        try:
            frame = mm.read_camera_frame(data, self.options.max_frame_bytes)
        except mm.MirrorProtocolError as exc:
            self.fail(exc)
            return
        entry.frames_received += 1
        if not self.rate.take():
            entry.dropped_rate += 1
            return
        pipeline = entry.pipeline
        if pipeline is None:
            return
        try:
            if frame.frame_id <= self.last_frame_id:
                raise SpatialTwinError(
                    "bad_frame",
                    "frame ids must increase",
                    {"frame_id": frame.frame_id, "last": self.last_frame_id},
                )
            wanted = mm.KIND_IMAGE if entry.input == "frames" else mm.KIND_LANDMARKS
            if frame.kind != wanted:
                raise SpatialTwinError(
                    "bad_frame",
                    f"this session's input is {entry.input!r}",
                    {"kind": frame.kind, "input": entry.input},
                )
            # the session echoes its capture time untouched: it carries the client's ms
            if frame.kind == mm.KIND_IMAGE:
                pipeline.submit_frame(frame.frame_id, bytes(frame.payload), frame.capture_t_ms)
            else:
                marks = mm.read_landmark_payload(frame.payload)
                pipeline.submit_landmarks(
                    frame.frame_id,
                    marks.image,
                    marks.world,
                    list(marks.size_px),
                    frame.capture_t_ms,
                )
        except SpatialTwinError as exc:
            self.bad_in_a_row += 1
            if self.bad_in_a_row >= self.options.bad_frames_in_a_row:
                self.fail(
                    mm.MirrorProtocolError(
                        mm.CLOSE_BAD_MESSAGE,
                        "too_many_bad_frames",
                        f"{self.bad_in_a_row} bad frames in a row",
                        {"last": exc.code},
                    )
                )
            else:
                self.send_error(exc)
            return
        self.last_frame_id = frame.frame_id
        self.bad_in_a_row = 0

    def _text(self, entry: LiveSessionEntry, data: bytes) -> None:
        try:
            message = mm.check_client_message(mm.parse_text(data, self.options.max_text_bytes))
        except mm.MirrorProtocolError as exc:
            self.fail(exc)
            return
        if message.type == "key_frame":
            self.awaiting_key = True
            self.service.request_key(entry, self)
        elif message.type == "share":
            self._spawn(self._share(entry))
        elif message.type == "ping":
            self.answer_ping(message.t_ms)
        elif message.type == "bye":
            self.bye = True
            self._spawn(self.service.end(entry, "bye", mm.CLOSE_NORMAL, "bye"))
        elif message.type == "switch":
            if entry.switching:
                self.send_error(
                    SpatialTwinError("switch_in_progress", "a switch is already being made ready")
                )
                return
            assert message.wear is not None
            self._spawn(self._switch(entry, message.wear))

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro, name="mirror-mirror-work"))

    async def _share(self, entry: LiveSessionEntry) -> None:
        try:
            self.send_message(await self.service.share(entry))
        except SpatialTwinError as exc:  # the fleet's store away: the session goes on
            self.send_error(exc)

    async def _switch(self, entry: LiveSessionEntry, wear: mm.WearSpec) -> None:
        entry.switching = True
        try:
            garments = await self.service.switch(entry, wear, self.progress)
        except SpatialTwinError as exc:
            self.send_error(exc)  # the session goes on with what it wears
            return
        finally:
            entry.switching = False
        self.send_message({"type": "switched", "garments": garments})


class WatcherPeer(Peer):
    """A watcher's socket: read-only; `ping` and `bye` only."""

    kind = "watcher"

    async def run(self, code: str) -> None:
        try:
            entry, feed, welcome = await self.service.open_watch(code, self)
        except SpatialTwinError as exc:
            self.fail(exc)
            return
        self.entry = entry
        self.send_message(welcome)
        self.start_ticker()
        try:
            await self._read()
        finally:
            self.service.remove_watcher(entry, feed)

    async def _read(self) -> None:
        ws = self.ws
        while not self.closing:
            msg = await ws.receive()
            self.heard()
            if msg.type == WSMsgType.TEXT:
                try:
                    message = mm.check_client_message(
                        mm.parse_text(msg.data, self.options.max_text_bytes), watcher=True
                    )
                except mm.MirrorProtocolError as exc:
                    self.fail(exc)
                    return
                if message.type == "ping":
                    self.answer_ping(message.t_ms)
                else:
                    self.end(mm.CLOSE_NORMAL, "bye", None)
            elif msg.type == WSMsgType.BINARY:
                self.fail(
                    mm.MirrorProtocolError(
                        mm.CLOSE_BAD_MESSAGE,
                        "watcher_sends_no_frames",
                        "a watcher sends only ping and bye",
                    )
                )
            elif msg.type == WSMsgType.PING:
                self._queue(("pong", msg.data))
            elif msg.type != WSMsgType.PONG:
                self.linger_after(msg)
                return


async def serve_socket(
    request: web.Request,
    service: MirrorService,
    make: Callable[..., Peer],
    max_message_bytes: int,
    run: Callable[[Any], Any],
    peers: set[Peer],
) -> web.WebSocketResponse:
    """Accept the upgrade, run the peer, always finish it (timers stopped, socket closed)."""
    ws = Peer.socket_response(service.options, max_message_bytes)
    await ws.prepare(request)
    peer = make(ws, request, service)
    peer.tune_socket()
    peers.add(peer)
    try:
        await run(peer)
    except SpatialTwinError as exc:
        peer.fail(exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        session = peer.entry.id if peer.entry is not None else None
        log.exception("mirror socket failed", extra={"fields": {"session": session}})
        peer.end(mm.CLOSE_INTERNAL, "internal_error", None)
    finally:
        await peer.finish()
        peers.discard(peer)
    return ws
