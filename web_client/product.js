// Product page: a twin wearing the garment, streamed small-first, at true scale.
//
//   /web/product.html?sku=<sku>[&twin=<id>][&size=<label>][&viewer=model-viewer]
//   /web/product.html?look=<id>        a look;   ?twin=<id>   a bare twin
//
// With a sku the page asks the shop API (`GET /api/v1/products/{sku}`) for the sizes, the
// twins licensed for the shop and the chosen look (202 while the look is built: the job's
// progress is shown until it is ready). It shows the coarsest level of the look's manifest
// first, then the coarsest level whose error stays under `maxPixelError` pixels at this
// display's millimetres per pixel (from `?mmPerPx=` or the camera), as 3D Tiles picks tiles by
// screen-space error. The body chooser (heights) and the size switcher load another look;
// "Garment | Stretch | Ease" loads the look's full GLB, which carries the fit map, on first use.
// The twin's disclosure and the model's credit stay on screen. `?viewer=model-viewer` draws in
// <model-viewer> instead, with AR (WebXR, Scene Viewer, AR Quick Look from the USDZ) at a
// fixed 1:1 scale when the twin is licensed for AR.
// State for tests and tools: window.spatialTwinProduct.
import { API_ROOT, apiErrorFromBody, errorState, getJson, waitForJob } from './lib/api.js';
import { el } from './lib/dom.js';
import { FIT_MODES, FitMap, fitSwitch, legendElement } from './lib/fit-map.js';
import { PRODUCT, boxFromBounds, gltfLoader, openStage } from './lib/stage.js';

const params = new URLSearchParams(location.search);
const sku = params.get('sku');
const channel = params.get('channel') || 'ecommerce';
const viewerKind = params.get('viewer') || 'three';
const maxPixelError = Number(params.get('maxPixelError') || 4);
const state = (window.spatialTwinProduct = {
  ready: false, firstLevelMs: null, firstLevelSinceScriptMs: null, sharpLevelMs: null, shown: [], picked: null, mmPerPx: null,
  boundingBox: null, error: null, viewer: viewerKind,
  fitMap: null, // for a look: {mode, loaded, modes, texturedGarments} once the switch is used
  sku, twinId: sku ? params.get('twin') : params.get('twin') || 'twn_sample_ava', size: params.get('size'),
  lookId: params.get('look'), product: null, looksShown: [], levelUrls: [], ar: null,
  disclosure: null, credit: null, loading: false,
});
if (params.get('embed')) document.body.classList.add('embed');
const stage = document.getElementById('stage');
const label = document.getElementById('level');

function pickLevel(levels, mmPerPx) {
  const budget = (maxPixelError * mmPerPx) / 1000;
  let best = 0;
  levels.forEach((lv, i) => { if (lv.geometricError_m <= budget) best = Math.max(best, i); });
  return best;
}

function describe(lv, note) {
  label.textContent = `level ${lv.level}: ${lv.triangles} triangles, ${(lv.bytes / 1024).toFixed(1)} KB, ` +
    `error ${(lv.geometricError_m * 1000).toFixed(1)} mm ${note}`;
}

// Levels not built yet answer 202 with the job that builds them: follow it, then ask again.
async function builtManifest(url) {
  const body = await getJson(url);
  if (!body.job) return body;
  await waitForJob(body.links.job);
  return getJson(url);
}

// The manifest of a look or twin page (product.html started its download early), or of `url`.
async function manifest(url = null) {
  if (url) return { m: await builtManifest(url), firstLevel: null };
  const early = window.spatialTwinEarly
    ? await window.spatialTwinEarly.catch(() => null)
    : null;
  if (!early) {
    const path = state.lookId
      ? `${API_ROOT}/looks/${encodeURIComponent(state.lookId)}/lod/manifest.json`
      : `${API_ROOT}/twins/${encodeURIComponent(state.twinId)}/lod/manifest.json`;
    return { m: await builtManifest(`${path}?channel=${encodeURIComponent(channel)}`), firstLevel: null };
  }
  const { response, body, firstLevel } = early;
  if (!response.ok) throw apiErrorFromBody(response.status, response.statusText, body, response.url);
  if (response.status === 202) return { m: await builtManifest(response.url), firstLevel: null };
  return { m: body, firstLevel };
}

