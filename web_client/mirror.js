// SpatialTwin smart mirror: the shopper's camera in, their digital twin wearing the look out,
// mirrored left–right at true scale on a calibrated display.
//
// The camera's frames go to the server as JPEG camera-frame messages (STMF, at most two
// waiting for their result), the server tracks and drapes, and each result frame (STMR) poses
// the twin and moves the garments (lib/mirror-view.js). Protocol: docs/mirror-protocol.md,
// client: lib/mirror-client.js.
//
// URL parameters (each remembered in this browser's localStorage, so a mirror is set up once):
//   ?token=stm_…        the mirror's device token (`spatialtwin mirror register`); dropped from
//                       the address bar once stored
//   ?look=lk_…          the look shown (a twin and its garments, draped at rest)
//   ?pxPerMetre=N       the display's CSS pixels per metre (else the calibration's, else a
//                       fit-to-screen guess, marked as not calibrated)
//   ?model=full|lite|heavy   the server's pose model
//
// Tests and tools read window.spatialTwinMirror (see `state` below).

import { API_ROOT, errorState, getJson, listFrom, setApiToken } from './lib/api.js';
import { byIds, el } from './lib/dom.js';
import { FIT_MODES, fitSwitch, legendElement } from './lib/fit-map.js';
import { MirrorClient, wsUrl } from './lib/mirror-client.js';
import { openMirrorView, percentile } from './lib/mirror-view.js';
import { MIRROR } from './lib/stage.js';

const STORAGE = {
  token: 'spatialtwin.mirror.token',
  look: 'spatialtwin.mirror.look',
  pxPerMetre: 'spatialtwin.mirror.pxPerMetre',
};
const MAX_FRAMES_IN_FLIGHT = 2; // camera frames sent (or being encoded) without their result yet
const CAPTURE_LONG_SIDE_PX = 640; // frames are scaled down to this before JPEG encoding
const JPEG_QUALITY = 0.8;
const UNCALIBRATED_VIEW_HEIGHT_M = 2.1; // an uncalibrated display shows this much height
const SENT_LOG_LIMIT = 4000;
const TOKEN_PATTERN = /^stm_[A-Za-z0-9_-]{20,80}$/;
const ID_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

const dom = byIds({
  video: 'camera',
  viewport: 'viewport',
  status: 'status',
  statusTitle: 'status-title',
  statusDetail: 'status-detail',
  progress: 'status-progress',
  progressBar: 'status-progress-bar',
  tokenForm: 'token-form',
  tokenInput: 'token-input',
  lookInput: 'look-input',
  restart: 'restart',
  disclosureText: 'disclosure-text',
  credit: 'credit',
  latency: 'readout-latency',
  rate: 'readout-rate',
  scale: 'readout-scale',
  readoutState: 'readout-state',
  controls: 'controls',
  wearing: 'wearing',
  garmentSelect: 'garment-select',
  fitMap: 'fit-map',
  share: 'share',
  shareCode: 'share-code',
  calibrate: 'calibrate',
  finish: 'finish',
  calibration: 'calibration',
  ruler: 'ruler',
  rulerLabel: 'calibration-length-label',
  pxInput: 'px-per-metre',
  pxValue: 'px-per-metre-value',
  widthInput: 'screen-width-cm',
  calibrationState: 'calibration-state',
  calibrationReset: 'calibration-reset',
});

// ---------------------------------------------------------------------------------------------
// State for tests and tools. `drawn` is the view's log of drawn results ({frameId, captureTMs,
// drawnTMs, latencyMs, tracked, kneeDeg: [left, right]}), `sent` the camera frames sent
// ({frameId, captureTMs, mediaTimeS, bytes}); `latency` p50/p95 (ms) of capture-to-draw.

