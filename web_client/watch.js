// Watching a mirror session from a phone: the same twin and garments the mirror shows, from
// the share code the mirror gave (`/web/watch.html?code=K7Q2MX`), read-only and not mirrored.
//
// The watch socket (`/api/v1/mirror/watch?code=…`, docs/mirror-protocol.md §6) gets the same
// welcome and result frames as the mirror; this page sends nothing but pings. When the session
// ends the page says so and stays.
//
// Tests read window.spatialTwinWatch: `drawn` (the view's log: frame ids drawn), `state`,
// `ended`.

import { API_ROOT, errorState } from './lib/api.js';
import { byIds } from './lib/dom.js';
import { MirrorClient, wsUrl } from './lib/mirror-client.js';
import { openMirrorView } from './lib/mirror-view.js';
import { MIRROR } from './lib/stage.js';

const VIEW_HEIGHT_M = 2.1; // a phone shows the twin scaled to fit, not at true scale
const FLOOR_PX = MIRROR.floorPx + 36; // the feet stay above the connection readout
const CODE_PATTERN = /^[A-Za-z0-9]{4,16}$/;

const dom = byIds({
  viewport: 'viewport',
  status: 'status',
  statusTitle: 'status-title',
  statusDetail: 'status-detail',
  disclosureText: 'disclosure-text',
  credit: 'credit',
  rate: 'readout-rate',
  readoutState: 'readout-state',
});

const state = {
  state: 'starting',
  ready: false,
  ended: null,
  error: null,
  session: null,
  twinId: null,
  garments: [],
  drawn: [],
  drawRateHz: 0,
};
window.spatialTwinWatch = state;

function showStatus(title, detail = '', tone = null) {
  dom.status.hidden = false;
  dom.status.classList.toggle('is-error', tone === 'error');
  dom.status.classList.toggle('is-ended', tone === 'ended');
  dom.statusTitle.textContent = title;
  dom.statusDetail.textContent = detail;
}

function fitPxPerMetre() {
  return Math.max(100, (window.innerHeight - FLOOR_PX) / VIEW_HEIGHT_M);
}

async function main() {
  const code = new URLSearchParams(window.location.search).get('code') ?? '';
  if (!CODE_PATTERN.test(code)) {
    state.error = { status: null, code: 'bad_share_code', message: 'This link has no valid share code.', detail: code };
    showStatus('Nothing to watch', state.error.message, 'error');
    return;
  }
  const view = await openMirrorView(dom.viewport, {
    pxPerMetre: fitPxPerMetre(),
    floorPx: FLOOR_PX,
    canvasLabel: 'The digital twin in the mirror session',
  });
  window.addEventListener('resize', () => view.setPxPerMetre(fitPxPerMetre()));
  state.drawn = view.log;
  let twinLoaded = null;
  let garmentsShown = null;

  async function showGarments(garments) {
    const urls = garments.map((g) => g.mesh_url).join(' ');
    if (urls !== garmentsShown) {
      await view.setGarments(garments);
      garmentsShown = urls;
    } else {
      view.resetStreams();
    }
    state.garments = garments.map(({ stream, garment, name }) => ({ stream, garment, name }));
  }

  const client = new MirrorClient(wsUrl(`${API_ROOT}/mirror/watch?code=${encodeURIComponent(code)}`), {
    hello: null,
    onState: (name, detail) => {
      state.state = name;
      dom.readoutState.dataset.state = name;
      dom.readoutState.textContent = name;
      if (name === 'reconnecting') showStatus('Reconnecting…');
      if (name === 'ended') {
        state.ended = detail?.ended ?? 'ended';
        showStatus('Session ended', state.ended === 'not_found'
          ? 'This share code has expired or the session is over.'
          : 'The mirror session you were watching has ended.', 'ended');
      }
      if (name === 'failed') {
        state.error = { status: null, code: detail.name, message: detail.reason || `closed (${detail.code})`, detail };
        showStatus('Cannot watch this session', state.error.message, 'error');
      }
    },
    onWelcome: async (welcome) => {
      state.session = welcome.session;
      state.twinId = welcome.twin?.id ?? null;
      dom.disclosureText.textContent = welcome.twin?.disclosure || 'A 3D replica of a real model, used with consent.';
      dom.credit.textContent = welcome.twin?.credit ? `Model: ${welcome.twin.credit}` : '';
      try {
        if (welcome.twin.body_url !== twinLoaded) {
          await view.setTwin(welcome.twin.body_url, welcome.joints);
          twinLoaded = welcome.twin.body_url;
        }
        await showGarments(welcome.garments);
        dom.status.hidden = true;
      } catch (err) {
        state.error = errorState(err);
        showStatus('The twin could not be shown', state.error.message, 'error');
      }
    },
    onResult: (result) => view.push(result),
    onMessage: (message) => {
      if (message.type === 'switched') showGarments(message.garments).catch(() => {});
      if (message.type === 'ended') state.ended = message.reason;
    },
  });
  view.onDrawn = () => {
    if (twinLoaded) state.ready = true;
  };
  setInterval(() => {
    state.drawRateHz = view.drawRateHz();
    dom.rate.textContent = `${state.drawRateHz} fps`;
  }, 500);
  client.connect();
}

main().catch((err) => {
  state.error = errorState(err);
  showStatus('Cannot watch this session', state.error.message, 'error');
});
