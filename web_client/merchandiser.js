// SpatialTwin merchandiser page.
//
// Upload a garment file with its catalogue facts (SKU, name, category, size, fabric, units),
// follow the upload and then the server's processing job, read the API's refusal when a file
// is rejected, browse the garments the server keeps, and look at a garment placed on a twin at
// true scale (metres, +Y up, facing +Z), in its own materials and textures. "Drape & fit map"
// drapes it there with the cloth solver (a look) and adds the fit-map switch (stretch, ease).
//
// API (all under /api/v1):
//   GET  fabrics, twins, garments
//   POST garments  multipart: file + metadata (JSON) → 201 garment | 202 {job, links.job}
//   GET  jobs/{id} → {status: queued|running|done|failed, progress 0..1, stage, result, error}
//   GET  garments/{id}/preview.glb?twin=<twin id>
//   POST looks {twin, garments: [id]} → 202 {job, links.job}; the done job's result is the look
//   GET  looks/{id}/look.glb
//   errors: 4xx {"error": {"code", "message", "detail"}}
//
// Uploads and drapes need a brand's (or an admin's) token: open the page once with
// ?token=… (`spatialtwin token issue --role brand --tenant …`, or the demo brand token that
// `spatialtwin serve` prints on its first start); it is kept in this browser's localStorage.
//
// Tests read `window.spatialTwinMerchandiser` (see `pageState`).

rememberToken();

import { API_ROOT, ApiError, errorState, getBytes, getJson, listFrom, postForm, postJson, rememberToken, waitForJob } from './lib/api.js';
import { byIds, chip, el, facts, formatCentimetres } from './lib/dom.js';
import { FitMap, fitMapControl } from './lib/fit-map.js';
import { STUDIO, gltfLoader, openStage } from './lib/stage.js';

// Share of the progress bar given to sending the file; the server's processing gets the rest.
const UPLOAD_SHARE = 0.3;

// ---------------------------------------------------------------------------------------------
// State exposed to tests and to anyone debugging in the console.

const pageState = {
  ready: false, // fabrics, twins and garments listed; the form is usable
  lastError: null, // {status, code, message, detail} of the last refusal or failure
  lastGarment: null, // the garment record of the last successful upload
  previewLoaded: false, // the selected garment is drawn on the selected twin
  previewBoundingBox: null, // {min: [x,y,z], max: [x,y,z]} metres, of the whole preview
  progress: 0, // 0..1 of the current upload (sending, then processing)
  phase: 'idle', // idle | uploading | processing | done | failed
  selectedGarmentId: null,
  twinId: null,
  look: null, // {id, status: draping|done|failed} of the last "Drape & fit map"
  // When a look is shown: {available, modes, mode, garments, texturedGarments} (lib/fit-map.js)
  fitMap: null,
};
window.spatialTwinMerchandiser = pageState;

// ---------------------------------------------------------------------------------------------
// Formatting.

function formatLength(metres) {
  if (typeof metres !== 'number' || !Number.isFinite(metres)) return '—';
  return metres >= 1 ? `${metres.toFixed(3)} m` : formatCentimetres(metres);
}

function formatExtent(extent) {
  if (!Array.isArray(extent) || extent.length !== 3) return '—';
  return `${extent.map((e) => (e * 100).toFixed(1)).join(' × ')} cm`;
}

function formatCount(n) {
  return typeof n === 'number' ? n.toLocaleString('en') : '—';
}

const UNIT_NAMES = { m: 'metres', dm: 'decimetres', cm: 'centimetres', mm: 'millimetres', in: 'inches' };
const CATEGORY_NAMES = {
  top: 'Top', outerwear: 'Outerwear', dress: 'Dress', skirt: 'Skirt', trousers: 'Trousers', outfit: 'Outfit',
};

function fabricName(fabric) {
  if (!fabric) return '—';
  if (typeof fabric === 'string') return fabric;
  return fabric.name ?? fabric.id ?? '—';
}

