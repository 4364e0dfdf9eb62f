// Fit map overlay for looks: colour the draped garments by stretch or ease instead of their
// own material, with a legend, and back again.
//
// A look GLB carries every garment with its own material (textures, normal map) and two
// custom vertex attributes, which three.js's GLTFLoader names in lower case:
//   _STRAIN → geometry.attributes._strain   fabric stretch, a fraction (0.03 = 3 %)
//   _EASE   → geometry.attributes._ease     distance from the body, metres, + outside
// The legend (bands, labels, sRGB colours, display units) is in
// gltf.asset.extras.spatialtwin.fitMap, written by the server (spatialtwin.cloth.fit_map).
//
//   const fit = new FitMap(gltf.scene, gltf.asset?.extras?.spatialtwin?.fitMap);
//   const control = fitMapControl(container, fit, (mode) => stage.requestFrame());
//   fit.setMode('strain');   // 'garment' | 'strain' | 'ease'

import * as THREE from 'three';
import { el } from './dom.js';

export const FIT_MODES = ['garment', 'strain', 'ease'];
const MODE_NAMES = { garment: 'Garment', strain: 'Stretch', ease: 'Ease' };
const MODE_HINTS = {
  garment: 'The garment as it looks: its own colours and textures',
  strain: 'How much the fabric is stretched over the body',
  ease: 'How far the garment sits from the body',
};

// Only used when a GLB has the attributes but no legend (an older look).
const FALLBACK_LEGEND = {
  strain: {
    attribute: '_STRAIN', unit: 'fraction', displayUnit: '%', displayFactor: 100,
    bands: [
      { below: 0.03, label: 'relaxed', colour: '#d9d4cc' },
      { below: 0.08, label: 'snug', colour: '#f2a541' },
      { below: null, label: 'tight', colour: '#d7263d' },
    ],
  },
  ease: {
    attribute: '_EASE', unit: 'm', displayUnit: 'cm', displayFactor: 100,
    bands: [
      { below: 0.005, label: 'on the body', colour: '#e8c07d' },
      { below: 0.03, label: 'close', colour: '#d9d4cc' },
      { below: 0.08, label: 'relaxed', colour: '#9cc3e4' },
      { below: null, label: 'loose', colour: '#3d7fc1' },
    ],
  },
};

function bandIndex(bands, value) {
  for (let i = 0; i < bands.length; i++) {
    if (bands[i].below === null || bands[i].below === undefined || value < bands[i].below) return i;
  }
  return bands.length - 1;
}

function formatNumber(x) {
  const rounded = Math.round(x * 10) / 10;
  return Number.isInteger(rounded) ? String(rounded) : rounded.toFixed(1);
}

// "< 3 %", "3–8 %", "≥ 8 %" for each band of a scale.
export function bandRanges(scale) {
  const f = scale.displayFactor ?? 1;
  const unit = scale.displayUnit ?? scale.unit ?? '';
  return scale.bands.map((band, i) => {
    const lo = i > 0 ? scale.bands[i - 1].below : null;
    const hi = band.below;
    if (lo === null || lo === undefined) return `< ${formatNumber(hi * f)} ${unit}`;
    if (hi === null || hi === undefined) return `≥ ${formatNumber(lo * f)} ${unit}`;
    return `${formatNumber(lo * f)}–${formatNumber(hi * f)} ${unit}`;
  });
}

export class FitMap {
  constructor(root, legend) {
    this.legend = legend && legend.strain ? legend : FALLBACK_LEGEND;
    this.mode = 'garment';
    this.meshes = [];
    root.traverse((node) => {
      const attrs = node.isMesh ? node.geometry?.attributes : null;
      if (!attrs || (!attrs._strain && !attrs._ease)) return;
      this.meshes.push({ mesh: node, material: node.material, fit: null, colours: {} });
    });
  }

  get available() {
    return this.meshes.length > 0;
  }

  // Modes this look can show: the garment always, each quantity when its attribute is there.
  get modes() {
    const modes = ['garment'];
    for (const mode of ['strain', 'ease']) {
      const attribute = `_${mode}`;
      if (this.meshes.some((m) => m.mesh.geometry.attributes[attribute])) modes.push(mode);
    }
    return modes;
  }

  // Garment meshes drawn with an image texture (base colour) in their own material.
  get texturedCount() {
    return this.meshes.filter((m) => !!m.material?.map).length;
  }

