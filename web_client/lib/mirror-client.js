// Client side of the mirror protocol (docs/mirror-protocol.md, version 1): the binary camera
// frames a mirror sends (STMF), the result frames it receives (STMR), and one WebSocket session
// that says hello, keeps itself alive, and after a network drop reconnects and resumes.
//
//   const client = new MirrorClient(wsUrl('/api/v1/mirror/sessions'), {
//     hello: { token, look },                       // version and input are filled in
//     onWelcome: (welcome, { resumed }) => load(welcome),
//     onResult: (result) => view.push(result),       // parseResultFrame's object
//     onMessage: (message) => …,                     // every other text message
//     onState: (state, detail) => show(state),       // connecting | preparing | live | reconnecting | ended | failed
//   });
//   client.connect();
//   client.sendFrame(jpegBytes, captureTMs);         // STMF kind 1; false if the socket cannot take it
//
// A watcher (`/api/v1/mirror/watch?code=…`) is the same client with `hello: null`: the server
// speaks first and the watcher sends nothing but pings and `bye`.
//
// All numbers little-endian; times in milliseconds on this page's own clock (performance.now(),
// echoed back by the server and never used by it for timing); positions in metres; rotations
// as quaternions [x, y, z, w] in `welcome.joints` order.

export const PROTOCOL_VERSION = 1;
export const FRAME_MAGIC = 'STMF';
export const RESULT_MAGIC = 'STMR';
export const FRAME_HEADER_BYTES = 24;
export const RESULT_HEADER_BYTES = 40;
export const FRAME_KIND = Object.freeze({ image: 1, landmarks: 2 });
export const RESULT_FLAG_TRACKED = 1;
export const RESULT_FLAG_RATE_LIMITED = 2;
export const MAX_JOINTS = 256;
export const MAX_STREAMS = 16;

// What each close code means, and whether a client should come back (docs §5). `resume`: take
// the session up again if it is still held; `later`: try again after a pause (another socket of
// ours may still hold the session or count against the token for a few seconds).
export const CLOSE_CODES = Object.freeze({
  1000: { name: 'ended', retry: false },
  1001: { name: 'server_shutdown', retry: 'resume' },
  1005: { name: 'no_status', retry: 'resume' },
  1006: { name: 'network', retry: 'resume' },
  1009: { name: 'message_too_big', retry: false },
  1011: { name: 'internal_error', retry: 'resume' },
  4400: { name: 'bad_message', retry: false },
  4401: { name: 'unauthorised', retry: false },
  4403: { name: 'license_refused', retry: false },
  4404: { name: 'not_found', retry: false },
  4406: { name: 'version_not_supported', retry: false },
  4408: { name: 'timeout', retry: 'resume' },
  4409: { name: 'already_attached', retry: 'later' },
  4429: { name: 'too_many_sessions', retry: 'later' },
  4460: { name: 'slow_reader', retry: 'resume' },
});

// Reconnect back-off (ms): doubling from the first, capped; a session is held 30 s after a drop.
export const RECONNECT_DELAYS_MS = Object.freeze([250, 500, 1000, 2000, 4000, 8000]);
// A frame sent longer ago than this without a result for it (or a later one) is taken as lost.
export const FRAME_LOST_AFTER_MS = 2000;
// After `bye`, how long the server has to close the socket before the client does.
export const BYE_CLOSE_TIMEOUT_MS = 2000;
// Sending stops while more than this is still queued in the socket (a slow uplink).
export const MAX_BUFFERED_BYTES = 1 << 20;

export class MirrorProtocolError extends Error {
  constructor(code, message, detail = null) {
    super(message);
    this.name = 'MirrorProtocolError';
    this.code = code;
    this.detail = detail;
  }
}

const bad = (message, detail = null) => new MirrorProtocolError('bad_result_frame', message, detail);

function magicOf(bytes) {
  return String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected bytes (ArrayBuffer or a typed array)');
}

// One camera frame message (STMF): the 24-byte header, then the payload (an encoded JPEG, WebP
// or PNG for kind 1; the 1,196-byte landmark block for kind 2).
export function buildCameraFrame({ frameId, captureTMs, payload, kind = FRAME_KIND.image }) {
  if (!Number.isInteger(frameId) || frameId < 0 || frameId > 0xffffffff) {
    throw new RangeError(`frame_id must be a uint32, not ${frameId}`);
  }
  if (!Number.isFinite(captureTMs)) throw new RangeError('capture_t_ms must be a finite number');
  if (kind !== FRAME_KIND.image && kind !== FRAME_KIND.landmarks) throw new RangeError(`unknown frame kind ${kind}`);
  const body = asBytes(payload);
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i += 1) out[i] = FRAME_MAGIC.charCodeAt(i);
  view.setUint8(4, PROTOCOL_VERSION);
  view.setUint8(5, kind);
  view.setUint16(6, 0, true);
  view.setUint32(8, frameId, true);
  view.setFloat64(12, captureTMs, true);
  view.setUint32(20, body.byteLength, true);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

