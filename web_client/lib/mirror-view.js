// What a mirror session looks like on screen, for the mirror page and the watch page alike: the
// twin's skinned body posed by each result frame, its garments moved by their vertex streams,
// on the shared stage's MIRROR view (orthographic, true scale), drawn once per result.
//
//   const view = await openMirrorView(container, { pxPerMetre: 1450, canvasLabel: '…' });
//   await view.setTwin(welcome.twin.body_url, welcome.joints);
//   await view.setGarments(welcome.garments);
//   client.onResult = (result) => view.push(result);   // lib/mirror-client.js's parsed STMR
//
// Every result's vertex-stream frames are decoded as they arrive (a delta needs the frame
// before it), but only the latest result is drawn, on the next animation frame: a page that
// cannot draw every result skips some instead of falling behind. Each drawn result is logged
// with its capture-to-draw latency (the capture time the mirror put in its camera frame, on the
// mirror's own clock, to just after the frame was handed to WebGL) and the twin's knee angles,
// which tests and the page's readout read.

import * as THREE from 'three';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';
import { getBytes } from './api.js';
import { FitMap } from './fit-map.js';
import { SkinnedTwin } from './skinned-twin.js';
import { MIRROR, gltfLoader, openStage } from './stage.js';
import { VertexStreamDecoder, VertexStreamError } from './vertex-stream.js';

export const LOG_LIMIT = 4000; // drawn results kept for tests and the readout (≈ 2 min at 30 Hz)
export const LATENCY_WINDOW = 300; // latency percentiles over the last this many drawn results

export class MirrorViewError extends Error {
  constructor(code, message, detail = null) {
    super(message);
    this.name = 'MirrorViewError';
    this.code = code;
    this.detail = detail;
  }
}

// The p-th percentile (0–100) of a list of numbers, linearly interpolated; null when empty.
export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

function pushBounded(list, item, limit) {
  list.push(item);
  if (list.length > limit) list.splice(0, list.length - limit);
}

function dispose(root) {
  root.traverse((node) => {
    node.geometry?.dispose();
    const materials = Array.isArray(node.material) ? node.material : node.material ? [node.material] : [];
    for (const material of materials) {
      for (const value of Object.values(material)) if (value?.isTexture) value.dispose();
      material.dispose();
    }
  });
}

// A garment's display mesh (src/spatialtwin/gltf/stream_mesh_glb.py), moved by its vertex
// stream. glTF keeps one UV per vertex, so the GLB splits the stream's vertices at UV seams:
// its first N vertices are the N stream vertices in stream order, the seam copies follow, and
// the attribute `_STREAM_VERTEX` (three.js: `_stream_vertex`) names the stream vertex each glTF
// vertex shows. Normals are computed on the stream's own (welded) mesh and copied out, so seams
// do not show as creases.
export class LiveGarment {
  constructor(gltf, garment) {
    let mesh = null;
    gltf.scene.traverse((node) => {
      if (node.isMesh && !mesh) mesh = node;
    });
    if (!mesh) throw new MirrorViewError('bad_garment_mesh', 'the garment GLB holds no mesh', { stream: garment.stream });
    const geometry = mesh.geometry;
    const count = geometry.attributes.position.count;
    const extras = gltf.asset?.extras?.spatialtwin ?? {};
    const n = Number.isInteger(garment.vertices) ? garment.vertices : Number.isInteger(extras.streamVertices) ? extras.streamVertices : count;
    // (1) which stream vertex each glTF vertex shows
    const streamOf = new Uint32Array(count);
    const mapping = geometry.attributes._stream_vertex;
    for (let i = 0; i < count; i += 1) {
      const s = mapping ? Math.round(mapping.getX(i)) : i;
      if (!(s >= 0 && s < n)) {
        throw new MirrorViewError('bad_garment_mesh', 'a garment vertex names no stream vertex', { stream: garment.stream, vertex: i, streamVertex: s, streamVertices: n });
      }
      streamOf[i] = s;
    }
    if (!mapping && count !== n) {
      throw new MirrorViewError('bad_garment_mesh', 'the garment mesh has another vertex count than its stream', { stream: garment.stream, mesh: count, streamVertices: n });
    }
    // (2) the triangles over stream vertices, for normals
    const index = geometry.index;
    const triangles = index ? index.count : count;
    this.streamFaces = new Uint32Array(triangles);
    for (let k = 0; k < triangles; k += 1) this.streamFaces[k] = streamOf[index ? index.getX(k) : k];
    // (3) plain float positions and normals in world metres, the node at the origin
    gltf.scene.updateMatrixWorld(true);
    const xyz = new Float32Array(3 * n);
    const v = new THREE.Vector3();
    for (let i = 0; i < count; i += 1) {
      v.fromBufferAttribute(geometry.attributes.position, i).applyMatrix4(mesh.matrixWorld);
      xyz.set([v.x, v.y, v.z], 3 * streamOf[i]);
    }
    for (const name of ['position', 'normal']) {
      const attribute = new THREE.BufferAttribute(new Float32Array(3 * count), 3);
      attribute.setUsage(THREE.DynamicDrawUsage);
      geometry.setAttribute(name, attribute);
    }
    mesh.removeFromParent();
    mesh.position.set(0, 0, 0);
    mesh.quaternion.identity();
    mesh.scale.set(1, 1, 1);
    mesh.frustumCulled = false; // the cloth moves far from where it was loaded
    mesh.name = `garment-${garment.stream}`;
    mesh.userData.garment = garment;
    this.mesh = mesh;
    this.garment = garment;
    this.stream = garment.stream;
    this.streamVertices = n;
    this.streamOf = streamOf;
    this.streamNormals = new Float32Array(3 * n);
    this.legend = extras.fitMap ?? null;
    this.drapeXyz = xyz; // stream-order positions at the twin's bind pose, as loaded
    this.setPositions(xyz);
  }

