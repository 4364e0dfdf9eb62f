// Product page: show the smallest LOD level at once, then the level the display needs.
//
// The manifest lists levels (url, bytes, triangles, geometric error in metres). The page shows
// the coarsest level first, then picks the coarsest level whose error stays under
// `maxPixelError` pixels at this display's millimetres per pixel (from `?mmPerPx=` or from the
// camera: a figure framed to the canvas height), as 3D Tiles picks tiles by screen-space error.
// `?look=<id>` shows a look (a twin wearing draped garments, textured) instead of a bare twin;
// its levels do not carry the fit map, so the "Stretch" and "Ease" switch loads the look's
// full GLB, which does, on first use.
// State for tests and tools: window.spatialTwinProduct.
import { apiErrorFromBody, errorState, getJson, waitForJob } from './lib/api.js';
import { FIT_MODES, FitMap, fitSwitch, legendElement } from './lib/fit-map.js';
import { PRODUCT, boxFromBounds, gltfLoader, openStage } from './lib/stage.js';

const params = new URLSearchParams(location.search);
const twinId = params.get('twin') || 'twn_sample_ava';
const lookId = params.get('look');
const channel = params.get('channel') || 'ecommerce';
const viewerKind = params.get('viewer') || 'three';
const maxPixelError = Number(params.get('maxPixelError') || 4);
const state = (window.spatialTwinProduct = {
  ready: false, firstLevelMs: null, firstLevelSinceScriptMs: null, shown: [], picked: null, mmPerPx: null,
  boundingBox: null, error: null, viewer: viewerKind,
  fitMap: null, // for a look: {mode, loaded, modes, texturedGarments} once the switch is used
});
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

// The manifest (and the first level's bytes) from the download product.html started early,
// or fetched here when the page was opened without it.
async function manifest() {
  const early = window.spatialTwinEarly
    ? await window.spatialTwinEarly.catch(() => null)
    : null;
  if (!early) {
    const path = lookId
      ? `/api/v1/looks/${encodeURIComponent(lookId)}/lod/manifest.json`
      : `/api/v1/twins/${encodeURIComponent(twinId)}/lod/manifest.json`;
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
  const view = await openStage(stage, PRODUCT);
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

function modelViewer() {
  const el = document.createElement('model-viewer');
  el.setAttribute('camera-controls', '');
  el.setAttribute('ar', '');
  stage.appendChild(el);
  return {
    async show(url) {
      await import('/vendor/model-viewer/model-viewer.min.js');
      const loaded = new Promise((resolve, reject) => {
        el.addEventListener('load', resolve, { once: true });
        el.addEventListener('error', (e) => reject(new Error(`model-viewer: ${e.detail?.type || 'load error'}`)), { once: true });
      });
      el.src = url;
      await loaded;
      const dims = el.getDimensions();
      state.boundingBox = { size: [dims.x, dims.y, dims.z] };
      return 2.0;
    },
  };
}

async function main() {
  const started = performance.now();
  // The WebGL context is made while the manifest is still on its way.
  const viewer = viewerKind === 'model-viewer' ? modelViewer() : await threeViewer();
  const { m, firstLevel } = await manifest();
  document.getElementById('disclosure').textContent = m.levels.length ? `${m.units}; simplifier ${m.simplifier}` : '';
  const first = m.levels[m.firstLevel];
  const derivedMmPerPx = await viewer.show(first.url, m.bounds_m, firstLevel);
  // Milliseconds since navigation started (performance.now()'s origin) and since this module
  // ran; the mark leaves the first figure on the performance timeline for other tools.
  performance.mark('spatialtwin-first-level', { detail: { level: first.level, bytes: first.bytes } });
  state.firstLevelMs = performance.now();
  state.firstLevelSinceScriptMs = performance.now() - started;
  state.shown.push(first.level);
  describe(first, '(first)');
  const mmPerPx = Number(params.get('mmPerPx')) || derivedMmPerPx;
  state.mmPerPx = mmPerPx;
  const pick = pickLevel(m.levels, mmPerPx);
  state.picked = pick;
  if (pick !== m.firstLevel) {
    await viewer.show(m.levels[pick].url, m.bounds_m);
    state.shown.push(m.levels[pick].level);
  }
  describe(m.levels[pick], `(${mmPerPx.toFixed(2)} mm/px)`);
  if (lookId && viewerKind === 'three') fitMapSwitch(viewer);
  state.ready = true;
}

// "Garment | Stretch | Ease" for a look: the levels show the garment; the fit map needs the
// look's full GLB (its garments carry _STRAIN and _EASE), fetched the first time it is asked for.
function fitMapSwitch(viewer) {
  const holder = document.getElementById('fit-map');
  let full = null; // {scene, fit}
  let legend = legendElement({ legend: {} }, 'garment');
  async function choose(mode) {
    control.check(mode);
    let next;
    if (mode === 'garment') {
      full?.fit.setMode('garment');
      viewer.display(viewer.level());
      next = legendElement({ legend: {} }, 'garment');
    } else {
      if (!full) {
        label.textContent = 'loading the fit map…';
        const url = `/api/v1/looks/${encodeURIComponent(lookId)}/look.glb?channel=${encodeURIComponent(channel)}`;
        const gltf = await viewer.load(url);
        full = { scene: gltf.scene, fit: new FitMap(gltf.scene, gltf.asset?.extras?.spatialtwin?.fitMap) };
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
}

main().catch((err) => {
  state.error = errorState(err);
  label.textContent = `could not show the look: ${state.error.message}`;
});
