// SpatialTwin twin viewer.
//
// Lists the twins the server keeps, shows each one's owner, licence and "digital twin"
// disclosure next to the 3D view, and renders the twin's skinned body.glb at true scale
// (metres, +Y up, facing +Z, feet on y = 0) — or a look: the twin wearing draped garments in
// their own materials, with a fit-map switch (stretch, ease) and its legend.
//
// URL parameters:
//   ?twin=<id>                 twin to show (default: the first one listed)
//   ?channel=ecommerce|mirror|ar   licence channel the body is requested for (default ecommerce)
//   ?pose=<JSON>               passed through to body.glb ({"root":[x,y,z],"joints":{...}})
//   ?look=<id>                 show this look (its twin wearing its garments) instead
//   ?fit=garment|strain|ease   what the look's garments show first (default: the garment)
//   ?camera=ortho&pxPerMetre=N deterministic test mode: orthographic front view, N CSS pixels per
//                              metre, plain chroma-green background, no grid/shadows, so a test can
//                              measure true scale from pixels.
//
// Tests read `window.spatialTwinViewer` (see `viewerState` below).

import { API_ROOT, ApiError, errorState, getBytes, getJson } from './lib/api.js';
import { byIds, chip, el, facts, formatCentimetres as formatLength } from './lib/dom.js';
import { FIT_MODES, FitMap, fitMapControl } from './lib/fit-map.js';
import { STUDIO, TRUE_SCALE, gltfLoader, hexToRgb255, openStage } from './lib/stage.js';

const CHANNELS = ['ecommerce', 'mirror', 'ar'];

// ---------------------------------------------------------------------------------------------
// State exposed to tests and to anyone debugging in the console.

const viewerState = {
  ready: false, // true once the selected twin's body is loaded and drawn
  twinId: null,
  channel: 'ecommerce',
  cameraMode: 'perspective', // or 'ortho'
  pxPerMetre: null, // CSS pixels per metre in ortho mode, null in perspective mode
  boundingBox: null, // {min: [x,y,z], max: [x,y,z]} in metres, skinning applied
  canvasSizePx: null, // [width, height] in CSS pixels
  background: null, // [r, g, b] 0–255 of the plain background in ortho mode
  provenance: null, // asset.extras.spatialtwin of the loaded GLB
  lookId: null, // the look shown, when ?look= is given
  // For a look: {available, modes, mode, garments, texturedGarments, shares} (see fit-map.js)
  fitMap: null,
  error: null, // {status, code, message, detail} of the last failure, or null
};
window.spatialTwinViewer = viewerState;

// ---------------------------------------------------------------------------------------------
// Options from the URL.

// A bad URL parameter, shown like an API refusal (no HTTP status).
class ViewerOptionError extends ApiError {
  constructor(code, message, detail) {
    super(null, code, message, detail);
  }
}

function parseViewerOptions(search) {
  const params = new URLSearchParams(search);
  const camera = params.get('camera') ?? 'perspective';
  if (camera !== 'perspective' && camera !== 'ortho') {
    throw new ViewerOptionError('bad_camera', `camera must be "perspective" or "ortho", not "${camera}"`, camera);
  }
  let pxPerMetre = null;
  if (camera === 'ortho') {
    const raw = params.get('pxPerMetre') ?? '300';
    pxPerMetre = Number(raw);
    if (!Number.isFinite(pxPerMetre) || pxPerMetre <= 0) {
      throw new ViewerOptionError('bad_px_per_metre', 'pxPerMetre must be a positive number of pixels per metre', raw);
    }
  }
  const channel = params.get('channel') ?? 'ecommerce';
  if (!CHANNELS.includes(channel)) {
    throw new ViewerOptionError('bad_channel', `channel must be one of ${CHANNELS.join(', ')}`, channel);
  }
  const fit = params.get('fit') ?? 'garment';
  if (!FIT_MODES.includes(fit)) {
    throw new ViewerOptionError('bad_fit', `fit must be one of ${FIT_MODES.join(', ')}`, fit);
  }
  return { twinId: params.get('twin'), channel, pose: params.get('pose'), camera, pxPerMetre, lookId: params.get('look'), fit };
}

