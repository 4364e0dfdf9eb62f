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