const state = {
  state: 'starting',
  ready: false, // the twin is on screen and the first result has been drawn
  error: null,
  ended: null,
  session: null,
  twinId: null,
  lookId: null,
  garments: [],
  pxPerMetre: null,
  calibrated: false,
  camera: null, // {width, height, frameRateHz}
  sent: [],
  drawn: [],
  latency: { p50Ms: null, p95Ms: null, samples: 0 },
  drawRateHz: 0,
  server: null, // the last `status` message
  share: null, // {code, url, expires_s}
  counts: null,
  fitMode: 'garment',
  fitMap: null, // {mode, loaded, transfer: {garments, matched, medianDistanceMm, p95DistanceMm}}
  debug: null,
};
window.spatialTwinMirror = state;

function showStatus(title, detail = '', { tone = null, progress = null } = {}) {
  dom.status.hidden = false;
  dom.status.classList.toggle('is-error', tone === 'error');
  dom.status.classList.toggle('is-ended', tone === 'ended');
  dom.statusTitle.textContent = title;
  dom.statusDetail.textContent = detail;
  dom.progress.hidden = progress === null;
  if (progress !== null) dom.progressBar.style.width = `${Math.round(100 * Math.min(1, Math.max(0, progress)))}%`;
}

function hideStatus() {
  dom.status.hidden = true;
}

function fail(err, title = 'The mirror cannot start') {
  state.error = errorState(err);
  showStatus(title, state.error.message, { tone: 'error' });
}

// ---------------------------------------------------------------------------------------------
// Settings: from the URL once, then from this browser's storage.

function stored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage disabled: the URL has to carry everything
  }
}

function store(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // Not remembered; the page still works for this visit.
  }
}

function readSettings() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get('token');
  if (token !== null && TOKEN_PATTERN.test(token)) store(STORAGE.token, token);
  const look = params.get('look');
  if (look !== null && ID_PATTERN.test(look)) store(STORAGE.look, look);
  const px = Number(params.get('pxPerMetre'));
  if (params.has('pxPerMetre') && Number.isFinite(px) && px > 0) store(STORAGE.pxPerMetre, String(px));
  if (token !== null) {
    // The token is a secret: keep it out of the address bar and the history.
    const url = new URL(window.location.href);
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url);
  }
  const model = params.get('model') ?? 'full';
  setApiToken(stored(STORAGE.token)); // the device token reads garments as the mirror
  return {
    token: stored(STORAGE.token),
    look: stored(STORAGE.look),
    model: ['full', 'lite', 'heavy'].includes(model) ? model : 'full',
  };
}

function calibratedPxPerMetre() {
  const px = Number(stored(STORAGE.pxPerMetre));
  return Number.isFinite(px) && px > 0 ? px : null;
}

function fitToScreenPxPerMetre() {
  return Math.max(100, (window.innerHeight - MIRROR.floorPx) / UNCALIBRATED_VIEW_HEIGHT_M);
}

// ---------------------------------------------------------------------------------------------
// Camera: frames read from a <video> on each new camera frame, scaled, JPEG-encoded.

async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw Object.assign(new Error('This browser gives no camera access (a secure page is needed).'), { code: 'camera_unavailable' });
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { width: { ideal: 720 }, height: { ideal: 1280 }, frameRate: { ideal: 30 }, facingMode: 'user' },
    });
  } catch (err) {
    throw Object.assign(new Error(`The camera could not be opened: ${err.message || err.name}`), { code: 'camera_refused' });
  }
  dom.video.srcObject = stream;
  await dom.video.play();
  const settings = stream.getVideoTracks()[0]?.getSettings() ?? {};
  state.camera = { width: dom.video.videoWidth, height: dom.video.videoHeight, frameRateHz: settings.frameRate ?? null };
  return stream;
}

class FrameSender {
  constructor(video, client) {
    this.video = video;
    this.client = client;
    this.encoding = false;
    this.counts = { cameraFrames: 0, skipped: 0, encodeFailed: 0 };
    const scale = Math.min(1, CAPTURE_LONG_SIDE_PX / Math.max(video.videoWidth, video.videoHeight));
    this.width = Math.max(2, Math.round(video.videoWidth * scale));
    this.height = Math.max(2, Math.round(video.videoHeight * scale));
    this.canvas = typeof OffscreenCanvas === 'function'
      ? new OffscreenCanvas(this.width, this.height)
      : Object.assign(document.createElement('canvas'), { width: this.width, height: this.height });
    this.context = this.canvas.getContext('2d', { alpha: false, desynchronized: true });
  }

