"""Mirror sessions shared by a fleet of servers on one store (Redis): any server can resume a
session, open its watchers and serve its meshes, whichever server holds it.

A session runs in one process, its **holder** (the server whose process has its cloth). What
the other servers need of it lives in the store as short-lived records and on pub/sub:

- `mirror_sessions/<session id>` — the session's **descriptor**: holder, SHA-256 of the resume
  and access keys, device, twin, look, garments and layer order, its first stream id, camera
  tilt, input and model, when it started and the minutes metered, the live build's content key
  and its share codes. Written by the holder when the session opens or changes (switch, share,
  camera tilt, a metered minute), deleted when it ends. Alive while its holder is; a holder
  gone leaves it resumable for `resume_s` after its last heartbeat, and the sweep removes it
  after that.
- `mirror_servers/<server id>` — each server's **heartbeat** (`heartbeat_at_s`, wall clock,
  and `beat`, a counter), written every `heartbeat_s` (0.25 s); `closing` once it shuts down.
- `mirror_share_codes/<CODE>` — a share code: its session and `expires_at_s`.
- `mirror_live_builds/<content key>` — a look's live garments stored once (`stored_builds`):
  the blob of their NPZ, so a server taking over a session starts its cloth in milliseconds
  instead of draping the look again. `used_at_s` is refreshed (at most hourly) when a session
  opens with it; the sweep deletes builds unused for `build_keep_s` (a week).

Pub/sub: every server listens on its **control channel** `mirror.server.<server id>` (joins,
leaves and key-frame requests of remote watchers, release requests, and the replies to its
own requests); the holder publishes a session's output for remote watchers on
`mirror.session.<session id>` (result packets as base64, `status` and `switched` messages,
`ended` / `moved`) only while some other server has joined a watcher to it.

- **Watch through another server** (`RemoteWatch`, on the watcher's server): the share code's
  record names the session; the server subscribes to the session's channel and sends `join`
  to the holder, which answers `joined` with the watcher's `welcome` (or `join_refused`),
  starts a relay (`RemoteRelay`: one more set of vertex-stream encoders on the holder, fed as
  its own watchers are) and makes its next result a key frame. Result packets are relayed as
  they are to every watcher of the session on that server; one that lost a result asks for a
  key frame (`key`, at most every 0.5 s, which also joins again what the holder may have
  dropped). The holder stops relaying when nobody has subscribed for `relay_grace_s`.
- **Resume on another server** (`take_over` in the service): the descriptor is read and the
  key checked against its hash; the holder is asked to `release` the session (a holder that
  is not subscribed any more — killed, its connections closed — answers nobody: gone at once;
  one that does not answer within `release_wait_s` and whose heartbeat did not move is gone
  too; a live holder whose mirror socket is still attached refuses: 4409). The descriptor is
  then claimed with compare-and-set (two servers cannot both take it), the live garments come
  from the stored build and the cloth restarts from the look's static drape.

Clocks: expiry compares wall clocks of different machines, so servers keep NTP time (the
heartbeat's staleness, 1 s, is only a hint: a server is judged gone by the missing
subscription or by a heartbeat that did not move).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from spatialtwin.errors import RecordChangedError, RecordExistsError, SpatialTwinError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

log = logging.getLogger("spatialtwin.mirror")

SESSIONS = "mirror_sessions"
SERVERS = "mirror_servers"
SHARE_CODES = "mirror_share_codes"
LIVE_BUILDS = "mirror_live_builds"
SCHEMA_VERSION = 1  # of every record kind here (`docs/records.md`)
KEY_REQUEST_EVERY_S = 0.5
RELAY_QUEUE = 3  # packets waiting to be published before the relay drops and re-keys
BUILD_TOUCH_S = 3600.0


class Store(Protocol):
    """What this module uses of the services' store (`store.base.Store`, which `live` may
    not import): records with compare-and-set, blobs go through the service, pub/sub."""

    async def put_record(self, kind: str, record_id: str, record: dict[str, Any]) -> None: ...

    async def create_record(self, kind: str, record_id: str, record: dict[str, Any]) -> str: ...

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    async def get_record_revision(
        self, kind: str, record_id: str
    ) -> tuple[dict[str, Any], str] | None: ...

    async def replace_record(
        self, kind: str, record_id: str, record: dict[str, Any], revision: str
    ) -> str: ...

    async def delete_record(self, kind: str, record_id: str) -> bool: ...

    async def list_records(self, kind: str) -> list[dict[str, Any]]: ...

    async def publish(self, channel: str, message: dict[str, Any]) -> int: ...

    def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]: ...


class Receiver(Protocol):
    """A socket that receives a session's output (the mirror's or a watcher's); every method
    is called on the event loop."""

    def offer_result(self, packet: bytes, is_key: bool) -> None: ...

    def send_message(self, message: dict[str, Any]) -> None: ...

    def end(self, close_code: int, close_reason: str, ended: str | None) -> None: ...


def control_channel(server_id: str) -> str:
    return f"mirror.server.{server_id}"


def session_channel(session_id: str) -> str:
    return f"mirror.session.{session_id}"


def key_sha256(key: str) -> str:
    """What the store keeps of a resume or access key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_server_id() -> str:
    return f"srv_{secrets.token_hex(8)}"