// The shared stage (lib/stage.js) in its product view: plain light, straight front framing of
// the manifest's bounds, drawn at once so the first level is timed when it is on screen.
async function threeViewer() {
  const view = await openStage(stage, { ...PRODUCT, canvasLabel: '3D view of the look' });
  const loader = gltfLoader();
  let shownLevel = null;
  return {
    // Draw another scene in place of the current one (the fit map's full look and back).
    display(object) {
      view.show(object, { frame: false, disposePrevious: false });
      view.render();
    },
    level() {
      return shownLevel;
    },
    async load(url) {
      return loader.loadAsync(url);
    },
    setAr() {},
    async show(url, bounds, bytes = null) {
      // Bytes already downloaded are parsed in place; the path resolves the fallback .bin.
      const data = bytes ? await bytes.catch(() => null) : null;
      const gltf = data
        ? await loader.parseAsync(data, url.slice(0, url.lastIndexOf('/') + 1))
        : await loader.loadAsync(url);
      shownLevel = gltf.scene;
      const box = view.show(gltf.scene, { frame: boxFromBounds(bounds), disposePrevious: false });
      view.render();
      state.boundingBox = { min: box.min.toArray(), max: box.max.toArray() };
      return view.millimetresPerDevicePixel();
    },
  };
}

// <model-viewer>: the same levels (drawn from their uncompressed fallback buffers: it has no
// meshopt decoder), AR at 1:1 with the AR GLB on Android and the USDZ on iOS.
function modelViewer() {
  const mv = el('model-viewer', {
    'camera-controls': true,
    'touch-action': 'pan-y',
    ar: true,
    'ar-modes': 'webxr scene-viewer quick-look',
    'ar-scale': 'fixed',
    'shadow-intensity': '0.6',
    alt: '3D view of the look: a digital twin wearing the garment',
  });
  mv.append(el('button', { slot: 'ar-button', id: 'ar-button', text: 'View in your room' }));
  stage.appendChild(mv);
  let arGlb = null;
  const library = import('/vendor/model-viewer/model-viewer.min.js');
  return {
    setAr(ar, poster) {
      arGlb = ar?.glb || null;
      if (ar?.usdz) mv.setAttribute('ios-src', ar.usdz);
      else mv.removeAttribute('ios-src');
      if (!ar?.glb) mv.removeAttribute('ar');
      if (poster) mv.setAttribute('poster', poster);
    },
    async show(url) {
      await library;
      const loaded = new Promise((resolve, reject) => {
        mv.addEventListener('load', resolve, { once: true });
        mv.addEventListener('error', (e) => reject(new Error(`model-viewer: ${e.detail?.type || 'load error'}`)), { once: true });
      });
      mv.src = url;
      await loaded;
      const dims = mv.getDimensions();
      state.boundingBox = { size: [dims.x, dims.y, dims.z] };
      return 2.0;
    },
    arSource() {
      return arGlb;
    },
  };
}

// Stream one manifest: its coarsest level at once, then the level this display needs.
async function stream(viewer, m, firstLevel = null) {
  const started = performance.now();
  const first = m.levels[m.firstLevel];
  const derivedMmPerPx = await viewer.show(first.url, m.bounds_m, firstLevel);
  if (state.firstLevelMs === null) {
    // Milliseconds since navigation started (performance.now()'s origin) and since this module
    // ran; the mark leaves the first figure on the performance timeline for other tools.
    performance.mark('spatialtwin-first-level', { detail: { level: first.level, bytes: first.bytes } });
    state.firstLevelMs = performance.now();
    state.firstLevelSinceScriptMs = performance.now() - scriptStarted;
  }
  state.shown.push(first.level);
  state.levelUrls.push(first.url);
  describe(first, '(first)');
  const mmPerPx = Number(params.get('mmPerPx')) || derivedMmPerPx;
  state.mmPerPx = mmPerPx;
  const pick = pickLevel(m.levels, mmPerPx);
  state.picked = pick;
  if (pick !== m.firstLevel) {
    await viewer.show(m.levels[pick].url, m.bounds_m);
    state.shown.push(m.levels[pick].level);
    state.levelUrls.push(m.levels[pick].url);
  }
  // The level this display needs is on screen (ms since navigation started; bench/product.py).
  if (state.sharpLevelMs === null) state.sharpLevelMs = performance.now();
  describe(m.levels[pick], `(${mmPerPx.toFixed(2)} mm/px, ${Math.round(performance.now() - started)} ms)`);
}