  // Stream-order positions (Float32Array, 3 per stream vertex) onto the mesh, normals with them.
  setPositions(xyz) {
    if (xyz.length !== 3 * this.streamVertices) {
      throw new MirrorViewError('bad_garment_frame', 'a stream frame with another vertex count than the mesh', { stream: this.stream, got: xyz.length / 3, expected: this.streamVertices });
    }
    const { streamOf, streamFaces, streamNormals: nrm } = this;
    const geometry = this.mesh.geometry;
    const pos = geometry.attributes.position.array;
    const out = geometry.attributes.normal.array;
    nrm.fill(0);
    for (let k = 0; k < streamFaces.length; k += 3) {
      const a = 3 * streamFaces[k];
      const b = 3 * streamFaces[k + 1];
      const c = 3 * streamFaces[k + 2];
      const ux = xyz[b] - xyz[a], uy = xyz[b + 1] - xyz[a + 1], uz = xyz[b + 2] - xyz[a + 2];
      const wx = xyz[c] - xyz[a], wy = xyz[c + 1] - xyz[a + 1], wz = xyz[c + 2] - xyz[a + 2];
      const nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx; // area-weighted
      for (const p of [a, b, c]) {
        nrm[p] += nx;
        nrm[p + 1] += ny;
        nrm[p + 2] += nz;
      }
    }
    for (let p = 0; p < nrm.length; p += 3) {
      const length = Math.hypot(nrm[p], nrm[p + 1], nrm[p + 2]) || 1;
      nrm[p] /= length;
      nrm[p + 1] /= length;
      nrm[p + 2] /= length;
    }
    for (let i = 0; i < streamOf.length; i += 1) {
      const s = 3 * streamOf[i];
      pos[3 * i] = xyz[s];
      pos[3 * i + 1] = xyz[s + 1];
      pos[3 * i + 2] = xyz[s + 2];
      out[3 * i] = nrm[s];
      out[3 * i + 1] = nrm[s + 1];
      out[3 * i + 2] = nrm[s + 2];
    }
    geometry.attributes.position.needsUpdate = true;
    geometry.attributes.normal.needsUpdate = true;
  }
}

// The fit map of a live garment comes from its look: the look GLB
// (`/api/v1/looks/{id}/look.glb`) carries each garment's stretch and ease (`_STRAIN`, `_EASE`)
// at rest, on the garment's render mesh, in another vertex order than the stream's. Both are the
// same drape at the twin's bind pose, so each stream vertex takes the values of the look vertex
// nearest to it (within FIT_MAX_DISTANCE_M): the fit as draped at rest, shown on the moving
// cloth. Nearest points are found in a uniform grid of FIT_CELL_M cells.
export const FIT_CELL_M = 0.02;
export const FIT_MAX_DISTANCE_M = 0.06;