function materialText(materials) {
  if (!Array.isArray(materials) || materials.length === 0) return '—';
  return materials.map((m) => m.name ?? 'material').join(', ');
}

function textureText(images) {
  if (!Array.isArray(images) || images.length === 0) return 'none';
  return images.map((i) => `${i.width_px} × ${i.height_px} ${(i.mime ?? '').replace('image/', '').toUpperCase()}`).join(', ');
}

function warningText(w) {
  if (typeof w === 'string') return w;
  return w?.message ?? w?.code ?? JSON.stringify(w);
}

const dom = byIds({
  form: 'upload-form',
  file: 'garment-file',
  fileLabel: 'file-label',
  dropzone: 'dropzone',
  sku: 'garment-sku',
  name: 'garment-name',
  category: 'garment-category',
  size: 'garment-size',
  fabric: 'garment-fabric',
  fabricSummary: 'fabric-summary',
  units: 'garment-units',
  uploadButton: 'upload-button',
  status: 'upload-status',
  phase: 'upload-phase',
  percent: 'upload-percent',
  progress: 'upload-progress',
  stage: 'upload-stage',
  error: 'upload-error',
  errorTitle: 'upload-error-title',
  errorCode: 'upload-error-code',
  errorMessage: 'upload-error-message',
  errorDetailBox: 'upload-error-detail-box',
  errorDetail: 'upload-error-detail',
  success: 'upload-success',
  twinSelect: 'twin-select',
  drapeButton: 'drape-button',
  fitMap: 'fit-map',
  stageName: 'stage-garment-name',
  viewport: 'viewport',
  viewportStatus: 'viewport-status',
  viewportStatusText: 'viewport-status-text',
  viewportError: 'viewport-error',
  viewportErrorMessage: 'viewport-error-message',
  viewportErrorCode: 'viewport-error-code',
  previewSize: 'preview-size',
  list: 'garment-list',
  count: 'garment-count',
  details: 'garment-details',
});

// ---------------------------------------------------------------------------------------------
// Upload panel.

function setProgress(fraction, phase, stageText) {
  const clamped = Math.max(0, Math.min(1, fraction));
  pageState.progress = clamped;
  pageState.phase = phase;
  const percent = Math.round(clamped * 100);
  dom.status.hidden = false;
  dom.status.dataset.phase = phase;
  dom.progress.value = percent;
  dom.percent.textContent = `${percent}%`;
  dom.phase.textContent = {
    uploading: 'Uploading file',
    processing: 'Processing on the server',
    done: 'Garment ready',
    failed: 'Upload failed',
  }[phase] ?? phase;
  dom.stage.textContent = stageText ?? '';
}

function clearUploadMessages() {
  dom.error.hidden = true;
  dom.success.hidden = true;
  dom.success.replaceChildren();
}

function showUploadError(err) {
  const state = errorState(err);
  pageState.lastError = state;
  dom.errorTitle.textContent = state.status ? `Upload rejected (HTTP ${state.status})` : 'Upload failed';
  dom.errorCode.textContent = state.code ?? '';
  dom.errorCode.hidden = !state.code;
  dom.errorMessage.textContent = state.message;
  const hasDetail = state.detail !== null && state.detail !== undefined;
  dom.errorDetailBox.hidden = !hasDetail;
  dom.errorDetail.textContent = hasDetail
    ? (typeof state.detail === 'string' ? state.detail : JSON.stringify(state.detail, null, 2))
    : '';
  dom.error.hidden = false;
}

function showUploadSuccess(record) {
  dom.success.replaceChildren(
    el('strong', { text: `${record.name ?? record.sku} is ready.` }),
    ' ',
    el('span', {
      text: `Read as ${UNIT_NAMES[record.units] ?? record.units}${record.units_detected ? ' (detected)' : ''}, `
        + `${formatLength(record.extent_m?.[1])} tall.`,
    }),
  );
  dom.success.hidden = false;
}