  start() {
    const onFrame = (nowMs, meta) => {
      this.video.requestVideoFrameCallback(onFrame);
      this.onCameraFrame(meta);
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  async encode() {
    if (this.canvas.convertToBlob) return this.canvas.convertToBlob({ type: 'image/jpeg', quality: JPEG_QUALITY });
    return new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
  }

  onCameraFrame(meta) {
    this.counts.cameraFrames += 1;
    const inFlight = this.client.framesInFlight() + (this.encoding ? 1 : 0);
    if (!this.client.isLive || this.encoding || inFlight >= MAX_FRAMES_IN_FLIGHT) {
      this.counts.skipped += 1;
      return;
    }
    // The camera's own capture time where the browser gives it (same clock as performance.now()).
    const t = performance.now();
    const captureTMs = Number.isFinite(meta.captureTime) && meta.captureTime <= t ? meta.captureTime : t;
    this.context.drawImage(this.video, 0, 0, this.width, this.height);
    this.encoding = true;
    this.encode()
      .then((blob) => blob.arrayBuffer())
      .then((bytes) => {
        const frameId = this.client.sendFrame(bytes, captureTMs);
        if (frameId === null) return;
        state.sent.push({
          frameId, captureTMs, mediaTimeS: meta.mediaTime ?? null, bytes: bytes.byteLength,
          encodedMs: performance.now() - captureTMs, // capture to the frame's bytes on the socket
        });
        if (state.sent.length > SENT_LOG_LIMIT) state.sent.splice(0, state.sent.length - SENT_LOG_LIMIT);
      })
      .catch(() => {
        this.counts.encodeFailed += 1;
      })
      .finally(() => {
        this.encoding = false;
      });
  }
}

// ---------------------------------------------------------------------------------------------
// Garments: what is worn, its size run, and the other garments to try.

async function sizeRun(garmentId) {
  const garment = await getJson(`${API_ROOT}/garments/${encodeURIComponent(garmentId)}`);
  if (!garment.sku) return { garment, sizes: [garment] };
  const run = await getJson(`${API_ROOT}/garments?sku=${encodeURIComponent(garment.sku)}`);
  const sizes = listFrom(run, 'garments');
  return { garment, sizes: sizes.length ? sizes : [garment] };
}

function renderWearing(garments, onChoose) {
  dom.wearing.replaceChildren();
  for (const worn of garments) {
    const item = el('li', { 'data-garment-id': worn.garment }, el('span', { text: worn.name ?? worn.garment }));
    const chips = el('span', { className: 'size-chips', role: 'group', 'aria-label': `Sizes of ${worn.name ?? worn.garment}` });
    item.append(chips);
    dom.wearing.append(item);
    sizeRun(worn.garment)
      .then(({ sizes }) => {
        for (const size of sizes) {
          const current = size.id === worn.garment;
          const chip = el('button', {
            type: 'button',
            className: 'size-chip',
            'aria-pressed': current ? 'true' : 'false',
            'data-garment-id': size.id,
            text: size.size_label ?? '?',
          });
          chip.disabled = current;
          chip.addEventListener('click', () => onChoose(garments.map((g) => (g.garment === worn.garment ? size.id : g.garment))));
          chips.append(chip);
        }
      })
      .catch(() => chips.remove());
  }
}

async function fillGarmentSelect(onChoose) {
  const garments = listFrom(await getJson(`${API_ROOT}/garments`), 'garments');
  dom.garmentSelect.replaceChildren(el('option', { value: '', text: 'Garments…' }));
  for (const g of garments) {
    if (g.status && g.status !== 'ready') continue;
    const label = [g.name ?? g.id, g.size_label].filter(Boolean).join(' · ');
    dom.garmentSelect.append(el('option', { value: g.id, text: label }));
  }
  dom.garmentSelect.addEventListener('change', () => {
    const id = dom.garmentSelect.value;
    dom.garmentSelect.value = '';
    if (id) onChoose([id]);
  });
}

// ---------------------------------------------------------------------------------------------
// Calibration: CSS pixels per metre of this display, measured once with a tape measure.

function setUpCalibration(view) {
  const rulerLengthM = (px) => ([0.5, 0.2, 0.1, 0.05].find((m) => m * px <= 520) ?? 0.05);
  const showRuler = (px) => {
    const lengthM = rulerLengthM(px);
    const label = `${Math.round(lengthM * 100)} cm`;
    dom.ruler.style.width = `${lengthM * px}px`;
    dom.ruler.firstElementChild.textContent = label;
    dom.rulerLabel.textContent = label;
    dom.pxValue.textContent = `${Math.round(px)} px/m`;
    dom.widthInput.value = ((window.innerWidth / px) * 100).toFixed(1);
  };
  let before = null;
  dom.calibrate.addEventListener('click', () => {
    before = state.pxPerMetre;
    dom.pxInput.value = String(Math.round(state.pxPerMetre));
    dom.calibrationState.textContent = state.calibrated ? 'This display is calibrated.' : 'Not calibrated yet: the twin is scaled to fit the screen.';
    showRuler(state.pxPerMetre);
    dom.calibration.showModal();
  });
  const preview = (px) => {
    if (!(Number.isFinite(px) && px > 0)) return;
    showRuler(px);
    view.setPxPerMetre(px);
  };
  dom.pxInput.addEventListener('input', () => preview(Number(dom.pxInput.value)));
  dom.widthInput.addEventListener('change', () => {
    const cm = Number(dom.widthInput.value);
    if (Number.isFinite(cm) && cm > 0) {
      const px = window.innerWidth / (cm / 100);
      dom.pxInput.value = String(Math.round(px));
      preview(px);
    }
  });
  dom.calibrationReset.addEventListener('click', () => {
    store(STORAGE.pxPerMetre, null);
    applyScale(view, fitToScreenPxPerMetre(), false);
    dom.calibration.close('reset');
  });
  dom.calibration.addEventListener('close', () => {
    if (dom.calibration.returnValue === 'save') {
      const px = Number(dom.pxInput.value);
      store(STORAGE.pxPerMetre, String(px));
      applyScale(view, px, true);
    } else if (dom.calibration.returnValue !== 'reset' && before !== null) {
      view.setPxPerMetre(before);
    }
  });
}

function applyScale(view, px, calibrated) {
  state.pxPerMetre = px;
  state.calibrated = calibrated;
  view.setPxPerMetre(px);
  dom.scale.textContent = calibrated ? `true scale · ${Math.round(px)} px/m` : 'not calibrated';
  dom.scale.dataset.calibrated = calibrated ? 'true' : 'false';
}

// ---------------------------------------------------------------------------------------------
// Fit map: the shared switch and legend (lib/fit-map.js). The live garments carry no fit values
// of their own; the first time Stretch or Ease is asked for, the look's GLB is fetched and its
// values (as draped at rest) carried onto the live meshes (MirrorView.loadFit).

function setUpFitMap(view, lookId, channel = 'mirror') {
  dom.fitMap.replaceChildren();
  dom.fitMap.hidden = !lookId;
  state.fitMap = lookId ? { mode: 'garment', loaded: false, transfer: null } : null;
  if (!lookId) return;
  let legend = el('div', { className: 'fit-legend', hidden: true });
  const note = el('p', { className: 'fit-note', text: 'Fit as draped at rest' });
  note.hidden = true;
  let loading = null;
  const choose = async (mode) => {
    if (mode !== 'garment' && !state.fitMap.loaded) {
      note.hidden = false;
      note.textContent = 'Loading the fit map…';
      loading ??= view.loadFit(`${API_ROOT}/looks/${encodeURIComponent(lookId)}/look.glb?channel=${channel}`);
      state.fitMap.transfer = await loading;
      state.fitMap.loaded = true;
    }
    const shown = view.setFitMode(mode);
    control.check(shown);
    const next = shown === 'garment' ? el('div', { className: 'fit-legend', hidden: true }) : legendElement(view.fit, shown);
    legend.replaceWith(next);
    legend = next;
    note.hidden = shown === 'garment';
    note.textContent = shown === mode ? 'Fit as draped at rest' : 'No fit map for these garments';
    state.fitMap.mode = shown;
    state.fitMode = shown;
  };
  const control = fitSwitch(FIT_MODES, 'garment', (mode) => {
    choose(mode).catch((err) => {
      state.fitMap.error = errorState(err);
      note.hidden = false;
      note.textContent = `The fit map could not be loaded: ${state.fitMap.error.message}`;
    });
  });
  dom.fitMap.append(control.element, legend, note);
}

// ---------------------------------------------------------------------------------------------

function renderReadout(view, client) {
  state.latency = view.latency();
  state.drawRateHz = view.drawRateHz();
  state.counts = { client: { ...client.counts }, view: { ...view.counts } };
  const { p50Ms, p95Ms } = state.latency;
  dom.latency.textContent = p50Ms === null ? '— ms' : `${Math.round(p50Ms)} ms · p95 ${Math.round(p95Ms)}`;
  dom.latency.title = 'Camera capture to screen, median and 95th percentile of the last results';
  dom.rate.textContent = `${state.drawRateHz} fps`;
  const dropped = state.server?.dropped;
  dom.rate.title = Number.isFinite(dropped) ? `server ${state.server.effective_rate_hz} results/s, ${dropped} frames dropped` : '';
}

function showTwinCredit(welcome) {
  const twin = welcome.twin ?? {};
  dom.disclosureText.textContent = twin.disclosure || 'A 3D replica of a real model, used with consent.';
  dom.credit.textContent = twin.credit ? `Model: ${twin.credit}` : '';
}

async function main() {
  const settings = readSettings();
  state.lookId = settings.look;
  if (!settings.token || !settings.look) {
    showStatus('Set up this mirror', 'Open this page once with ?token=stm_… (from `spatialtwin mirror register`) and ?look=lk_…, or enter them here.');
    dom.tokenInput.value = settings.token ?? '';
    dom.lookInput.value = settings.look ?? '';
    dom.tokenForm.hidden = false;
    dom.tokenForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const url = new URL(window.location.href);
      url.searchParams.set('token', dom.tokenInput.value.trim());
      url.searchParams.set('look', dom.lookInput.value.trim());
      window.location.assign(url);
    });
    state.state = 'setup';
    return;
  }