export function nearestIndices(targetXyz, sourceXyz, cellM = FIT_CELL_M, maxDistanceM = FIT_MAX_DISTANCE_M) {
  const key = (x, y, z) => `${x},${y},${z}`;
  const grid = new Map();
  const sourceCount = sourceXyz.length / 3;
  for (let i = 0; i < sourceCount; i += 1) {
    const k = key(Math.floor(sourceXyz[3 * i] / cellM), Math.floor(sourceXyz[3 * i + 1] / cellM), Math.floor(sourceXyz[3 * i + 2] / cellM));
    if (!grid.has(k)) grid.set(k, []);
    grid.get(k).push(i);
  }
  const count = targetXyz.length / 3;
  const index = new Int32Array(count).fill(-1);
  const distanceM = new Float32Array(count).fill(Infinity);
  const rings = Math.ceil(maxDistanceM / cellM);
  for (let t = 0; t < count; t += 1) {
    const x = targetXyz[3 * t], y = targetXyz[3 * t + 1], z = targetXyz[3 * t + 2];
    const cx = Math.floor(x / cellM), cy = Math.floor(y / cellM), cz = Math.floor(z / cellM);
    let best = -1;
    let bestD2 = maxDistanceM * maxDistanceM;
    // Grow the searched cube ring by ring; stop once the ring lies beyond the best found.
    for (let r = 0; r <= rings; r += 1) {
      if (best >= 0 && (r - 1) * cellM > Math.sqrt(bestD2)) break;
      for (let dx = -r; dx <= r; dx += 1) {
        for (let dy = -r; dy <= r; dy += 1) {
          for (let dz = -r; dz <= r; dz += 1) {
            if (Math.max(Math.abs(dx), Math.abs(dy), Math.abs(dz)) !== r) continue;
            const cell = grid.get(key(cx + dx, cy + dy, cz + dz));
            if (!cell) continue;
            for (const i of cell) {
              const ex = sourceXyz[3 * i] - x, ey = sourceXyz[3 * i + 1] - y, ez = sourceXyz[3 * i + 2] - z;
              const d2 = ex * ex + ey * ey + ez * ez;
              if (d2 < bestD2) {
                bestD2 = d2;
                best = i;
              }
            }
          }
        }
      }
    }
    index[t] = best;
    if (best >= 0) distanceM[t] = Math.sqrt(bestD2);
  }
  return { index, distanceM };
}

// World positions (Float32Array) and the named float attributes of a mesh.
function meshSamples(mesh, names) {
  const position = mesh.geometry.attributes.position;
  const xyz = new Float32Array(3 * position.count);
  const v = new THREE.Vector3();
  for (let i = 0; i < position.count; i += 1) {
    v.fromBufferAttribute(position, i).applyMatrix4(mesh.matrixWorld);
    xyz[3 * i] = v.x;
    xyz[3 * i + 1] = v.y;
    xyz[3 * i + 2] = v.z;
  }
  const values = {};
  for (const name of names) {
    const attribute = mesh.geometry.attributes[name];
    if (attribute) values[name] = Array.from({ length: attribute.count }, (_, i) => attribute.getX(i));
  }
  return { xyz, values };
}

// The garment id a look GLB's mesh belongs to (node extras `spatialtwin.garmentId`, on the
// mesh's node or a parent when a garment has several primitives).
function garmentIdOf(node) {
  for (let n = node; n; n = n.parent) {
    const id = n.userData?.spatialtwin?.garmentId;
    if (id) return id;
  }
  return null;
}

// `floorPx`: how far above the bottom edge the floor is drawn (CSS pixels; MIRROR's default
// otherwise), say to keep the feet clear of a readout.
export async function openMirrorView(container, { pxPerMetre, canvasLabel, floorPx = MIRROR.floorPx, onDrawn = () => {}, onStreamGap = () => {} } = {}) {
  const stage = await openStage(container, { ...MIRROR, pxPerMetre, canvasLabel, floorPx });
  await MeshoptDecoder.ready;
  return new MirrorView(stage, { onDrawn, onStreamGap });
}