function showProvenance(disclosure, credit) {
  state.disclosure = disclosure;
  state.credit = credit;
  if (disclosure) document.getElementById('disclosure').textContent = disclosure;
  document.getElementById('credit').textContent = credit
    ? `Model: ${credit.model} · Agency: ${credit.agency}`
    : '';
}

// The twin's disclosure and credit for a look or twin page (the product API gives them itself).
async function provenanceOf(twinId) {
  const twin = await getJson(`${API_ROOT}/twins/${encodeURIComponent(twinId)}`);
  showProvenance(twin.disclosure, twin.owner);
}

// --- a product: the shop API, the body chooser and the size switcher --------------------------

function productUrl(twinId, size) {
  const q = new URLSearchParams({ channel });
  if (twinId) q.append('twin', twinId);
  if (size) q.append('size', size);
  return `${API_ROOT}/products/${encodeURIComponent(sku)}?${q}`;
}

// The product with the chosen look built: a 202 names the look's job; follow it, ask again.
async function builtProduct(twinId, size) {
  for (;;) {
    const body = await getJson(productUrl(twinId, size));
    const look = body.looks[0];
    if (!look) throw Object.assign(new Error('no twin licensed for this shop wears this product'), { code: 'no_twin' });
    if (look.status === 'ready') return body;
    if (look.status === 'failed') {
      throw Object.assign(new Error(look.error?.message || 'the look could not be made'), { code: look.error?.code || 'look_failed' });
    }
    label.textContent = `dressing the twin… ${Math.round((look.job?.progress || 0) * 100)} %`;
    await waitForJob(look.links.job, {
      onProgress: (job) => { label.textContent = `dressing the twin: ${job.stage || 'queued'} ${Math.round((job.progress || 0) * 100)} %`; },
    });
  }
}

function heightCm(twin) {
  return twin.height_m ? `${(twin.height_m * 100).toFixed(0)} cm` : twin.name;
}

function chooser(id, items, current, onChoose) {
  const holder = document.getElementById(id);
  const options = holder.querySelector('.options');
  options.replaceChildren(...items.map((item) => {
    const button = el('button', {
      type: 'button', text: item.text, 'aria-pressed': String(item.value === current), 'data-value': item.value,
      title: item.title || null,
    });
    button.addEventListener('click', () => onChoose(item.value));
    return button;
  }));
  holder.hidden = items.length === 0;
}

function showChoosers(product, onChoose) {
  chooser('twin-chooser', product.twins.map((t) => ({
    value: t.id, text: heightCm(t), title: `${t.name}: chest ${Math.round(t.measurements_m.chest_m * 100)}, ` +
      `waist ${Math.round(t.measurements_m.waist_m * 100)}, hips ${Math.round(t.measurements_m.hips_m * 100)} cm`,
  })), state.twinId, (twinId) => onChoose(twinId, state.size));
  chooser('size-chooser', product.sizes.map((s) => ({ value: s.label, text: s.label || '—' })), state.size,
    (size) => onChoose(state.twinId, size));
  const twin = product.twins.find((t) => t.id === state.twinId);
  const facts = document.getElementById('twin-facts');
  if (twin) {
    const m = twin.measurements_m;
    facts.textContent = `${twin.name}: height ${heightCm(twin)}, chest ${Math.round(m.chest_m * 100)} cm, ` +
      `waist ${Math.round(m.waist_m * 100)} cm, hips ${Math.round(m.hips_m * 100)} cm`;
    facts.hidden = false;
  }
}