  const px = calibratedPxPerMetre();
  let view;
  try {
    view = await openMirrorView(dom.viewport, {
      pxPerMetre: px ?? fitToScreenPxPerMetre(),
      canvasLabel: 'Your digital twin, mirrored, at true scale',
      onStreamGap: () => client.requestKeyFrame(),
    });
  } catch (err) {
    fail({ message: `WebGL is not available in this browser: ${err.message}`, code: 'webgl_unavailable' });
    return;
  }
  applyScale(view, px ?? fitToScreenPxPerMetre(), px !== null);
  setUpCalibration(view);
  state.drawn = view.log;

  showStatus('Opening the camera…');
  try {
    await openCamera();
  } catch (err) {
    fail(err, 'No camera');
    return;
  }

  let twinLoaded = null; // body_url of the twin on screen
  let garmentsShown = null; // mesh URLs of the garments on screen
  const switchTo = (garmentIds) => {
    showStatus('Changing garments…', '', { progress: 0 });
    client.switchGarments({ garments: garmentIds });
  };

  async function showGarments(garments) {
    const urls = garments.map((g) => g.mesh_url).join(' ');
    if (urls !== garmentsShown) {
      await view.setGarments(garments);
      garmentsShown = urls;
      setUpFitMap(view, state.lookId);
    } else {
      view.resetStreams();
    }
    state.garments = garments.map(({ stream, garment, name, vertices }) => ({ stream, garment, name, vertices }));
    renderWearing(garments, switchTo);
  }