// One result frame (STMR), checked end to end: magic and version, the joint count against
// `expectedJoints` (welcome.joints.length) when given, finite pose numbers, every length inside
// the message and nothing left over. Returns
//   {frameId, captureTMs, flags, tracked, rateLimited, rootM: [x, y, z],
//    rotations: Float32Array(4 × joints), info: {timings_ms, quality, …}, streams: [Uint8Array]}
// where each stream is one STVS vertex-stream frame (a view into `data`, not a copy).
export function parseResultFrame(data, expectedJoints = null) {
  const bytes = asBytes(data);
  if (bytes.byteLength < RESULT_HEADER_BYTES) throw bad('result frame shorter than its header', { bytes: bytes.byteLength });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = magicOf(bytes);
  const version = view.getUint8(4);
  if (magic !== RESULT_MAGIC || version !== PROTOCOL_VERSION) {
    throw bad('not a version-1 mirror result frame', { magic, version });
  }
  const flags = view.getUint8(5);
  const jointCount = view.getUint16(6, true);
  const frameId = view.getUint32(8, true);
  const captureTMs = view.getFloat64(12, true);
  const jsonBytes = view.getUint32(20, true);
  const streamCount = view.getUint16(24, true);
  if (jointCount > MAX_JOINTS || (expectedJoints !== null && jointCount !== expectedJoints)) {
    throw bad('joint count differs from the welcome', { jointCount, expected: expectedJoints });
  }
  if (streamCount > MAX_STREAMS) throw bad('too many garment streams', { streamCount });
  const rootM = [view.getFloat32(28, true), view.getFloat32(32, true), view.getFloat32(36, true)];
  if (!rootM.every(Number.isFinite)) throw bad('root translation must be finite');
  let offset = RESULT_HEADER_BYTES;
  if (offset + 16 * jointCount + jsonBytes > bytes.byteLength) {
    throw bad('rotations or JSON run past the end of the frame', { jointCount, jsonBytes, bytes: bytes.byteLength });
  }
  const rotations = new Float32Array(4 * jointCount);
  for (let i = 0; i < 4 * jointCount; i += 1) rotations[i] = view.getFloat32(offset + 4 * i, true);
  if (!rotations.every(Number.isFinite)) throw bad('joint rotations must be finite');
  offset += 16 * jointCount;
  let info = {};
  if (jsonBytes > 0) {
    try {
      info = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(offset, offset + jsonBytes)));
    } catch (err) {
      throw bad('result JSON is not UTF-8 JSON', { error: String(err) });
    }
    if (info === null || typeof info !== 'object' || Array.isArray(info)) throw bad('result JSON must be an object');
  }
  offset += jsonBytes;
  const streams = [];
  for (let s = 0; s < streamCount; s += 1) {
    if (offset + 4 > bytes.byteLength) throw bad('stream length runs past the end of the frame', { stream: s });
    const length = view.getUint32(offset, true);
    offset += 4;
    if (offset + length > bytes.byteLength) throw bad('stream runs past the end of the frame', { stream: s, length });
    streams.push(bytes.subarray(offset, offset + length));
    offset += length;
  }
  if (offset !== bytes.byteLength) throw bad('bytes left over after the last stream', { extra: bytes.byteLength - offset });
  return {
    frameId,
    captureTMs,
    flags,
    tracked: (flags & RESULT_FLAG_TRACKED) !== 0,
    rateLimited: (flags & RESULT_FLAG_RATE_LIMITED) !== 0,
    rootM,
    rotations,
    info,
    streams,
  };
}