async function showProductLook(viewer, twinId, size) {
  state.loading = true;
  for (const b of document.querySelectorAll('.chooser button')) b.disabled = true;
  try {
    const product = await builtProduct(twinId, size);
    const look = product.looks[0];
    state.product = { sku: product.sku, name: product.name, twins: product.twins, sizes: product.sizes };
    state.twinId = look.twin;
    state.size = look.size;
    state.lookId = look.look;
    state.ar = look.ar;
    document.getElementById('title').textContent = product.name || product.sku;
    showProvenance(look.disclosure, look.credit);
    showChoosers(product, (t, s) => {
      showProductLook(viewer, t, s).catch(fail);
    });
    viewer.setAr(look.ar.glb ? look.ar : null, look.posters[0]?.url);
    const { m } = await manifest(look.lod.manifest);
    await stream(viewer, m);
    state.looksShown.push({ twin: look.twin, size: look.size, look: look.look, firstLevel: look.lod.firstLevel.url, boundingBox: state.boundingBox });
    fitReset?.();
  } finally {
    state.loading = false;
    for (const b of document.querySelectorAll('.chooser button')) b.disabled = false;
  }
}

// --- the page ------------------------------------------------------------------------------

const scriptStarted = performance.now();
let fitReset = null;

async function main() {
  // The WebGL context is made while the manifest is still on its way.
  const viewer = viewerKind === 'model-viewer' ? modelViewer() : await threeViewer();
  if (sku) {
    // Which twin and size to start with: those asked for, else the first of each (listed
    // without building any look).
    if (!state.twinId || !state.size) {
      const listed = await getJson(`${productUrl(null, null)}&looks=none`);
      if (!listed.twins.length) throw Object.assign(new Error('no twin licensed for this shop'), { code: 'no_twin' });
      state.twinId ||= listed.twins[0].id;
      state.size ||= listed.sizes[0].label;
    }
    await showProductLook(viewer, state.twinId, state.size);
  } else {
    const twinOf = state.lookId
      ? getJson(`${API_ROOT}/looks/${encodeURIComponent(state.lookId)}?channel=${encodeURIComponent(channel)}`).then((l) => l.twin)
      : Promise.resolve(state.twinId);
    const { m, firstLevel } = await manifest();
    await stream(viewer, m, firstLevel);
    twinOf.then(provenanceOf).catch(() => {});
  }
  if (state.lookId && viewerKind === 'three') fitReset = fitMapSwitch(viewer);
  state.ready = true;
}

// "Garment | Stretch | Ease" for a look: the levels show the garment; the fit map needs the
// look's full GLB (its garments carry _STRAIN and _EASE), fetched the first time it is asked for.
// Returns a reset for when another look is shown.
function fitMapSwitch(viewer) {
  const holder = document.getElementById('fit-map');
  let full = null; // {scene, fit, look}
  let legend = legendElement({ legend: {} }, 'garment');
  async function choose(mode) {
    control.check(mode);
    let next;
    if (mode === 'garment') {
      full?.fit.setMode('garment');
      viewer.display(viewer.level());
      next = legendElement({ legend: {} }, 'garment');
    } else {
      if (!full || full.look !== state.lookId) {
        label.textContent = 'loading the fit map…';
        const url = `${API_ROOT}/looks/${encodeURIComponent(state.lookId)}/look.glb?channel=${encodeURIComponent(channel)}`;
        const gltf = await viewer.load(url);
        full = { scene: gltf.scene, fit: new FitMap(gltf.scene, gltf.asset?.extras?.spatialtwin?.fitMap), look: state.lookId };
        label.textContent = 'full detail with the fit map';
      }
      full.fit.setMode(mode);
      viewer.display(full.scene);
      next = legendElement(full.fit, mode);
    }
    legend.replaceWith(next);
    legend = next;
    state.fitMap = {
      mode,
      loaded: full !== null,
      modes: full ? full.fit.modes : FIT_MODES,
      texturedGarments: full ? full.fit.texturedCount : null,
    };
  }
  const control = fitSwitch(FIT_MODES, 'garment', (mode) => {
    choose(mode).catch((err) => {
      state.error = { ...errorState(err), code: 'fit_map_failed' };
      label.textContent = `could not show the fit map: ${state.error.message}`;
    });
  });
  holder.replaceChildren(control.element, legend);
  holder.hidden = false;
  state.fitMap = { mode: 'garment', loaded: false, modes: FIT_MODES, texturedGarments: null };
  return () => {
    if (state.fitMap?.mode !== 'garment') choose('garment').catch(() => {});
  };
}

function fail(err) {
  state.error = errorState(err);
  label.textContent = `could not show the look: ${state.error.message}`;
}

main().catch(fail);
