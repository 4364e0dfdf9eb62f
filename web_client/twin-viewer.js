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

import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';
import { FIT_MODES, FitMap, fitMapControl } from './lib/fit-map.js';

const API_ROOT = '/api/v1';
const CHANNELS = ['ecommerce', 'mirror', 'ar'];
const GRID_CELL_M = 0.5;
const GRID_SIZE_M = 6;
const PERSPECTIVE_BACKGROUND = '#eceff3';
// Chroma-key green: no lit skin or fabric comes near it (skin's red channel alone differs by
// > 100), so a test can segment the body from the background pixel by pixel.
const TEST_MODE_BACKGROUND = '#00b140';
// Cube-face size of the prefiltered room light. Skin is rough, so 64 px looks the same as three's
// default 256 px, and it prefilters ~16x faster, which matters under software WebGL (SwiftShader
// in headless tests and GPU-less kiosks: about 4 s at 256 px against 0.3 s at 64 px).
const ENVIRONMENT_SIZE_PX = 64;

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

class ViewerOptionError extends Error {
  constructor(code, message, detail) {
    super(message);
    this.status = null;
    this.code = code;
    this.detail = detail;
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
// API access: every non-2xx answer becomes an ApiError carrying the server's JSON message.

class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

async function apiErrorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy error page, say): fall back to the HTTP status line.
  }
  const err = body && body.error;
  if (err && typeof err.message === 'string') {
    return new ApiError(response.status, err.code ?? null, err.message, err.detail ?? null);
  }
  return new ApiError(response.status, null, `${response.status} ${response.statusText || 'error'} from ${response.url}`, null);
}