  const client = new MirrorClient(wsUrl(`${API_ROOT}/mirror/sessions`), {
    hello: { token: settings.token, look: settings.look, model: settings.model },
    onState: (name, detail) => {
      state.state = name;
      dom.readoutState.dataset.state = name;
      dom.readoutState.textContent = name;
      if (name === 'connecting') showStatus('Connecting…');
      if (name === 'reconnecting') showStatus('Reconnecting…', detail?.name ? `The connection dropped (${detail.name}).` : '');
      if (name === 'failed') {
        state.error = { status: null, code: detail.name, message: detail.reason || `The server closed the session (${detail.code}).`, detail };
        showStatus('The mirror stopped', state.error.message, { tone: 'error' });
      }
      if (name === 'ended') {
        state.ended = detail?.ended ?? detail?.reason ?? 'ended';
        showStatus('Session ended', state.ended === 'revoked' ? 'This mirror’s access was revoked.' : '', { tone: 'ended' });
        dom.restart.hidden = false;
      }
    },
    onWelcome: async (welcome, { resumed }) => {
      state.session = welcome.session;
      state.twinId = welcome.twin?.id ?? null;
      state.lookId = welcome.look ?? state.lookId;
      state.error = null;
      showTwinCredit(welcome);
      try {
        if (welcome.twin.body_url !== twinLoaded) {
          showStatus(resumed ? 'Resuming…' : 'Loading your twin…');
          await view.setTwin(welcome.twin.body_url, welcome.joints);
          twinLoaded = welcome.twin.body_url;
        }
        await showGarments(welcome.garments);
        hideStatus();
      } catch (err) {
        fail(err, 'The twin could not be shown');
      }
    },
    onResult: (result) => {
      view.push(result);
    },
    onMessage: (message) => {
      if (message.type === 'progress') {
        const title = message.stage === 'live_garments' ? 'Getting the garments ready…' : 'Preparing…';
        showStatus(title, message.message ?? '', { progress: message.fraction ?? 0 });
      } else if (message.type === 'switched') {
        showGarments(message.garments).then(hideStatus, (err) => fail(err, 'The garments could not be shown'));
      } else if (message.type === 'status') {
        state.server = message;
      } else if (message.type === 'share') {
        state.share = { code: message.code, url: message.url, expires_s: message.expires_s };
        const link = new URL(message.url, window.location.href).href;
        dom.shareCode.replaceChildren('Watch on your phone with the code', el('strong', { text: message.code }), link);
        dom.shareCode.hidden = false;
      } else if (message.type === 'ended') {
        state.ended = message.reason;
      }
    },
    onProblem: (err) => {
      state.lastProblem = { code: err.code, message: err.message };
    },
  });