export class MirrorView {
  constructor(stage, { onDrawn, onStreamGap }) {
    this.stage = stage;
    this.onDrawn = onDrawn;
    this.onStreamGap = onStreamGap;
    this.loader = gltfLoader();
    this.group = new THREE.Group();
    this.group.name = 'mirror';
    this.stage.show(this.group, { frame: false });
    this.twin = null; // SkinnedTwin
    this.twinScene = null;
    this.provenance = null;
    this.garments = new Map(); // stream -> LiveGarment
    this.garmentScene = new THREE.Group();
    this.group.add(this.garmentScene);
    this.fit = null; // FitMap over the garments, when their meshes carry fit attributes
    this.decoder = new VertexStreamDecoder(MeshoptDecoder);
    this.latest = null; // {result, positions: Map(stream -> Float32Array), receivedTMs}
    this.drawPending = false;
    this.held = false; // a held view keeps decoding but draws nothing new
    this.log = []; // drawn results: {frameId, captureTMs, receivedTMs, drawnTMs, latencyMs, tracked, serverMs, kneeDeg}
    this.counts = { results: 0, drawn: 0, skipped: 0, gaps: 0, badStreams: 0 };
    this.drawTimesMs = []; // performance.now() of recent draws, for the rate
  }

  // Load the twin's skinned body (welcome.twin.body_url) to be posed by `joints`' rotations.
  async setTwin(bodyUrl, joints) {
    const gltf = await this.loader.parseAsync(await getBytes(bodyUrl), '');
    const twin = new SkinnedTwin(gltf.scene, joints);
    if (this.twinScene) {
      this.group.remove(this.twinScene);
      dispose(this.twinScene);
    }
    gltf.scene.traverse((node) => {
      if (node.isMesh) node.frustumCulled = false; // skinned bounds change with the pose
    });
    this.twin = twin;
    this.twinScene = gltf.scene;
    this.provenance = gltf.asset?.extras?.spatialtwin ?? null;
    this.group.add(gltf.scene);
    this.stage.requestFrame();
    return twin;
  }

  // Load the garments' display meshes (welcome.garments or a `switched` message) in place of
  // the ones shown; their streams start again from a key frame.
  async setGarments(garments) {
    const loaded = await Promise.all(
      garments.map(async (garment) => new LiveGarment(await this.loader.parseAsync(await getBytes(garment.mesh_url), ''), garment)),
    );
    const mode = this.fit?.mode ?? 'garment';
    this.fit?.dispose();
    for (const [stream, live] of this.garments) {
      this.garmentScene.remove(live.mesh);
      dispose(live.mesh);
      this.decoder.forget(stream);
    }
    this.garments.clear();
    for (const live of loaded) {
      this.garments.set(live.stream, live);
      this.garmentScene.add(live.mesh);
    }
    this.fit = new FitMap(this.garmentScene, loaded.find((g) => g.legend)?.legend ?? null);
    if (mode !== 'garment') this.fit.setMode(mode);
    this.stage.requestFrame();
  }

  // The fit map from the look's GLB (see nearestIndices): every live garment the look holds
  // gets `_strain` and `_ease`; returns what was carried over, with how far the nearest look
  // vertex was ({garments, matched, medianDistanceMm, p95DistanceMm}).
  async loadFit(lookGlbUrl) {
    const gltf = await this.loader.parseAsync(await getBytes(lookGlbUrl), '');
    gltf.scene.updateMatrixWorld(true);
    const sources = new Map(); // garment id -> [{xyz, values}]
    gltf.scene.traverse((node) => {
      if (!node.isMesh || !node.geometry.attributes._strain) return;
      const id = garmentIdOf(node);
      if (!sources.has(id)) sources.set(id, []);
      sources.get(id).push(meshSamples(node, ['_strain', '_ease']));
    });
    dispose(gltf.scene);
    const distances = [];
    let matched = 0;
    for (const live of this.garments.values()) {
      const parts = sources.get(live.garment.garment);
      if (!parts) continue;
      // one source of all the garment's primitives
      const xyz = new Float32Array(parts.reduce((n, p) => n + p.xyz.length, 0));
      const values = { _strain: [], _ease: [] };
      let at = 0;
      for (const part of parts) {
        xyz.set(part.xyz, at);
        at += part.xyz.length;
        for (const name of Object.keys(values)) {
          values[name].push(...(part.values[name] ?? new Array(part.xyz.length / 3).fill(NaN)));
        }
      }
      const { index, distanceM } = nearestIndices(live.drapeXyz, xyz);
      const geometry = live.mesh.geometry;
      for (const name of Object.keys(values)) {
        if (values[name].every(Number.isNaN)) continue;
        const out = new Float32Array(live.streamOf.length);
        for (let i = 0; i < out.length; i += 1) {
          const source = index[live.streamOf[i]];
          out[i] = source >= 0 ? values[name][source] : 0;
        }
        geometry.setAttribute(name, new THREE.BufferAttribute(out, 1));
      }
      for (const d of distanceM) if (Number.isFinite(d)) distances.push(d);
      matched += 1;
    }
    const mode = this.fit?.mode ?? 'garment';
    this.fit?.dispose();
    this.fit = new FitMap(this.garmentScene, gltf.asset?.extras?.spatialtwin?.fitMap ?? null);
    if (mode !== 'garment') this.fit.setMode(mode);
    this.stage.requestFrame();
    return {
      garments: this.garments.size,
      matched,
      medianDistanceMm: distances.length ? 1000 * percentile(distances, 50) : null,
      p95DistanceMm: distances.length ? 1000 * percentile(distances, 95) : null,
    };
  }