function readMetadata() {
  return {
    sku: dom.sku.value.trim(),
    name: dom.name.value.trim(),
    category: dom.category.value,
    size_label: dom.size.value.trim(),
    fabric: dom.fabric.value,
    units: dom.units.value,
  };
}

// Checks the page can make before sending anything; the server checks everything again.
function checkForm(meta) {
  const missing = [];
  if (!dom.file.files || dom.file.files.length === 0) missing.push('file');
  for (const key of ['sku', 'name', 'size_label', 'fabric']) if (!meta[key]) missing.push(key);
  if (missing.length) {
    const err = new Error(`Please fill in: ${missing.join(', ').replace('size_label', 'size label')}`);
    err.code = 'missing_fields';
    err.detail = { missing };
    throw err;
  }
}

function sendUpload(file, meta, onProgress) {
  const body = new FormData();
  body.append('file', file, file.name);
  body.append('metadata', new Blob([JSON.stringify(meta)], { type: 'application/json' }), 'metadata.json');
  return postForm(`${API_ROOT}/garments`, body, onProgress);
}

// The garment record a processing job made.
async function followJob(jobUrl, onProgress) {
  const job = await waitForJob(jobUrl, { onProgress, failedMessage: 'Processing failed on the server.' });
  if (!job.result) throw new ApiError(null, 'job_without_result', 'The server finished without a garment record.', { job: job.id });
  return job.result;
}

