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
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';
import { FitMap, legendElement } from './lib/fit-map.js';

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

// The manifest (and the first level's bytes) from the download product.html started early,
// or fetched here when the page was opened without it.
async function manifest() {
  const early = window.spatialTwinEarly
    ? await window.spatialTwinEarly.catch(() => null)
    : null;
  let r, body, firstLevel = null;
  if (early) {
    ({ response: r, body, firstLevel } = early);
  } else {
    const path = lookId
      ? `/api/v1/looks/${encodeURIComponent(lookId)}/lod/manifest.json`
      : `/api/v1/twins/${encodeURIComponent(twinId)}/lod/manifest.json`;
    r = await fetch(`${path}?channel=${encodeURIComponent(channel)}`);
    body = await r.json();
  }
  if (!r.ok) throw Object.assign(new Error(body.error?.message || r.statusText), { status: r.status, code: body.error?.code });
  return { m: body, firstLevel };
}

function threeViewer() {
  const renderer = new THREE.WebGLRenderer({ antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio);
  stage.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xf4f2ef);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8a7f74, 2.2));
  const sun = new THREE.DirectionalLight(0xffffff, 1.5);
  sun.position.set(1, 2, 3);
  scene.add(sun);
  const camera = new THREE.PerspectiveCamera(30, 1, 0.05, 50);
  const loader = new GLTFLoader().setMeshoptDecoder(MeshoptDecoder);
  let current = null;
  const size = () => {
    const w = stage.clientWidth, h = stage.clientHeight;
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  };
  size();
  window.addEventListener('resize', size);
  let shownLevel = null;
  return {
    // Draw another scene in place of the current one (the fit map's full look and back).
    display(object) {
      if (current) scene.remove(current);
      current = object;
      scene.add(current);
      renderer.render(scene, camera);
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
      if (current) scene.remove(current);
      current = gltf.scene;
      shownLevel = gltf.scene;
      scene.add(current);
      const min = new THREE.Vector3(...bounds.min), max = new THREE.Vector3(...bounds.max);
      const centre = min.clone().add(max).multiplyScalar(0.5);
      const height = max.y - min.y;
      const distance = (height * 0.6) / Math.tan(THREE.MathUtils.degToRad(camera.fov / 2));
      camera.position.set(centre.x, centre.y, centre.z + distance);
      camera.lookAt(centre);
      renderer.render(scene, camera);
      const box = new THREE.Box3().setFromObject(current, true);
      state.boundingBox = { min: box.min.toArray(), max: box.max.toArray() };
      // One pixel at the figure's depth, in millimetres.
      const viewHeightM = 2 * distance * Math.tan(THREE.MathUtils.degToRad(camera.fov / 2));
      return (viewHeightM / (stage.clientHeight * window.devicePixelRatio)) * 1000;
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
  const viewer = viewerKind === 'model-viewer' ? modelViewer() : threeViewer();
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
  const modes = { garment: 'Garment', strain: 'Stretch', ease: 'Ease' };
  let full = null; // {scene, fit}
  let legend = legendElement({ legend: {} }, 'garment');
  const group = document.createElement('div');
  group.className = 'fit-switch';
  group.setAttribute('role', 'radiogroup');
  group.setAttribute('aria-label', 'Fit map');
  const title = document.createElement('span');
  title.className = 'fit-switch-title';
  title.textContent = 'Fit map';
  group.append(title);
  const buttons = {};
  async function choose(mode) {
    for (const [m, b] of Object.entries(buttons)) b.setAttribute('aria-checked', m === mode ? 'true' : 'false');
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
      modes: full ? full.fit.modes : Object.keys(modes),
      texturedGarments: full ? full.fit.texturedCount : null,
    };
  }
  for (const [mode, name] of Object.entries(modes)) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'fit-mode';
    button.dataset.mode = mode;
    button.setAttribute('role', 'radio');
    button.setAttribute('aria-checked', mode === 'garment' ? 'true' : 'false');
    button.textContent = name;
    button.addEventListener('click', () => {
      choose(mode).catch((err) => {
        state.error = { message: String(err.message || err), status: null, code: 'fit_map_failed' };
        label.textContent = `could not show the fit map: ${state.error.message}`;
      });
    });
    buttons[mode] = button;
    group.append(button);
  }
  holder.replaceChildren(group, legend);
  holder.hidden = false;
  state.fitMap = { mode: 'garment', loaded: false, modes: Object.keys(modes), texturedGarments: null };
}

main().catch((err) => {
  state.error = { message: String(err.message || err), status: err.status ?? null, code: err.code ?? null };
  label.textContent = `could not show the look: ${state.error.message}`;
});