  view.onDrawn = (entry) => {
    if (!state.ready && twinLoaded) {
      state.ready = true;
      hideStatus();
    }
  };
  dom.share.addEventListener('click', () => client.requestShare());
  dom.finish.addEventListener('click', () => client.close());
  dom.restart.addEventListener('click', () => window.location.reload());
  fillGarmentSelect(switchTo).catch(() => { dom.garmentSelect.disabled = true; });
  setInterval(() => renderReadout(view, client), 500);

  state.debug = {
    kneeFlexionDeg: (side) => view.twin?.kneeFlexionDeg(side) ?? null,
    jointWorldPosition: (name) => view.twin?.jointWorldPosition(name) ?? null,
    latencyPercentile: (p) => percentile(view.log.map((e) => e.latencyMs), p),
    hold: (held) => view.hold(held),
    setGarmentsVisible: (visible) => view.setGarmentsVisible(visible),
    restPose: () => {
      view.twin?.rest();
      view.render();
    },
    render: () => view.render(),
    dropConnection: () => client.dropConnection(),
    requestShare: () => client.requestShare(),
    switchGarments: (ids) => switchTo(ids),
    fitShares: (mode) => view.fit?.shares(mode) ?? null,
    clientCounts: () => ({ ...client.counts, inFlight: client.framesInFlight(), rttMs: client.rttMs }),
  };

  client.connect();
  new FrameSender(dom.video, client).start();
  window.addEventListener('pagehide', () => client.close());
}

main().catch((err) => fail(err));