  // Forget every stream's decoder state (after a reconnect the next frames are key frames).
  resetStreams() {
    for (const stream of this.garments.keys()) this.decoder.forget(stream);
  }

  setFitMode(mode) {
    const shown = this.fit ? this.fit.setMode(mode) : 'garment';
    this.stage.requestFrame();
    return shown;
  }

  setPxPerMetre(pxPerMetre) {
    this.stage.setPxPerMetre(pxPerMetre);
  }

  // One parsed result frame (lib/mirror-client.js): decode its streams now, draw it (or a
  // later one) on the next animation frame.
  push(result) {
    const receivedTMs = performance.now();
    this.counts.results += 1;
    const positions = new Map(this.latest?.positions ?? []);
    for (const bytes of result.streams) {
      try {
        const frame = this.decoder.decode(bytes);
        if (this.garments.has(frame.stream)) positions.set(frame.stream, frame.positions);
      } catch (err) {
        if (err instanceof VertexStreamError && err.code === 'vertex_stream_gap') {
          this.counts.gaps += 1;
          this.onStreamGap(err);
        } else {
          this.counts.badStreams += 1;
        }
      }
    }
    if (this.latest && !this.latest.drawn) this.counts.skipped += 1;
    this.latest = { result, positions, receivedTMs, drawn: false };
    this.requestDraw();
  }

  requestDraw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.draw();
    });
  }

  draw() {
    const latest = this.latest;
    if (!latest || latest.drawn || this.held) return;
    const { result, positions } = latest;
    const renderStartTMs = performance.now();
    if (this.twin) this.twin.applyPose(result.rootM, result.rotations);
    for (const [stream, xyz] of positions) {
      const live = this.garments.get(stream);
      if (live && xyz.length === 3 * live.streamVertices) live.setPositions(xyz);
    }
    this.stage.render();
    const drawnTMs = performance.now();
    latest.drawn = true;
    this.counts.drawn += 1;
    pushBounded(this.drawTimesMs, drawnTMs, 120);
    const entry = {
      frameId: result.frameId,
      captureTMs: result.captureTMs,
      receivedTMs: latest.receivedTMs,
      drawnTMs,
      latencyMs: drawnTMs - result.captureTMs,
      renderMs: drawnTMs - renderStartTMs, // pose, cloth and the WebGL calls on the main thread
      tracked: result.tracked,
      serverMs: result.info?.timings_ms?.total ?? null, // the server's arrival to result
      kneeDeg: this.twin ? [this.twin.kneeFlexionDeg('left'), this.twin.kneeFlexionDeg('right')] : null,
    };
    pushBounded(this.log, entry, LOG_LIMIT);
    this.onDrawn(entry, result);
  }

  // Results drawn per second over the last second.
  drawRateHz() {
    const t = performance.now();
    return this.drawTimesMs.filter((d) => t - d <= 1000).length;
  }

  // {p50Ms, p95Ms, samples} of capture-to-draw latency over the last LATENCY_WINDOW results;
  // only meaningful where the capture clock is this page's (the mirror, not a watcher).
  latency() {
    const recent = this.log.slice(-LATENCY_WINDOW).map((e) => e.latencyMs);
    return { p50Ms: percentile(recent, 50), p95Ms: percentile(recent, 95), samples: recent.length };
  }

  // Tests and tools: hold the picture (results still decode), show or hide the garments, and
  // draw the current state now.
  hold(held) {
    this.held = held;
    if (!held) this.requestDraw();
  }

  setGarmentsVisible(visible) {
    this.garmentScene.visible = visible;
    this.stage.render();
  }

  render() {
    this.stage.render();
  }
}