// ws:// or wss:// for a path on this page's own server.
export function wsUrl(path, base = window.location.href) {
  const url = new URL(path, base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

const now = () => performance.now();

// One mirror (or watcher) session over a WebSocket, kept alive across network drops.
//
// Options: `hello` (the mirror's hello fields, without `type`/`version`/`resume`; null for a
// watcher), `onWelcome(welcome, {resumed})`, `onResult(result)`, `onMessage(message)`,
// `onState(state, detail)`, `onProblem(err)` (a bad frame from the server, an error message).
export class MirrorClient {
  constructor(url, { hello = null, onWelcome = () => {}, onResult = () => {}, onMessage = () => {}, onState = () => {}, onProblem = () => {} } = {}) {
    this.url = url;
    this.hello = hello;
    this.handlers = { onWelcome, onResult, onMessage, onState, onProblem };
    this.socket = null;
    this.state = 'idle';
    this.welcome = null; // the last welcome (or switched garments folded in)
    this.session = null; // {session, key} while a session is held for resuming
    this.nextFrameId = 0; // uint32 frame ids increase across reconnects
    this.sent = new Map(); // frame_id -> performance.now() when sent, until answered or lost
    this.lastResultFrameId = -1;
    this.attempt = 0; // reconnect attempts since the last welcome
    this.closedByUs = false;
    this.lastHeardMs = 0;
    this.rttMs = null; // from ping/pong
    this.closeInfo = null; // {code, reason, name} of the last close
    this.endedReason = null; // the reason of the server's `ended` message, once it came
    this.timers = { heartbeat: null, reconnect: null };
    this.counts = { results: 0, badResults: 0, framesSent: 0, framesLost: 0, reconnects: 0, resumes: 0 };
  }

  get isWatcher() {
    return this.hello === null;
  }

  get isLive() {
    return this.state === 'live' && this.socket?.readyState === WebSocket.OPEN;
  }

  setState(state, detail = null) {
    this.state = state;
    this.handlers.onState(state, detail);
  }

  connect() {
    this.closedByUs = false;
    clearTimeout(this.timers.reconnect);
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.attempt });
    const socket = new WebSocket(this.url);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.addEventListener('open', () => {
      if (socket !== this.socket) return;
      this.lastHeardMs = now();
      if (!this.isWatcher) this.sendJson(this.helloMessage());
      this.startHeartbeat(5);
    });
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return;
      this.lastHeardMs = now();
      if (typeof event.data === 'string') this.onText(event.data);
      else this.onBinary(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (socket !== this.socket) return;
      this.onClose(event.code, event.reason);
    });
  }

  helloMessage() {
    const message = { type: 'hello', version: PROTOCOL_VERSION, input: 'frames', ...this.hello };
    if (this.session) message.resume = { session: this.session.session, key: this.session.key };
    return message;
  }

  onText(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.handlers.onProblem(new MirrorProtocolError('bad_message', 'the server sent text that is not JSON'));
      return;
    }
    if (!message || typeof message.type !== 'string') return;
    switch (message.type) {
      case 'welcome': {
        const resumed = this.session !== null && this.session.session === message.session;
        if (resumed) this.counts.resumes += 1;
        this.welcome = message;
        this.session = message.resume_key ? { session: message.session, key: message.resume_key } : null;
        this.attempt = 0;
        this.endedReason = null;
        this.sent.clear();
        this.lastResultFrameId = -1;
        this.startHeartbeat(message.heartbeat_s);
        this.setState('live', { resumed });
        this.handlers.onWelcome(message, { resumed });
        break;
      }
      case 'progress':
        if (this.state !== 'live') this.setState('preparing', message);
        this.handlers.onMessage(message);
        break;
      case 'switched':
        if (this.welcome) this.welcome = { ...this.welcome, garments: message.garments };
        this.handlers.onMessage(message);
        break;
      case 'pong':
        if (Number.isFinite(message.t_ms)) this.rttMs = now() - message.t_ms;
        this.handlers.onMessage(message);
        break;
      case 'ended':
        this.endedReason = message.reason ?? 'ended';
        this.handlers.onMessage(message);
        break;
      case 'error':
        this.handlers.onProblem(new MirrorProtocolError(message.error?.code ?? 'server_error', message.error?.message ?? 'the server reported an error', message.error?.detail ?? null));
        this.handlers.onMessage(message);
        break;
      default:
        this.handlers.onMessage(message);
    }
  }

  onBinary(buffer) {
    let result;
    try {
      result = parseResultFrame(buffer, this.welcome ? this.welcome.joints.length : null);
    } catch (err) {
      this.counts.badResults += 1;
      this.handlers.onProblem(err);
      return;
    }
    this.counts.results += 1;
    // A result answers its frame and every earlier one (the server keeps only the latest).
    if (result.frameId > this.lastResultFrameId) this.lastResultFrameId = result.frameId;
    for (const id of this.sent.keys()) if (id <= result.frameId) this.sent.delete(id);
    this.handlers.onResult(result);
  }

  // Frames sent and not yet answered (a frame unanswered for FRAME_LOST_AFTER_MS is lost: the
  // server dropped it, latest wins).
  framesInFlight() {
    const t = now();
    for (const [id, sentAt] of this.sent) {
      if (t - sentAt > FRAME_LOST_AFTER_MS) {
        this.sent.delete(id);
        this.counts.framesLost += 1;
      }
    }
    return this.sent.size;
  }

  // Send one camera frame (STMF kind 1) captured at `captureTMs`; returns its frame id, or null
  // when the session is not live, the socket is still busy with earlier bytes, or the frame is
  // larger than the welcome allows.
  sendFrame(payload, captureTMs, kind = FRAME_KIND.image) {
    if (!this.isLive || this.isWatcher) return null;
    if (this.socket.bufferedAmount > MAX_BUFFERED_BYTES) return null;
    const body = asBytes(payload);
    const limit = this.welcome?.limits?.max_frame_bytes;
    if (Number.isFinite(limit) && body.byteLength > limit) return null;
    const frameId = this.nextFrameId;
    this.nextFrameId = (this.nextFrameId + 1) >>> 0;
    this.socket.send(buildCameraFrame({ frameId, captureTMs, payload: body, kind }));
    this.sent.set(frameId, now());
    this.counts.framesSent += 1;
    return frameId;
  }

  sendJson(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  // Control messages (docs §2).
  switchGarments(choice) {
    // choice: {look: 'lk_…'} or {garments: ['gar_…', …]}
    return this.sendJson({ type: 'switch', ...choice });
  }

  requestKeyFrame() {
    return this.sendJson({ type: 'key_frame' });
  }

  requestShare() {
    return this.sendJson({ type: 'share' });
  }

  // A ping every heartbeat (it also measures the round trip); a server silent for three
  // heartbeats (it sends `status` every second) is taken as gone and the socket reopened.
  startHeartbeat(heartbeatS) {
    const periodMs = 1000 * (Number.isFinite(heartbeatS) && heartbeatS > 0 ? heartbeatS : 5);
    clearInterval(this.timers.heartbeat);
    this.timers.heartbeat = setInterval(() => {
      if (this.socket?.readyState !== WebSocket.OPEN) return;
      if (now() - this.lastHeardMs > 3 * periodMs) {
        this.socket.close(4000, 'server silent');
        this.onClose(1006, 'server silent');
        return;
      }
      this.sendJson({ type: 'ping', t_ms: now() });
    }, periodMs);
  }

  onClose(code, reason) {
    clearInterval(this.timers.heartbeat);
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState === WebSocket.OPEN) socket.close();
    const known = CLOSE_CODES[code] ?? { name: `close_${code}`, retry: code >= 4000 ? false : 'resume' };
    this.closeInfo = { code, reason, name: known.name };
    if (this.closedByUs) {
      this.setState('ended', { ...this.closeInfo, reason: 'bye' });
      return;
    }
    if (code === 1000 || this.endedReason === 'revoked' || this.endedReason === 'bye') {
      this.session = null;
      this.setState('ended', { ...this.closeInfo, ended: this.endedReason ?? null });
      return;
    }
    let retry = known.retry;
    // A resume that found its session gone (expired, 4404) or refused its key (4401): the mirror
    // starts a new session instead; a watcher's share code is gone with its session.
    if ((code === 4404 || code === 4401) && this.session && !this.isWatcher) {
      this.session = null;
      retry = 'fresh';
    }
    if (this.isWatcher && code === 4404) {
      this.setState('ended', { ...this.closeInfo, ended: 'not_found' });
      return;
    }
    if (!retry) {
      this.session = null;
      this.setState('failed', this.closeInfo);
      return;
    }
    const delays = RECONNECT_DELAYS_MS;
    const base = delays[Math.min(this.attempt, delays.length - 1)];
    const delayMs = retry === 'later' ? Math.max(base, 2000) : retry === 'fresh' ? 0 : base;
    this.attempt += 1;
    this.counts.reconnects += 1;
    this.setState('reconnecting', { ...this.closeInfo, attempt: this.attempt, delayMs });
    this.timers.reconnect = setTimeout(() => this.connect(), delayMs);
  }

  // Drop the connection as a network failure would (tests and tools): the client reconnects
  // and resumes.
  dropConnection() {
    if (this.socket) this.socket.close(4000, 'client dropped the connection');
    this.onClose(1006, 'dropped');
  }

  // End the session (`bye`); nothing reconnects. The server ends the session and closes the
  // socket (1000); closing it here at once could reach the server as a dropped connection, which
  // keeps the session waiting for a resume. A server that does not close within
  // BYE_CLOSE_TIMEOUT_MS is closed on.
  close() {
    this.closedByUs = true;
    clearTimeout(this.timers.reconnect);
    clearInterval(this.timers.heartbeat);
    const socket = this.socket;
    if (socket?.readyState === WebSocket.OPEN) {
      this.sendJson({ type: 'bye' });
      setTimeout(() => {
        if (socket.readyState === WebSocket.OPEN) socket.close(1000, 'bye');
      }, BYE_CLOSE_TIMEOUT_MS);
    } else if (socket) {
      socket.close();
    }
    this.session = null;
    this.setState('ended', { reason: 'bye' });
  }
}