async function fetchTwins() {
  const response = await fetch(`${API_ROOT}/twins`, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw await apiErrorFrom(response);
  const body = await response.json();
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

async function fetchLook(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw await apiErrorFrom(response);
  return response.json();
}

async function fetchBodyGlb(url) {
  const response = await fetch(url, { headers: { Accept: 'model/gltf-binary, application/json' } });
  if (!response.ok) throw await apiErrorFrom(response);
  return response.arrayBuffer();
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

function formatLength(metres) {
  if (typeof metres !== 'number' || !Number.isFinite(metres)) return '—';
  return `${(metres * 100).toFixed(1)} cm`;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function chip(text, tone) {
  return el('span', { className: tone ? `chip chip-${tone}` : 'chip', text });
}

function facts(rows) {
  const dl = el('dl', { className: 'facts' });
  for (const [term, value] of rows) {
    dl.append(el('dt', { text: term }), el('dd', {}, value ?? '—'));
  }
  return dl;
}

// ---------------------------------------------------------------------------------------------
// Page panels.

const dom = {
  list: document.getElementById('twin-list'),
  details: document.getElementById('details-body'),
  disclosure: document.getElementById('disclosure'),
  disclosureText: document.getElementById('disclosure-text'),
  viewport: document.getElementById('viewport'),
  status: document.getElementById('viewport-status'),
  statusText: document.getElementById('viewport-status-text'),
  error: document.getElementById('viewport-error'),
  errorMessage: document.getElementById('viewport-error-message'),
  errorCode: document.getElementById('viewport-error-code'),
  scaleLegend: document.getElementById('scale-legend'),
  fitMap: document.getElementById('fit-map'),
};

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
  const status = err.status ?? null;
  viewerState.error = {
    status,
    code: err.code ?? null,
    message: err.message,
    detail: err.detail ?? null,
  };
  hideStatus();
  dom.errorMessage.textContent = err.message;
  const codeParts = [];
  if (status) codeParts.push(`HTTP ${status}`);
  if (err.code) codeParts.push(err.code);
  dom.errorCode.textContent = codeParts.join(' · ');
  dom.error.hidden = false;
}

function clearError() {
  viewerState.error = null;
  dom.error.hidden = true;
}

// ---------------------------------------------------------------------------------------------
// The 3D view.

class TwinStage {
  constructor(container, { camera, pxPerMetre }) {
    this.container = container;
    this.ortho = camera === 'ortho';
    this.pxPerMetre = pxPerMetre;
    this.body = null;
    this.bodyBox = null;
    this.frameRequested = false;

    // (1) renderer: sRGB output, neutral tone mapping keeps the skin's base colour honest.
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: this.ortho });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.renderer.toneMapping = this.ortho ? THREE.NoToneMapping : THREE.NeutralToneMapping;
    this.renderer.shadowMap.enabled = !this.ortho;
    this.renderer.shadowMap.type = THREE.PCFShadowMap;
    this.renderer.domElement.setAttribute('aria-label', '3D view of the selected twin');
    this.renderer.domElement.tabIndex = 0;
    container.prepend(this.renderer.domElement);

    // (2) scene, background, image-based light plus a key light for form and a contact shadow.
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(this.ortho ? TEST_MODE_BACKGROUND : PERSPECTIVE_BACKGROUND);
    const pmrem = new THREE.PMREMGenerator(this.renderer);
    this.scene.environment = pmrem.fromScene(new RoomEnvironment(), 0.04, 0.1, 100, {
      size: ENVIRONMENT_SIZE_PX,
    }).texture;
    this.scene.environmentIntensity = 0.55;
    pmrem.dispose();

    const hemi = new THREE.HemisphereLight(0xffffff, 0xb9b3aa, 0.6);
    this.scene.add(hemi);
    this.keyLight = new THREE.DirectionalLight(0xffffff, 1.6);
    this.keyLight.position.set(1.5, 3.2, 2.4);
    this.scene.add(this.keyLight, this.keyLight.target);

    if (!this.ortho) {
      this.keyLight.castShadow = true;
      this.keyLight.shadow.mapSize.set(1024, 1024);
      const s = this.keyLight.shadow.camera;
      s.left = -1.5; s.right = 1.5; s.top = 1.5; s.bottom = -1.5; s.near = 0.5; s.far = 8;
      this.keyLight.shadow.bias = -0.0005;
      this.keyLight.shadow.radius = 4;

      const ground = new THREE.Mesh(
        new THREE.PlaneGeometry(GRID_SIZE_M, GRID_SIZE_M),
        new THREE.ShadowMaterial({ opacity: 0.16 }),
      );
      ground.rotation.x = -Math.PI / 2;
      ground.receiveShadow = true;
      this.scene.add(ground);

      const grid = new THREE.GridHelper(GRID_SIZE_M, GRID_SIZE_M / GRID_CELL_M, 0x9aa3b2, 0xc8ced8);
      grid.material.transparent = true;
      grid.material.opacity = 0.7;
      grid.position.y = 0.0005; // above the shadow plane, below any foot
      this.scene.add(grid);
    }

    // (3) camera: perspective with orbit controls, or a fixed orthographic front view.
    if (this.ortho) {
      this.camera = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.01, 100);
      this.camera.position.set(0, 1, 10);
      this.camera.lookAt(0, 1, 0);
    } else {
      this.camera = new THREE.PerspectiveCamera(35, 1, 0.05, 100);
      this.camera.position.set(1.2, 1.4, 4.2);
      this.controls = new OrbitControls(this.camera, this.renderer.domElement);
      this.controls.enableDamping = true;
      this.controls.dampingFactor = 0.12;
      this.controls.target.set(0, 0.9, 0);
      this.controls.minDistance = 0.4;
      this.controls.maxDistance = 12;
      this.controls.maxPolarAngle = Math.PI * 0.495; // stay above the floor
      this.controls.addEventListener('change', () => this.requestFrame());
      this.controls.update();
    }

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  resize() {
    const width = Math.max(1, this.container.clientWidth);
    const height = Math.max(1, this.container.clientHeight);
    this.renderer.setSize(width, height, false);
    viewerState.canvasSizePx = [width, height];
    if (this.ortho) {
      this.fitOrtho(width, height);
    } else {
      this.camera.aspect = width / height;
      this.camera.updateProjectionMatrix();
    }
    this.requestFrame();
  }

  // An orthographic frustum whose width in metres is the canvas width in pixels / pxPerMetre,
  // centred on the body: one metre on the body is exactly pxPerMetre CSS pixels on screen.
  fitOrtho(width, height) {
    const centre = this.bodyBox ? this.bodyBox.getCenter(new THREE.Vector3()) : new THREE.Vector3(0, 0.9, 0);
    const halfW = width / 2 / this.pxPerMetre;
    const halfH = height / 2 / this.pxPerMetre;
    this.camera.left = -halfW;
    this.camera.right = halfW;
    this.camera.top = halfH;
    this.camera.bottom = -halfH;
    this.camera.position.set(centre.x, centre.y, centre.z + 10);
    this.camera.lookAt(centre.x, centre.y, centre.z);
    this.camera.updateProjectionMatrix();
  }

  // Frame the whole body from the front-right, slightly above hip height, as a fitting-room
  // mirror would, with a margin so the feet and head never touch the edge.
  framePerspective(box) {
    const centre = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    const vFov = THREE.MathUtils.degToRad(this.camera.fov);
    const hFov = 2 * Math.atan(Math.tan(vFov / 2) * this.camera.aspect);
    const distForHeight = (size.y * 1.18) / 2 / Math.tan(vFov / 2);
    const distForWidth = (Math.max(size.x, size.z) * 1.3) / 2 / Math.tan(hFov / 2);
    const distance = Math.max(distForHeight, distForWidth) + size.z / 2;
    const direction = new THREE.Vector3(0.32, 0.12, 1).normalize();
    this.controls.target.copy(centre);
    this.camera.position.copy(centre).addScaledVector(direction, distance);
    this.camera.near = Math.max(0.01, distance / 100);
    this.camera.far = distance * 20;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    // Let the floor grid fade out behind the body instead of ending in a hard horizon.
    this.scene.fog = new THREE.Fog(PERSPECTIVE_BACKGROUND, distance + 1.5, distance + 7);
  }

  setBody(object) {
    this.clearBody();
    object.traverse((node) => {
      if (node.isMesh) {
        node.castShadow = !this.ortho;
        node.frustumCulled = false; // skinned bounds change with pose; never cull the body
      }
    });
    this.scene.add(object);
    this.body = object;
    // Bones need world matrices before skinned vertex positions can be evaluated.
    this.scene.updateMatrixWorld(true);
    object.traverse((node) => {
      if (node.isSkinnedMesh) node.skeleton.update();
    });
    this.bodyBox = new THREE.Box3().setFromObject(object, true);
    if (this.ortho) {
      this.fitOrtho(this.container.clientWidth, this.container.clientHeight);
    } else {
      this.framePerspective(this.bodyBox);
    }
    this.requestFrame();
    return this.bodyBox;
  }

  clearBody() {
    if (!this.body) return;
    this.scene.remove(this.body);
    this.body.traverse((node) => {
      if (node.geometry) node.geometry.dispose();
      const materials = Array.isArray(node.material) ? node.material : node.material ? [node.material] : [];
      for (const material of materials) {
        for (const value of Object.values(material)) {
          if (value && value.isTexture) value.dispose();
        }
        material.dispose();
      }
    });
    this.body = null;
    this.bodyBox = null;
    this.requestFrame();
  }

  // Draw only when something changed: a software-rendered headless browser and a laptop on
  // battery both prefer an idle page to a 60 fps loop.
  requestFrame() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      if (this.controls && this.controls.update()) this.requestFrame();
      this.renderer.render(this.scene, this.camera);
    });
  }

  // Resolves after the next frame has been drawn and handed to the compositor.
  drawn() {
    return new Promise((resolve) => {
      this.requestFrame();
      requestAnimationFrame(() => requestAnimationFrame(resolve));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function boxToArrays(box) {
  return { min: box.min.toArray(), max: box.max.toArray() };
}

// sRGB bytes of a '#rrggbb' colour, as they appear in a screenshot (THREE.Color holds linear).
function hexToRgb255(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
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
    viewerState.background = hexToRgb255(TEST_MODE_BACKGROUND);
    dom.scaleLegend.textContent = `Orthographic front view · ${options.pxPerMetre} px per metre`;
  }

  let stage;
  try {
    stage = new TwinStage(dom.viewport, options);
  } catch (err) {
    showError({ message: `WebGL is not available in this browser: ${err.message}`, code: 'webgl_unavailable' });
    return;
  }

  const loader = new GLTFLoader();
  loader.setMeshoptDecoder(MeshoptDecoder);

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
      look = await fetchLook(lookUrls(options.lookId, options.channel).record);
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
    stage.clearBody();
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
      const bytes = await fetchBodyGlb(url);
      const gltf = await loader.parseAsync(bytes, '');
      if (token !== loadToken) return;
      const box = stage.setBody(gltf.scene);
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