async function uploadGarment(events) {
  clearUploadMessages();
  pageState.lastError = null;
  const meta = readMetadata();
  try {
    checkForm(meta);
  } catch (err) {
    pageState.phase = 'failed';
    showUploadError(err);
    return;
  }
  const file = dom.file.files[0];
  dom.uploadButton.disabled = true;
  dom.form.setAttribute('aria-busy', 'true');
  setProgress(0, 'uploading', `Sending ${file.name} (${(file.size / 1024).toFixed(0)} KiB)`);
  try {
    const answer = await sendUpload(file, meta, (f) =>
      setProgress(UPLOAD_SHARE * f, 'uploading', `Sending ${file.name} — ${Math.round(f * 100)}%`));
    let record;
    if (answer.status === 202) {
      const job = answer.body?.job ?? {};
      const jobUrl = answer.body?.links?.job ?? `${API_ROOT}/jobs/${encodeURIComponent(job.id)}`;
      setProgress(UPLOAD_SHARE, 'processing', 'Queued');
      record = await followJob(jobUrl, (j) => {
        const p = typeof j.progress === 'number' ? j.progress : 0;
        const stage = j.stage ? `${j.stage[0].toUpperCase()}${j.stage.slice(1).replaceAll('_', ' ')}` : j.status;
        setProgress(UPLOAD_SHARE + (1 - UPLOAD_SHARE) * p, 'processing', stage);
      });
    } else {
      record = answer.body;
    }
    setProgress(1, 'done', `${record.name ?? record.sku} · ${record.id}`);
    pageState.lastGarment = record;
    showUploadSuccess(record);
    await events.onUploaded(record);
  } catch (err) {
    dom.status.dataset.phase = 'failed';
    pageState.phase = 'failed';
    dom.phase.textContent = 'Upload failed';
    dom.stage.textContent = err.status ? `Refused by the server (HTTP ${err.status})` : 'Stopped before the garment was ready';
    showUploadError(err);
  } finally {
    dom.uploadButton.disabled = false;
    dom.form.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------------
// Catalogue panel.

function renderGarmentList(garments, selectedId, onSelect) {
  dom.list.replaceChildren();
  dom.list.removeAttribute('aria-busy');
  dom.count.textContent = garments.length ? String(garments.length) : '';
  if (garments.length === 0) {
    dom.list.append(el('li', { className: 'empty', text: 'No garments yet. Upload the first one.' }));
    return;
  }
  for (const g of garments) {
    const button = el(
      'button',
      {
        type: 'button',
        className: 'garment-item',
        'data-garment-id': g.id,
        'aria-current': g.id === selectedId ? 'true' : 'false',
      },
      el('span', { className: 'garment-item-name', text: g.name ?? g.sku }),
      el(
        'span',
        { className: 'garment-item-meta' },
        el('span', { className: 'sku', text: g.sku }),
        chip(CATEGORY_NAMES[g.category] ?? g.category),
        g.size_label ? chip(g.size_label) : null,
      ),
    );
    button.addEventListener('click', () => onSelect(g.id));
    dom.list.append(el('li', {}, button));
  }
}

function markSelected(garmentId) {
  for (const item of dom.list.querySelectorAll('.garment-item')) {
    item.setAttribute('aria-current', item.dataset.garmentId === garmentId ? 'true' : 'false');
  }
}

function renderDetails(g) {
  dom.details.replaceChildren();
  if (!g) return;
  const warnings = Array.isArray(g.warnings) ? g.warnings : [];
  const pieces = Array.isArray(g.pieces) ? g.pieces.length : g.pieces;
  dom.details.append(
    el('h3', { text: g.name ?? g.sku }),
    el('p', { className: 'subtitle', text: `${g.id}` }),
    facts([
      ['SKU', g.sku, 'detail-sku'],
      ['Category', CATEGORY_NAMES[g.category] ?? g.category, 'detail-category'],
      ['Size', g.size_label, 'detail-size'],
      ['Fabric', fabricName(g.fabric), 'detail-fabric'],
      [
        'File units',
        `${UNIT_NAMES[g.units] ?? g.units ?? '—'}${g.units_detected ? ' (detected)' : ''}`,
        'detail-units',
      ],
      ['Up axis', g.up_axis, 'detail-up-axis'],
      ['Height', formatLength(g.extent_m?.[1]), 'detail-height'],
      ['W × H × D', formatExtent(g.extent_m), 'detail-extent'],
      ['Triangles', formatCount(g.triangles), 'detail-triangles'],
      ['Vertices', formatCount(g.vertices), 'detail-vertices'],
      ['Pieces', pieces ?? '—', 'detail-pieces'],
      ['Materials', materialText(g.materials), 'detail-materials'],
      ['Textures', textureText(g.images), 'detail-textures'],
    ]),
  );
  dom.details.querySelector('#detail-units').dataset.units = g.units ?? '';
  if (warnings.length) {
    dom.details.append(
      el('h4', { className: 'section-title', text: `Warnings (${warnings.length})` }),
      el('ul', { className: 'warnings' }, ...warnings.map((w) => el('li', { text: warningText(w) }))),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// 3D preview: the shared studio stage (lib/stage.js), one GLB at a time at true scale.

function showViewportStatus(text) {
  dom.viewportError.hidden = true;
  dom.viewportStatusText.textContent = text;
  dom.viewportStatus.hidden = false;
}

function showViewportError(err) {
  const state = errorState(err);
  dom.viewportStatus.hidden = true;
  dom.viewportErrorMessage.textContent = state.message;
  dom.viewportErrorCode.textContent = state.code ?? '';
  dom.viewportError.hidden = false;
  return state;
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function fillFabrics(fabrics) {
  dom.fabric.replaceChildren();
  if (fabrics.length === 0) {
    dom.fabric.append(el('option', { value: '', text: 'No fabrics available' }));
    return;
  }
  dom.fabric.append(el('option', { value: '', text: 'Choose a fabric…' }));
  for (const f of fabrics) {
    const label = f.name && f.name !== f.id ? `${f.name}` : f.id;
    dom.fabric.append(el('option', { value: f.id, text: label }));
  }
  dom.fabric.disabled = false;
  dom.fabric.addEventListener('change', () => {
    const f = fabrics.find((x) => x.id === dom.fabric.value);
    const bits = [];
    if (f?.composition) bits.push(f.composition);
    const gsm = f?.areal_density_g_m2 ?? f?.gsm ?? (f?.areal_density_kg_m2 ? f.areal_density_kg_m2 * 1000 : null);
    if (gsm) bits.push(`${Math.round(gsm)} g/m²`);
    if (f?.description) bits.push(f.description);
    dom.fabricSummary.textContent = bits.join(' · ');
  });
}

function fillTwins(twins) {
  dom.twinSelect.replaceChildren();
  if (twins.length === 0) {
    dom.twinSelect.append(el('option', { value: '', text: 'No twins available' }));
    return;
  }
  for (const t of twins) {
    const height = t.measurements?.height_m ? ` · ${t.measurements.height_m.toFixed(2)} m` : '';
    dom.twinSelect.append(el('option', { value: t.id, text: `${t.name ?? t.id}${height}` }));
  }
  dom.twinSelect.disabled = false;
}

async function main() {
  let stage = null;
  try {
    stage = await openStage(dom.viewport, { ...STUDIO, preserveDrawingBuffer: true });
  } catch (err) {
    showViewportError({ message: `WebGL is not available in this browser: ${err.message}`, code: 'webgl_unavailable' });
  }
  const loader = gltfLoader();

  let garments = [];
  let previewToken = 0;
  let fit = null;

  function clearFitMap() {
    fit?.dispose();
    fit = null;
    pageState.fitMap = null;
    dom.fitMap.hidden = true;
  }

  function updateDrapeButton() {
    const busy = pageState.look?.status === 'draping';
    dom.drapeButton.disabled = busy || !stage || !pageState.selectedGarmentId || !dom.twinSelect.value;
    dom.drapeButton.textContent = busy ? 'Draping…' : 'Drape & fit map';
  }

  // Drape the selected garment on the selected twin (a look) and show it with its fit map.
  async function drapeLook() {
    const garmentId = pageState.selectedGarmentId;
    const twinId = dom.twinSelect.value;
    if (!stage || !garmentId || !twinId) return;
    const token = ++previewToken;
    clearFitMap();
    pageState.previewLoaded = false;
    pageState.look = { id: null, status: 'draping' };
    updateDrapeButton();
    showViewportStatus('Draping the garment on the twin…');
    try {
      const started = await postJson(`${API_ROOT}/looks`, { twin: twinId, garments: [garmentId] });
      const job = await waitForJob(started.links.job, {
        failedMessage: 'The drape failed on the server.',
        onProgress: (j) => {
          if (token === previewToken) showViewportStatus(`Draping… ${Math.round((j.progress ?? 0) * 100)}%`);
        },
      });
      const look = job.result;
      const bytes = await getBytes(look.links?.glb ?? `${API_ROOT}/looks/${encodeURIComponent(look.id)}/look.glb`);
      const gltf = await loader.parseAsync(bytes, '');
      if (token !== previewToken) return;
      const box = stage.show(gltf.scene);
      dom.viewportStatus.hidden = true;
      fit = new FitMap(gltf.scene, gltf.asset?.extras?.spatialtwin?.fitMap);
      const record = (mode) => {
        pageState.fitMap = {
          available: fit.available, modes: fit.modes, mode, garments: fit.meshes.length, texturedGarments: fit.texturedCount,
        };
      };
      fitMapControl(dom.fitMap, fit, (mode) => {
        record(mode);
        stage.requestFrame();
      });
      record(fit.mode);
      await stage.drawn();
      if (token !== previewToken) return;
      pageState.previewBoundingBox = { min: box.min.toArray(), max: box.max.toArray() };
      pageState.look = { id: look.id, status: 'done', warnings: look.warnings ?? [] };
      pageState.previewLoaded = true;
    } catch (err) {
      if (token !== previewToken) return;
      pageState.look = { id: null, status: 'failed' };
      pageState.lastError = showViewportError(err instanceof ApiError ? err : { message: `Could not drape: ${err.message}`, code: 'bad_look' });
    } finally {
      updateDrapeButton();
    }
  }

  async function refreshGarments() {
    garments = listFrom(await getJson(`${API_ROOT}/garments`), 'garments');
    renderGarmentList(garments, pageState.selectedGarmentId, (id) => selectGarment(id));
  }

  async function loadPreview() {
    const token = ++previewToken;
    const garment = garments.find((g) => g.id === pageState.selectedGarmentId) ?? pageState.lastGarment;
    const twinId = dom.twinSelect.value;
    pageState.previewLoaded = false;
    pageState.previewBoundingBox = null;
    pageState.twinId = twinId || null;
    pageState.look = null;
    clearFitMap();
    updateDrapeButton();
    if (!stage || !garment || !twinId) return;
    stage.clear();
    showViewportStatus(`Placing ${garment.name ?? garment.sku} on the twin…`);
    try {
      const base = garment.links?.preview ?? `${API_ROOT}/garments/${encodeURIComponent(garment.id)}/preview.glb`;
      const url = new URL(base, window.location.href);
      url.searchParams.set('twin', twinId);
      const gltf = await loader.parseAsync(await getBytes(url.pathname + url.search), '');
      if (token !== previewToken) return;
      const box = stage.show(gltf.scene);
      dom.viewportStatus.hidden = true;
      await stage.drawn();
      if (token !== previewToken) return;
      pageState.previewBoundingBox = { min: box.min.toArray(), max: box.max.toArray() };
      dom.previewSize.textContent = `${formatLength(box.max.y - box.min.y)} tall · true scale · 0.5 m grid`;
      pageState.previewLoaded = true;
    } catch (err) {
      if (token !== previewToken) return;
      const state = showViewportError(err instanceof ApiError ? err : { message: `Could not read the preview: ${err.message}`, code: 'bad_preview' });
      pageState.lastError = state;
    }
  }

  async function selectGarment(id) {
    pageState.selectedGarmentId = id;
    markSelected(id);
    const garment = garments.find((g) => g.id === id) ?? (pageState.lastGarment?.id === id ? pageState.lastGarment : null);
    renderDetails(garment);
    dom.stageName.textContent = garment ? `${garment.name ?? garment.sku} · ${garment.size_label ?? ''}` : 'No garment selected';
    await loadPreview();
  }

  dom.file.addEventListener('change', () => {
    const file = dom.file.files?.[0];
    dom.fileLabel.textContent = file ? `${file.name} · ${(file.size / 1024).toFixed(0)} KiB` : 'Choose a garment file';
    dom.dropzone.classList.toggle('has-file', !!file);
  });
  dom.form.addEventListener('reset', () => {
    dom.fileLabel.textContent = 'Choose a garment file';
    dom.dropzone.classList.remove('has-file');
    clearUploadMessages();
    dom.status.hidden = true;
  });
  dom.form.addEventListener('submit', (event) => {
    event.preventDefault();
    uploadGarment({
      onUploaded: async (record) => {
        try {
          await refreshGarments();
        } catch (err) {
          showUploadError(err);
        }
        if (!garments.some((g) => g.id === record.id)) {
          garments.push(record);
          renderGarmentList(garments, record.id, (id) => selectGarment(id));
        }
        await selectGarment(record.id);
      },
    });
  });
  dom.twinSelect.addEventListener('change', () => loadPreview());
  dom.drapeButton.addEventListener('click', () => drapeLook());

  const [fabrics, twins] = await Promise.all([
    getJson(`${API_ROOT}/fabrics`).then((b) => listFrom(b, 'fabrics')),
    getJson(`${API_ROOT}/twins`).then((b) => listFrom(b, 'twins')),
  ]);
  fillFabrics(fabrics);
  fillTwins(twins);
  await refreshGarments();
  pageState.ready = true;
}

main().catch((err) => {
  const state = errorState(err);
  pageState.lastError = state;
  showUploadError(err);
  dom.list.removeAttribute('aria-busy');
});