// ---------------------------------------------------------------------------------------------
// API access (lib/api.js): every non-2xx answer becomes an ApiError with the server's message.

async function fetchTwins() {
  const body = await getJson(`${API_ROOT}/twins`);
  return Array.isArray(body.twins) ? body.twins : [];
}

function bodyUrl(twinId, twin, channel, pose) {
  const base = twin?.links?.body ?? `${API_ROOT}/twins/${encodeURIComponent(twinId)}/body.glb`;
  const url = new URL(base, window.location.href);
  url.searchParams.set('channel', channel);
  if (pose) url.searchParams.set('pose', pose);
  return url.pathname + url.search;
}

function lookUrls(lookId, channel) {
  const id = encodeURIComponent(lookId);
  const query = `?channel=${encodeURIComponent(channel)}`;
  return { record: `${API_ROOT}/looks/${id}${query}`, glb: `${API_ROOT}/looks/${id}/look.glb${query}` };
}

// ---------------------------------------------------------------------------------------------
// Licence status, worded for a shopper or merchandiser rather than for the API.

function licenceStatus(licence, now = new Date()) {
  if (!licence) return { label: 'No licence', tone: 'bad' };
  if (licence.revoked) return { label: 'Revoked', tone: 'bad' };
  if (licence.valid_from && new Date(licence.valid_from) > now) return { label: 'Not yet valid', tone: 'warn' };
  if (licence.valid_until && new Date(licence.valid_until) < now) return { label: 'Expired', tone: 'bad' };
  return { label: 'Active', tone: 'ok' };
}