@dataclass(frozen=True)
class FleetOptions:
    """Timings of the fleet's sessions (seconds)."""

    heartbeat_s: float = 0.25
    stale_s: float = 1.0
    release_wait_s: float = 1.0
    join_wait_s: float = 2.0
    relay_grace_s: float = 2.0
    remote_silence_s: float = 2.5
    sweep_s: float = 10.0
    build_keep_s: float = 7 * 24 * 3600.0


class SessionRegistry:
    """The fleet's records of mirror sessions (see the module doc), over the `Store`."""

    def __init__(self, store: Store, server_id: str, options: FleetOptions, resume_s: float):
        self.store = store
        self.server_id = server_id
        self.options = options
        self.resume_s = resume_s
        self.beat = 0

    # --- heartbeats ---------------------------------------------------------------------------

    async def heartbeat(self, sessions: int, closing: bool = False) -> None:
        self.beat += 1
        record = {
            "schema_version": SCHEMA_VERSION,
            "id": self.server_id,
            "heartbeat_at_s": time.time(),
            "beat": self.beat,
            "sessions": sessions,
            "closing": closing,
        }
        await self.store.put_record(SERVERS, self.server_id, record)

    async def server(self, server_id: str) -> dict[str, Any] | None:
        return await self.store.get_record(SERVERS, server_id)

    def is_stale(self, server: dict[str, Any] | None, now_s: float | None = None) -> bool:
        if server is None or server.get("closing"):
            return True
        now_s = time.time() if now_s is None else now_s
        return now_s - float(server.get("heartbeat_at_s", 0.0)) > self.options.stale_s

    def expired(self, server: dict[str, Any] | None, now_s: float | None = None) -> bool:
        """A session whose holder is `server` (gone) can no longer be resumed."""
        if server is None:
            return True
        now_s = time.time() if now_s is None else now_s
        return now_s - float(server.get("heartbeat_at_s", 0.0)) > self.resume_s

    # --- descriptors --------------------------------------------------------------------------

    async def create_session(self, descriptor: dict[str, Any]) -> None:
        await self.store.put_record(SESSIONS, descriptor["id"], descriptor)

    async def session(self, session_id: str) -> dict[str, Any] | None:
        record = await self.store.get_record(SESSIONS, session_id)
        if record is None or record.get("schema_version") != SCHEMA_VERSION:
            return None
        return record

    async def update_session(self, session_id: str, changes: dict[str, Any]) -> bool:
        """Change this server's descriptor (compare-and-set, tried again on a race); False
        when it is gone or another server holds it now."""
        for _ in range(5):
            found = await self.store.get_record_revision(SESSIONS, session_id)
            if found is None or found[0].get("holder") != self.server_id:
                return False
            record, revision = found
            try:
                changed = {**record, **changes, "updated_at_s": time.time()}
                await self.store.replace_record(SESSIONS, session_id, changed, revision)
                return True
            except RecordChangedError:
                continue
        return False

    async def claim(self, session_id: str, from_holder: str | None) -> dict[str, Any] | None:
        """Make this server the holder of a session `from_holder` held (compare-and-set: of
        two servers claiming it, one wins); the descriptor claimed, or None."""
        for _ in range(5):
            found = await self.store.get_record_revision(SESSIONS, session_id)
            if found is None or found[0].get("holder") != from_holder:
                return None
            record, revision = found
            claimed = {**record, "holder": self.server_id, "updated_at_s": time.time()}
            try:
                await self.store.replace_record(SESSIONS, session_id, claimed, revision)
                return claimed
            except RecordChangedError:
                continue
        return None

    async def give_back(self, session_id: str, to_holder: str | None) -> None:
        """Undo a claim whose session could not be restarted here."""
        with contextlib.suppress(SpatialTwinError):
            found = await self.store.get_record_revision(SESSIONS, session_id)
            if found is not None and found[0].get("holder") == self.server_id:
                back = {**found[0], "holder": to_holder}
                await self.store.replace_record(SESSIONS, session_id, back, found[1])

    async def end_session(self, descriptor_id: str, codes: list[str]) -> None:
        """The session ended: its descriptor and share codes go."""
        found = await self.store.get_record(SESSIONS, descriptor_id)
        if found is not None and found.get("holder") == self.server_id:
            await self.store.delete_record(SESSIONS, descriptor_id)
        for code in codes:
            await self.store.delete_record(SHARE_CODES, code)

    # --- share codes --------------------------------------------------------------------------

    async def create_share(self, code: str, session_id: str, expires_at_s: float) -> bool:
        """False when another server holds this code."""
        try:
            record = {
                "schema_version": SCHEMA_VERSION,
                "id": code,
                "session": session_id,
                "expires_at_s": expires_at_s,
            }
            await self.store.create_record(SHARE_CODES, code, record)
        except RecordExistsError:
            return False
        return True

    async def share(self, code: str) -> dict[str, Any] | None:
        record = await self.store.get_record(SHARE_CODES, code)
        if record is None or float(record.get("expires_at_s", 0.0)) <= time.time():
            return None
        return record

    # --- live builds --------------------------------------------------------------------------

    async def build(self, key: str) -> dict[str, Any] | None:
        return await self.store.get_record(LIVE_BUILDS, key)

    async def put_build(self, key: str, blob: str, size_bytes: int, garments: list[str]) -> None:
        now_s = time.time()
        record = {
            "schema_version": SCHEMA_VERSION,
            "id": key,
            "blob": blob,
            "bytes": size_bytes,
            "garments": garments,
            "created_at_s": now_s,
            "used_at_s": now_s,
        }
        with contextlib.suppress(RecordExistsError):  # another server stored the same build
            await self.store.create_record(LIVE_BUILDS, key, record)

    async def touch_build(self, record: dict[str, Any]) -> None:
        """Refresh `used_at_s` at most once an hour (the sweep keeps builds in use)."""
        if time.time() - float(record.get("used_at_s", 0.0)) < BUILD_TOUCH_S:
            return
        await self.store.put_record(LIVE_BUILDS, record["id"], {**record, "used_at_s": time.time()})

    # --- the sweep ----------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Delete what expired: share codes, descriptors whose holder is gone for longer than
        the resume window, heartbeats of servers gone for longer than that plus a minute,
        live builds unused for `build_keep_s`. Any server may run it."""
        now_s = time.time()
        removed = {"share_codes": 0, "sessions": 0, "servers": 0, "builds": 0}
        for record in await self.store.list_records(SHARE_CODES):
            if float(record.get("expires_at_s", 0.0)) <= now_s:
                removed["share_codes"] += await self.store.delete_record(SHARE_CODES, record["id"])
        servers = {r["id"]: r for r in await self.store.list_records(SERVERS)}
        for record in await self.store.list_records(SESSIONS):
            holder = servers.get(str(record.get("holder")))
            if holder is not None and not self.is_stale(holder, now_s):
                continue
            if self.expired(holder, now_s):
                removed["sessions"] += await self.store.delete_record(SESSIONS, record["id"])
                for code in record.get("share_codes", []):
                    await self.store.delete_record(SHARE_CODES, code)
        for server_id, record in servers.items():
            age_s = now_s - float(record.get("heartbeat_at_s", 0.0))
            if server_id != self.server_id and age_s > self.resume_s + 60.0:
                removed["servers"] += await self.store.delete_record(SERVERS, server_id)
        for record in await self.store.list_records(LIVE_BUILDS):
            if now_s - float(record.get("used_at_s", 0.0)) > self.options.build_keep_s:
                removed["builds"] += await self.store.delete_record(LIVE_BUILDS, record["id"])
        return removed


# --- the holder's side: a relay to watchers on other servers ----------------------------------


def pack_result(packet: bytes, is_key: bool) -> dict[str, Any]:
    return {"type": "result", "data": base64.b64encode(packet).decode("ascii"), "key": is_key}


def unpack_result(message: dict[str, Any]) -> tuple[bytes, bool] | None:
    data = message.get("data")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True), bool(message.get("key"))
    except (binascii.Error, ValueError):
        return None


class RemoteRelay:
    """The holder's `Receiver` for every watcher of a session on other servers: what it is
    offered (from its own encoders, as a local watcher's) is published on the session's
    channel, in order, by one sender task. Packets pile up only when Redis is slow: past
    `RELAY_QUEUE` the result is dropped and the next one made a key frame."""

    def __init__(
        self,
        store: Store,
        session_id: str,
        request_key: Callable[[], None],
        options: FleetOptions,
    ) -> None:
        self.store = store
        self.channel = session_channel(session_id)
        self.watchers: dict[str, str] = {}  # watcher id → its server
        self.request_key = request_key
        self.options = options
        self.closed = False
        self.unheard_since: float | None = None  # published to nobody since
        self.published = 0
        self._outbox: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._awaiting_key = True
        self._task = asyncio.create_task(self._send(), name="mirror-relay")

    def offer_result(self, packet: bytes, is_key: bool) -> None:
        if self.closed:
            return
        if self._awaiting_key and not is_key:
            return
        if sum(1 for m in self._outbox if m["type"] == "result") >= RELAY_QUEUE:
            self._awaiting_key = True
            self.request_key()
            return
        self._awaiting_key = False
        self._queue(pack_result(packet, is_key))

    def send_message(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self._queue({"type": "message", "message": message})

    def end(self, close_code: int, close_reason: str, ended: str | None) -> None:
        if self.closed:
            return
        self._queue({"type": "ended", "code": close_code, "reason": close_reason, "ended": ended})
        self.closed = True

    def _queue(self, message: dict[str, Any]) -> None:
        self._outbox.append(message)
        self._wake.set()

    @property
    def unheard_s(self) -> float:
        return 0.0 if self.unheard_since is None else time.monotonic() - self.unheard_since

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                message = self._outbox.popleft()
                try:
                    heard = await self.store.publish(self.channel, message)
                except SpatialTwinError:
                    heard = 0
                self.published += 1
                if heard:
                    self.unheard_since = None
                elif self.unheard_since is None:
                    self.unheard_since = time.monotonic()
                if message["type"] == "ended":
                    return
            if self.closed:
                return

    async def close(self) -> None:
        """Stop after what is queued (an `ended` is still published), bounded."""
        self.closed = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), 1.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


# --- the watcher's side: a session held elsewhere ---------------------------------------------


@dataclass
class RemoteWatch:
    """A session held by another server, as watchers on this one see it: what a local
    `LiveSessionEntry` is to a watcher socket (`id`, `results_dropped`, `ended`)."""

    id: str
    holder: str
    store: Store
    control: Callable[[str, dict[str, Any]], Any]  # (server, message) → publish coroutine
    receivers: dict[str, Receiver] = field(default_factory=dict)  # watcher id → socket
    welcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    results_dropped: int = 0
    ended: str | None = None
    last_heard: float = field(default_factory=time.monotonic)
    key_asked_at: float = 0.0
    reader: asyncio.Task[None] | None = None
    relayed: int = 0

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read(), name="mirror-remote-watch")

    async def _read(self) -> None:
        async for message in self.store.subscribe(session_channel(self.id)):
            self.last_heard = time.monotonic()
            kind = message.get("type")
            if kind == "result":
                unpacked = unpack_result(message)
                if unpacked is None:
                    continue
                self.relayed += 1
                for receiver in list(self.receivers.values()):
                    receiver.offer_result(*unpacked)
            elif kind == "message" and isinstance(message.get("message"), dict):
                for receiver in list(self.receivers.values()):
                    receiver.send_message(message["message"])
            elif kind == "ended":
                code = int(message.get("code") or 1000)
                ended = message.get("ended")
                self.finish(code, str(message.get("reason") or "session_ended"), ended)
                return

    def finish(self, close_code: int, close_reason: str, ended: Any) -> None:
        """Close every watcher here (the session ended or moved)."""
        self.ended = str(ended or close_reason)
        receivers, self.receivers = list(self.receivers.values()), {}
        for receiver in receivers:
            receiver.end(close_code, close_reason, ended if isinstance(ended, str) else None)

    def ask_key(self, server_id: str, force: bool = False) -> None:
        """A watcher here lost a result (or waits for its first key frame): ask the holder,
        at most every `KEY_REQUEST_EVERY_S`; the request lists the watchers, so a holder
        that dropped its relay joins them again."""
        now = time.monotonic()
        if not force and now - self.key_asked_at < KEY_REQUEST_EVERY_S:
            return
        self.key_asked_at = now
        message = {
            "type": "key",
            "session": self.id,
            "watchers": sorted(self.receivers),
            "reply_to": server_id,
        }
        task = asyncio.ensure_future(self.control(self.holder, message))
        task.add_done_callback(_quiet)

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
            self.reader = None


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("mirror control message not sent", extra={"fields": {"error": "store"}})


# --- one server's part in the fleet -----------------------------------------------------------


def _refusal(reply: dict[str, Any]) -> SpatialTwinError:
    error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    status = error.get("status")
    return SpatialTwinError(
        str(error.get("code") or "session_not_found"),
        str(error.get("message") or "the session's server refused"),
        error.get("detail"),
        status=status if isinstance(status, int) and 400 <= status < 600 else 404,
    )


def _error_json(exc: SpatialTwinError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "detail": exc.detail, "status": exc.status}


class FleetLink:
    """This server's part in the fleet's sessions: its heartbeat, its control channel (what
    other servers ask of the sessions it holds, and their answers to what it asked), the
    sessions it watches for local watchers (`remotes`), the sweep. Made by `MirrorService`
    when `MirrorOptions.fleet` is set; all on the service's event loop."""

    def __init__(self, service: Any, options: FleetOptions) -> None:
        self.service = service
        self.store: Store = service.services.store
        self.server_id = new_server_id()
        self.options = options
        self.registry = SessionRegistry(
            self.store, self.server_id, options, service.options.resume_s
        )
        self.remotes: dict[str, RemoteWatch] = {}
        self.taking: set[str] = set()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.closing = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(SpatialTwinError):
            await self.registry.heartbeat(0)
        self._tasks = [
            asyncio.create_task(self._beat(), name="mirror-fleet-beat"),
            asyncio.create_task(self._listen(), name="mirror-fleet-control"),
            asyncio.create_task(self._sweep(), name="mirror-fleet-sweep"),
        ]
        log.info("mirror fleet joined", extra={"fields": {"server": self.server_id}})

    async def mark_closing(self) -> None:
        """Tell the fleet this server is going (its sessions may be taken over at once)."""
        self.closing = True
        with contextlib.suppress(SpatialTwinError):
            await self.registry.heartbeat(0, closing=True)

    async def close(self) -> None:
        await self.mark_closing()
        for remote in list(self.remotes.values()):
            remote.finish(1001, "server_shutdown", "server_shutdown")
            await remote.stop()
        self.remotes.clear()
        for task in (*self._tasks, *self._handlers):
            task.cancel()
        for task in (*self._tasks, *self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            if self.closing:
                continue
            try:
                await self.registry.heartbeat(len(self.service.sessions))
            except SpatialTwinError as exc:
                log.warning("mirror heartbeat missed", extra={"fields": {"code": exc.code}})
            try:
                await self.service.keep_relays()
                await self._check_remotes()
            except SpatialTwinError as exc:
                log.info("remote watch check failed", extra={"fields": {"code": exc.code}})

    async def _check_remotes(self) -> None:
        """Watchers of a session whose holder went silent and is gone: closed 1001, so they
        come back through a server that holds it again."""
        now = time.monotonic()
        for session_id, remote in list(self.remotes.items()):
            if not remote.receivers or remote.ended:
                await self._drop_remote(session_id)
                continue
            if now - remote.last_heard < self.options.remote_silence_s:
                continue
            server = await self.registry.server(remote.holder)
            if self.registry.is_stale(server):
                remote.finish(1001, "session_moved", None)
                await self._drop_remote(session_id)

    async def _drop_remote(self, session_id: str) -> None:
        remote = self.remotes.pop(session_id, None)
        if remote is not None:
            await remote.stop()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_s)
            try:
                removed = await self.registry.sweep()
            except SpatialTwinError as exc:
                log.info("mirror sweep failed", extra={"fields": {"code": exc.code}})
                continue
            if any(removed.values()):
                log.info("mirror records swept", extra={"fields": removed})

    # --- the control channel ------------------------------------------------------------------

    async def send(self, server_id: str, message: dict[str, Any]) -> int:
        """Publish on a server's control channel; how many listened (0: it is gone)."""
        return await self.store.publish(control_channel(server_id), message)

    async def _reply(self, server_id: Any, message: dict[str, Any]) -> None:
        if isinstance(server_id, str) and server_id:
            with contextlib.suppress(SpatialTwinError):
                await self.send(server_id, message)

    async def _listen(self) -> None:
        async for message in self.store.subscribe(control_channel(self.server_id)):
            if not isinstance(message.get("type"), str):
                continue
            task = asyncio.create_task(self._handle(message), name="mirror-fleet-handle")
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        request = message.get("request")
        if kind in ("joined", "join_refused", "released", "release_refused"):
            waiting = self._replies.pop(str(request), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            return
        if kind == "session_gone":
            remote = self.remotes.get(str(message.get("session")))
            if remote is not None:
                remote.finish(1001, "session_moved", None)
                await self._drop_remote(remote.id)
            return
        session_id = str(message.get("session"))
        entry = self.service.sessions.get(session_id)
        reply_to = message.get("reply_to")
        try:
            if kind == "join":
                await self._on_join(entry, message)
            elif kind == "key":
                self._on_key(entry, message)
            elif kind == "leave" and entry is not None:
                self.service.leave_remote(entry, str(message.get("watcher")))
            elif kind == "release":
                await self._on_release(session_id, entry, message)
        except SpatialTwinError as exc:
            log.info("mirror control refused", extra={"fields": {"type": kind, "code": exc.code}})
            if kind in ("join", "key") and entry is None:
                await self._reply(reply_to, {"type": "session_gone", "session": session_id})

    async def _on_join(self, entry: Any, message: dict[str, Any]) -> None:
        watcher = str(message.get("watcher"))
        reply_to = message.get("reply_to")
        if entry is None or entry.ended:
            error = SpatialTwinError("session_not_found", "the session has ended", status=404)
            await self._reply(
                reply_to, {"type": "join_refused", "request": watcher, "error": _error_json(error)}
            )
            return
        try:
            self.service.join_remote(entry, watcher, str(reply_to))
        except SpatialTwinError as exc:
            await self._reply(
                reply_to, {"type": "join_refused", "request": watcher, "error": _error_json(exc)}
            )
            return
        welcome = self.service.welcome(entry, watcher=True)
        await self._reply(reply_to, {"type": "joined", "request": watcher, "welcome": welcome})

    def _on_key(self, entry: Any, message: dict[str, Any]) -> None:
        if entry is None or entry.ended:
            raise SpatialTwinError("session_not_found", "no such session here", status=404)
        watchers = message.get("watchers")
        reply_to = str(message.get("reply_to"))
        for watcher in watchers if isinstance(watchers, list) else []:
            with contextlib.suppress(SpatialTwinError):  # over the limit: not joined again
                self.service.join_remote(entry, str(watcher), reply_to)
        self.service.relay_key(entry)

    async def _on_release(self, session_id: str, entry: Any, message: dict[str, Any]) -> None:
        """Another server has the session's mirror asking to resume: let go of a detached
        session (it ends here as `moved`), refuse an attached one."""
        request, reply_to = message.get("request"), message.get("reply_to")
        if session_id in self.taking or (entry is not None and entry.mirror is not None):
            error = SpatialTwinError(
                "session_attached", "another socket holds this session", status=409
            )
            await self._reply(
                reply_to,
                {"type": "release_refused", "request": request, "error": _error_json(error)},
            )
            return
        if entry is not None:
            await self.service.end(entry, "moved", 1001, "session_moved")
        await self._reply(reply_to, {"type": "released", "request": request})

    def _expect(self, request: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request] = future
        return future

    # --- resuming a session another server held -----------------------------------------------

    async def release(self, holder: str | None, session_id: str) -> tuple[str, dict | None]:
        """Ask the holder to let go: ("gone" | "released" | "attached" | "busy", its
        heartbeat record as first read)."""
        if holder is None:
            return "gone", None
        server = await self.registry.server(holder)
        if server is None or server.get("closing"):
            return "gone", server
        request = secrets.token_hex(8)
        future = self._expect(request)
        try:
            message = {
                "type": "release",
                "session": session_id,
                "request": request,
                "reply_to": self.server_id,
            }
            if not await self.send(holder, message):
                return "gone", server  # nobody listens there: the holder is dead
            try:
                reply = await asyncio.wait_for(future, self.options.release_wait_s)
            except TimeoutError:
                again = await self.registry.server(holder)
                moved = again is not None and again.get("beat") != server.get("beat")
                if again is None or self.registry.is_stale(again) or not moved:
                    return "gone", server
                return "busy", server
        finally:
            self._replies.pop(request, None)
        return ("released" if reply["type"] == "released" else "attached"), server

    # --- watching a session another server holds ----------------------------------------------

    async def watch(
        self, session_id: str, receiver: Receiver
    ) -> tuple[RemoteWatch, str, dict[str, Any]]:
        """Join `receiver` as a watcher of a session held elsewhere: (the remote session, the
        watcher's id, its welcome from the holder)."""
        descriptor = await self.registry.session(session_id)
        if descriptor is None:
            raise SpatialTwinError("session_not_found", "the shared session has ended", status=404)
        holder = str(descriptor.get("holder"))
        if holder == self.server_id:
            raise SpatialTwinError("session_not_found", "the shared session has ended", status=404)
        if self.registry.is_stale(await self.registry.server(holder)):
            raise SpatialTwinError(
                "session_moving", "the session is moving to another server", status=503
            )
        remote = self.remotes.get(session_id)
        if remote is None or remote.holder != holder or remote.ended:
            if remote is not None:
                await self._drop_remote(session_id)
            remote = RemoteWatch(session_id, holder, self.store, self.send)
            remote.start()
            self.remotes[session_id] = remote
            await asyncio.sleep(0)  # the reader subscribes before the holder is asked
        watcher = f"w_{secrets.token_hex(8)}"
        future = self._expect(watcher)
        try:
            message = {
                "type": "join",
                "session": session_id,
                "watcher": watcher,
                "reply_to": self.server_id,
            }
            if not await self.send(holder, message):
                raise SpatialTwinError(
                    "session_moving", "the session is moving to another server", status=503
                )
            try:
                reply = await asyncio.wait_for(future, self.options.join_wait_s)
            except TimeoutError as exc:
                raise SpatialTwinError(
                    "session_moving", "the session's server did not answer", status=503
                ) from exc
        finally:
            self._replies.pop(watcher, None)  # a remote left without receivers: the check drops it
        if reply["type"] != "joined" or not isinstance(reply.get("welcome"), dict):
            raise _refusal(reply)
        remote.receivers[watcher] = receiver
        remote.ask_key(self.server_id, force=True)  # a key frame after it can be received
        return remote, watcher, reply["welcome"]

    def unwatch(self, remote: RemoteWatch, watcher: str) -> None:
        if remote.receivers.pop(watcher, None) is None:
            return
        message = {"type": "leave", "session": remote.id, "watcher": watcher}
        task = asyncio.ensure_future(self.send(remote.holder, message))
        task.add_done_callback(_quiet)
