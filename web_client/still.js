// A studio still of a look: one frame on the shared stage (lib/stage.js), lit by a key, a fill
// and a rim light over the stage's room environment, through a camera with a focal length in
// millimetres, on a plain background, optionally with a visible "digital twin" label.
//
// The spec (/still.json) is made and checked by services/stills.py; nothing here reads the
// clock or a random number, and the frame is drawn once, so the same spec gives the same pixels.
// window.spatialTwinStill resolves to {drawn: true, timingsMs} once the frame (and the label) is
// on screen, or to {error}; services/still_render.py then captures the frame.
import * as THREE from 'three';
import { STUDIO, gltfLoader, openStage } from './lib/stage.js';

// The part of the figure's height in frame, from its top: whole body, head to knees, to waist.
const FRAMING = { full: [0, 1], knees: [0, 0.72], waist: [0, 0.48] };
const FRAME_MARGIN = 1.06;
const FILM_GAUGE_MM = 36; // a full-frame sensor's long side, vertical in a portrait still

const timings = {};
const mark = (name) => { timings[name] = Math.round(performance.now()); };

async function drawStill() {
  mark('script');
  const spec = await (await fetch('/still.json')).json();
  const holder = document.getElementById('still');
  holder.style.width = `${spec.widthPx}px`;
  holder.style.height = `${spec.heightPx}px`;
  const stage = await openStage(holder, {
    ...STUDIO,
    view: 'still',
    background: spec.background,
    controls: false,
    floorGrid: false,
    shadows: true,
    maxPixelRatio: 1,
    preserveDrawingBuffer: true,
    canvasLabel: 'studio still',
  });
  // The room environment stays (image-based light for the materials); the stage's own lamps
  // give way to the still's key, fill and rim.
  const lamps = [];
  stage.scene.traverse((node) => { if (node.isLight) lamps.push(node); });
  for (const lamp of lamps) lamp.removeFromParent();
  stage.scene.environmentIntensity = spec.environmentIntensity;

  mark('stage');
  const gltf = await gltfLoader().loadAsync(spec.glb);
  mark('loaded');
  const box = stage.show(gltf.scene, { frame: false });
  const size = box.getSize(new THREE.Vector3());
  const centre = box.getCenter(new THREE.Vector3());

  // Camera: the framed band of the figure fills the frame's height (or its width, if wider).
  const camera = stage.camera;
  camera.filmGauge = FILM_GAUGE_MM;
  camera.aspect = spec.widthPx / spec.heightPx;
  camera.setFocalLength(spec.camera.focalLengthMm);
  const [fromTop, toTop] = FRAMING[spec.camera.framing];
  const top = box.max.y - fromTop * size.y;
  const bottom = box.max.y - toTop * size.y;
  const target = new THREE.Vector3(centre.x, (top + bottom) / 2, centre.z);
  let position;
  if (spec.camera.positionM) {
    position = new THREE.Vector3(...spec.camera.positionM);
  } else {
    const vHalf = THREE.MathUtils.degToRad(camera.getEffectiveFOV()) / 2;
    const hHalf = Math.atan(Math.tan(vHalf) * camera.aspect);
    const forHeight = ((top - bottom) * FRAME_MARGIN) / 2 / Math.tan(vHalf);
    const forWidth = (Math.max(size.x, size.z) * FRAME_MARGIN) / 2 / Math.tan(hHalf);
    const direction = new THREE.Vector3(...spec.camera.direction).normalize();
    position = target.clone().addScaledVector(direction, Math.max(forHeight, forWidth) + size.z / 2);
  }
  camera.position.copy(position);
  const distance = position.distanceTo(target);
  camera.near = Math.max(0.01, distance / 50);
  camera.far = distance * 10;
  camera.updateProjectionMatrix();
  camera.lookAt(target);

  // Lights: each comes from its direction (metres, from the figure towards the lamp).
  const reach = Math.max(size.x, size.y, size.z) * 2;
  for (const name of ['key', 'fill', 'rim']) {
    const light = spec.lights[name];
    if (!light || light.intensity <= 0) continue;
    const lamp = new THREE.DirectionalLight(new THREE.Color(light.colour), light.intensity);
    const toLamp = new THREE.Vector3(...light.direction).normalize();
    lamp.position.copy(centre).addScaledVector(toLamp, reach);
    lamp.target.position.copy(centre);
    if (name === 'key') {
      lamp.castShadow = true;
      lamp.shadow.mapSize.set(2048, 2048);
      const r = Math.max(size.x, size.y, size.z) * 0.75;
      Object.assign(lamp.shadow.camera, { left: -r, right: r, top: r, bottom: -r, near: 0.1, far: reach * 2 });
      lamp.shadow.bias = -0.0004;
      lamp.shadow.normalBias = 0.01;
    }
    stage.scene.add(lamp, lamp.target);
  }
  // A floor that only catches the key light's shadow, so the figure stands on something.
  const floor = new THREE.Mesh(
    new THREE.PlaneGeometry(size.y * 4, size.y * 4),
    new THREE.ShadowMaterial({ opacity: spec.floorShadowOpacity }),
  );
  floor.rotation.x = -Math.PI / 2;
  floor.position.set(centre.x, box.min.y, centre.z);
  floor.receiveShadow = true;
  stage.scene.add(floor);
  gltf.scene.traverse((node) => { if (node.isMesh) node.castShadow = true; });

  stage.resize();
  stage.renderer.compile(stage.scene, camera);
  mark('compiled');
  stage.render();
  stage.renderer.getContext().finish();
  mark('drawn');
  if (spec.label) {
    const label = document.createElement('p');
    label.className = 'label';
    label.textContent = spec.label;
    label.style.fontSize = `${Math.max(11, Math.round(spec.widthPx / 42))}px`;
    holder.append(label);
  }
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  mark('composited');
  return true;
}

window.spatialTwinStill = drawStill().then(
  (drawn) => ({ drawn, timingsMs: timings }),
  (err) => ({ error: String(err && err.stack ? err.stack : err) }),
);