function formatDate(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

// ---------------------------------------------------------------------------------------------
// Page panels.

const dom = byIds({
  list: 'twin-list',
  details: 'details-body',
  disclosure: 'disclosure',
  disclosureText: 'disclosure-text',
  viewport: 'viewport',
  status: 'viewport-status',
  statusText: 'viewport-status-text',
  error: 'viewport-error',
  errorMessage: 'viewport-error-message',
  errorCode: 'viewport-error-code',
  scaleLegend: 'scale-legend',
  fitMap: 'fit-map',
});

function renderTwinList(twins, selectedId, onSelect) {
  dom.list.replaceChildren();
  dom.list.removeAttribute('aria-busy');
  if (twins.length === 0) {
    dom.list.append(el('li', { className: 'twin-list-empty', text: 'No twins yet.' }));
    return;
  }
  for (const twin of twins) {
    const status = licenceStatus(twin.license);
    const link = el(
      'a',
      {
        className: 'twin-item',
        href: `?twin=${encodeURIComponent(twin.id)}`,
        'aria-current': twin.id === selectedId ? 'true' : null,
        'data-twin-id': twin.id,
      },
      el('div', { className: 'twin-item-name', text: twin.name }),
      el(
        'div',
        { className: 'twin-item-meta' },
        el('span', { text: formatLength(twin.measurements?.height_m) }),
        chip(status.label, status.tone),
      ),
    );
    link.addEventListener('click', (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      onSelect(twin.id);
    });
    dom.list.append(el('li', {}, link));
  }
}

function markSelected(twinId) {
  for (const link of dom.list.querySelectorAll('.twin-item')) {
    link.setAttribute('aria-current', link.dataset.twinId === twinId ? 'true' : 'false');
  }
}

function renderDisclosure(twin) {
  if (!twin) {
    dom.disclosure.hidden = true;
    dom.disclosureText.textContent = '';
    return;
  }
  // The server words the disclosure; fall back to a plain one rather than show nothing.
  dom.disclosureText.textContent =
    twin.disclosure || `Digital twin of ${twin.owner?.model ?? twin.name} — a 3D replica, not a photograph`;
  dom.disclosure.hidden = false;
}

function renderDetails(twin, requestedId) {
  dom.details.replaceChildren();
  if (!twin) {
    dom.details.append(
      el('p', { className: 'muted', text: requestedId ? `No twin "${requestedId}" is listed.` : 'No twin selected.' }),
    );
    return;
  }
  const licence = twin.license ?? {};
  const status = licenceStatus(licence);
  const m = twin.measurements ?? {};
  dom.details.append(
    el('h3', { text: twin.name }),
    el('p', { className: 'subtitle', text: `Twin ${twin.id}` }),
    el('h4', { className: 'section-title', text: 'Owner' }),
    facts([
      ['Model', twin.owner?.model],
      ['Agency', twin.owner?.agency],
    ]),
    el('h4', { className: 'section-title', text: 'Licence' }),
    facts([
      ['Status', chip(status.label, status.tone)],
      ['Licence', licence.id],
      [
        'Channels',
        el('span', { className: 'chips' }, ...(licence.channels ?? []).map((c) => chip(c))),
      ],
      ['Valid from', formatDate(licence.valid_from)],
      ['Valid until', formatDate(licence.valid_until) ?? 'No end date'],
    ]),
    el('h4', { className: 'section-title', text: 'Measurements' }),
    facts([
      ['Height', formatLength(m.height_m)],
      ['Chest', formatLength(m.chest_m)],
      ['Waist', formatLength(m.waist_m)],
      ['Hips', formatLength(m.hips_m)],
      ['Inseam', formatLength(m.inseam_m)],
      ['Shoulders', formatLength(m.shoulder_m)],
    ]),
    el('div', { id: 'provenance' }),
  );
}

function renderProvenance(provenance, bbox, look) {
  const holder = document.getElementById('provenance');
  if (!holder) return;
  holder.replaceChildren();
  const rows = [];
  if (look) {
    rows.push(['Look', look.id]);
    rows.push(['Garments', String((look.garments ?? []).length)]);
  }
  if (bbox) rows.push(['Drawn height', formatLength(bbox.max[1] - bbox.min[1])]);
  if (provenance) {
    if (provenance.licenseId) rows.push(['File licence', provenance.licenseId]);
    if (provenance.owner) {
      const o = provenance.owner;
      const owner = typeof o === 'string' ? o : [o.model, o.agency].filter(Boolean).join(' · ');
      rows.push(['File owner', owner]);
    }
  }
  if (rows.length === 0) return;
  holder.append(el('h4', { className: 'section-title', text: look ? 'Loaded look' : 'Loaded body' }), facts(rows));
}

function showStatus(text) {
  dom.statusText.textContent = text;
  dom.status.hidden = false;
}

function hideStatus() {
  dom.status.hidden = true;
}

function showError(err) {
  viewerState.error = errorState(err);
  const { status, code, message } = viewerState.error;
  hideStatus();
  dom.errorMessage.textContent = message;
  const codeParts = [];
  if (status) codeParts.push(`HTTP ${status}`);
  if (code) codeParts.push(code);
  dom.errorCode.textContent = codeParts.join(' · ');
  dom.error.hidden = false;
}

function clearError() {
  viewerState.error = null;
  dom.error.hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function boxToArrays(box) {
  return { min: box.min.toArray(), max: box.max.toArray() };
}

// The shared stage (lib/stage.js): the studio view, or the true-scale test view.
function stageOptions(options) {
  const view = options.camera === 'ortho' ? { ...TRUE_SCALE, pxPerMetre: options.pxPerMetre } : STUDIO;
  return {
    ...view,
    canvasLabel: '3D view of the selected twin',
    onResize: (width, height) => { viewerState.canvasSizePx = [width, height]; },
  };
}

async function main() {
  let options;
  try {
    options = parseViewerOptions(window.location.search);
  } catch (err) {
    showError(err);
    return;
  }
  viewerState.channel = options.channel;
  viewerState.cameraMode = options.camera;
  viewerState.pxPerMetre = options.pxPerMetre;
  if (options.camera === 'ortho') {
    document.body.classList.add('test-mode');
    viewerState.background = hexToRgb255(TRUE_SCALE.background);
    dom.scaleLegend.textContent = `Orthographic front view · ${options.pxPerMetre} px per metre`;
  }

  let stage;
  try {
    stage = await openStage(dom.viewport, stageOptions(options));
  } catch (err) {
    showError({ message: `WebGL is not available in this browser: ${err.message}`, code: 'webgl_unavailable' });
    return;
  }

  const loader = gltfLoader();

  let twins = [];
  showStatus('Loading twins…');
  try {
    twins = await fetchTwins();
  } catch (err) {
    renderTwinList([], null, () => {});
    showError(err);
    return;
  }

  // A look names its twin; the twin list still lets the shopper leave it for a bare twin.
  let look = null;
  if (options.lookId) {
    try {
      look = await getJson(lookUrls(options.lookId, options.channel).record);
      viewerState.lookId = look.id;
    } catch (err) {
      renderTwinList(twins, null, () => {});
      showError(err);
      return;
    }
  }
  let fit = null;

  function showFitMap(gltf) {
    fit?.dispose();
    fit = new FitMap(gltf.scene, gltf.asset?.extras?.spatialtwin?.fitMap);
    const record = (mode) => {
      viewerState.fitMap = {
        available: fit.available,
        modes: fit.modes,
        mode,
        garments: fit.meshes.length,
        texturedGarments: fit.texturedCount,
        shares: Object.fromEntries(fit.modes.filter((m) => m !== 'garment').map((m) => [m, fit.shares(m)])),
      };
    };
    const control = fitMapControl(dom.fitMap, fit, (mode) => {
      record(mode);
      stage.requestFrame();
    });
    record(fit.mode);
    if (options.fit !== 'garment') control.setMode(options.fit);
  }

  let loadToken = 0;
  async function selectTwin(twinId, { updateUrl }) {
    const token = ++loadToken;
    const twin = twins.find((t) => t.id === twinId) ?? null;
    viewerState.ready = false;
    viewerState.twinId = twinId;
    viewerState.boundingBox = null;
    viewerState.provenance = null;
    clearError();
    markSelected(twinId);
    renderDetails(twin, twinId);
    renderDisclosure(twin);
    if (updateUrl) {
      const url = new URL(window.location.href);
      url.searchParams.set('twin', twinId);
      if (look && look.twin !== twinId) url.searchParams.delete('look');
      window.history.replaceState(null, '', url);
    }
    stage.clear();
    fit?.dispose();
    fit = null;
    viewerState.fitMap = null;
    dom.fitMap.hidden = true;
    const showingLook = look !== null && look.twin === twinId;
    viewerState.lookId = showingLook ? look.id : null;
    showStatus(`Loading ${showingLook ? 'the look' : twin ? twin.name : twinId}…`);
    try {
      // A twin missing from the list is still requested: the server's answer (404, 410, 403)
      // says why better than the page could.
      const url = showingLook
        ? lookUrls(look.id, options.channel).glb
        : bodyUrl(twinId, twin, options.channel, options.pose);
      const bytes = await getBytes(url);
      const gltf = await loader.parseAsync(bytes, '');
      if (token !== loadToken) return;
      const box = stage.show(gltf.scene);
      if (showingLook) showFitMap(gltf);
      viewerState.boundingBox = boxToArrays(box);
      viewerState.provenance = gltf.asset?.extras?.spatialtwin ?? null;
      renderProvenance(viewerState.provenance, viewerState.boundingBox, showingLook ? look : null);
      hideStatus();
      await stage.drawn();
      if (token !== loadToken) return;
      viewerState.ready = true;
    } catch (err) {
      if (token !== loadToken) return;
      showError(err instanceof ApiError ? err : { message: `Could not read the body: ${err.message}`, code: 'bad_glb' });
    }
  }

  const initialId = look?.twin ?? options.twinId ?? twins[0]?.id ?? null;
  renderTwinList(twins, initialId, (id) => selectTwin(id, { updateUrl: true }));
  if (initialId === null) {
    hideStatus();
    renderDetails(null, null);
    dom.statusText.textContent = '';
    return;
  }
  await selectTwin(initialId, { updateUrl: false });
}

main().catch((err) => showError({ message: err.message, code: 'viewer_failed' }));