  // Share of garment vertices in each band of `mode` (for the legend and for tests).
  shares(mode) {
    const scale = this.legend[mode];
    const counts = new Array(scale.bands.length).fill(0);
    let total = 0;
    for (const { mesh } of this.meshes) {
      const attr = mesh.geometry.attributes[`_${mode}`];
      if (!attr) continue;
      for (let i = 0; i < attr.count; i++) counts[bandIndex(scale.bands, attr.getX(i))]++;
      total += attr.count;
    }
    return counts.map((c) => (total ? c / total : 0));
  }

  colours(entry, mode) {
    if (entry.colours[mode]) return entry.colours[mode];
    const scale = this.legend[mode];
    const attr = entry.mesh.geometry.attributes[`_${mode}`];
    const palette = scale.bands.map((b) => new THREE.Color(b.colour)); // sRGB in, linear held
    const data = new Float32Array(attr.count * 3);
    for (let i = 0; i < attr.count; i++) {
      const c = palette[bandIndex(scale.bands, attr.getX(i))];
      data[3 * i] = c.r;
      data[3 * i + 1] = c.g;
      data[3 * i + 2] = c.b;
    }
    entry.colours[mode] = new THREE.BufferAttribute(data, 3);
    return entry.colours[mode];
  }

  setMode(mode) {
    if (!this.modes.includes(mode)) mode = 'garment';
    this.mode = mode;
    for (const entry of this.meshes) {
      const { mesh } = entry;
      if (mode === 'garment' || !mesh.geometry.attributes[`_${mode}`]) {
        mesh.material = entry.material;
        continue;
      }
      mesh.geometry.setAttribute('color', this.colours(entry, mode));
      if (!entry.fit) {
        entry.fit = new THREE.MeshStandardMaterial({
          vertexColors: true,
          roughness: 0.9,
          metalness: 0,
          side: entry.material?.side ?? THREE.DoubleSide,
        });
      }
      mesh.material = entry.fit;
    }
    return mode;
  }

  dispose() {
    this.setMode('garment');
    for (const entry of this.meshes) entry.fit?.dispose();
  }
}

// The legend of `mode` for a FitMap (hidden for "garment").
export function legendElement(fit, mode) {
  const box = el('div', { className: 'fit-legend', 'data-mode': mode });
  if (mode === 'garment') {
    box.hidden = true;
    return box;
  }
  const scale = fit.legend[mode];
  const ranges = bandRanges(scale);
  const shares = fit.shares(mode);
  box.append(
    el('p', { className: 'fit-legend-title', text: `${MODE_NAMES[mode]} (${scale.displayUnit ?? scale.unit})` }),
    el('ul', {}, ...scale.bands.map((band, i) => el(
      'li',
      { className: 'fit-legend-band' },
      el('span', { className: 'fit-swatch', style: `background: ${band.colour}` }),
      el('span', { className: 'fit-legend-label', text: `${band.label}` }),
      el('span', { className: 'fit-legend-range', text: ranges[i] }),
      el('span', { className: 'fit-legend-share', text: `${Math.round(shares[i] * 100)} %` }),
    ))),
  );
  return box;
}

// The "Fit map: Garment | Stretch | Ease" radio group over `modes`; a click calls
// `onChoose(mode)`, and `check(mode)` marks the mode shown. Returns {element, check}.
export function fitSwitch(modes, checked, onChoose) {
  const buttons = {};
  const element = el('div', { className: 'fit-switch', role: 'radiogroup', 'aria-label': 'Fit map' },
    el('span', { className: 'fit-switch-title', text: 'Fit map' }));
  for (const mode of modes) {
    const button = el('button', {
      type: 'button',
      className: 'fit-mode',
      'data-mode': mode,
      role: 'radio',
      'aria-checked': mode === checked ? 'true' : 'false',
      title: MODE_HINTS[mode],
      text: MODE_NAMES[mode],
    });
    button.addEventListener('click', () => onChoose(mode));
    buttons[mode] = button;
    element.append(button);
  }
  const check = (mode) => {
    for (const [m, b] of Object.entries(buttons)) b.setAttribute('aria-checked', m === mode ? 'true' : 'false');
  };
  return { element, check };
}

// A fit switch and the legend of the mode shown, inside `container`, for a look already loaded.
export function fitMapControl(container, fit, onChange = () => {}) {
  container.replaceChildren();
  container.hidden = !fit.available;
  if (!fit.available) return { setMode: () => 'garment' };
  let legend = legendElement(fit, 'garment');
  const show = (mode) => {
    const shown = fit.setMode(mode);
    control.check(shown);
    const next = legendElement(fit, shown);
    legend.replaceWith(next);
    legend = next;
    onChange(shown);
    return shown;
  };
  const control = fitSwitch(fit.modes, fit.mode, show);
  container.append(control.element, legend);
  return { setMode: show };
}
