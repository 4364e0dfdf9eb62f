// The one three.js stage every SpatialTwin page draws on.
//
// A twin, garment or look is shown at true scale in the house conventions (metres, +Y up,
// bodies face +Z with their feet on y = 0), so the stage never rescales what it shows: it moves
// the camera instead. Three views cover the pages:
//   STUDIO      image-based room light and a key light with a contact shadow on a 0.5 m floor
//               grid, orbit controls, a front-right three-quarter framing (viewer, merchandiser);
//   PRODUCT     hemisphere and sun light only, a straight front view, no controls: the first
//               frame comes without prefiltering an environment (product page, 300 ms budget);
//   TRUE_SCALE  an orthographic front view at `pxPerMetre` CSS pixels per metre on a plain
//               chroma-green background, no grid or shadows, so a test can measure metres from
//               pixels (the viewer's `?camera=ortho`);
//   MIRROR      the same orthographic true scale, for a display calibrated in pixels per metre,
//               with the floor held `floorPx` above the bottom edge and x = 0 in the middle
//               however the twin moves, on a dark glass-like background (mirror and watch
//               pages; the mirror flips its canvas left-right in CSS).
//
//   const stage = await openStage(container, { ...STUDIO, canvasLabel: '3D view of the twin' });
//   const gltf = await gltfLoader().parseAsync(glbBytes, '');
//   const box = stage.show(gltf.scene);   // frames the object, returns its Box3 in metres
//   await stage.drawn();                  // the frame is on screen
//
// Drawing is on demand (a change, a resize, an orbit), never a 60 fps loop: a software-rendered
// headless browser and a laptop on battery both prefer an idle page.

import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';

export const GRID_CELL_M = 0.5;
const GRID_SIZE_M = 6;
// Cube-face size of the prefiltered room light. Skin and fabric are rough, so 64 px looks the
// same as three's default 256 px and prefilters ~16x faster, which matters under software WebGL
// (SwiftShader in headless tests and GPU-less kiosks: about 4 s at 256 px against 0.3 s at 64 px).
const ENVIRONMENT_SIZE_PX = 64;
// Chroma-key green: no lit skin or fabric comes near it (skin's red channel alone differs by
// > 100), so a test can segment the body from the background pixel by pixel.
export const TEST_BACKGROUND = '#00b140';

// Framing: the camera keeps `heightMargin` × the object's height (and `widthMargin` × its
// width, when non-zero) in view, looking along `direction` (from the object to the camera).
// `fromFront` measures that distance from the object's front face instead of its centre.
export const STUDIO = Object.freeze({
  view: 'studio',
  camera: 'perspective',
  background: '#eceff3',
  light: 'studio', // 'studio' (room environment + hemisphere + key light) | 'plain'
  toneMapping: 'neutral', // 'neutral' keeps skin and fabric base colours honest | 'none'
  shadows: true,
  floorGrid: true, // a 0.5 m grid on y = 0; the view fades into fog behind the object
  controls: true,
  fovDeg: 35,
  maxPixelRatio: 2,
  preserveDrawingBuffer: false,
  framing: Object.freeze({ heightMargin: 1.18, widthMargin: 1.3, direction: [0.32, 0.12, 1], fromFront: true }),
});

export const PRODUCT = Object.freeze({
  ...STUDIO,
  view: 'product',
  background: '#f4f2ef',
  light: 'plain',
  toneMapping: 'none',
  shadows: false,
  floorGrid: false,
  controls: false,
  fovDeg: 30,
  // The product page derives millimetres per pixel from the display's own device pixels.
  maxPixelRatio: Infinity,
  framing: Object.freeze({ heightMargin: 1.2, widthMargin: 0, direction: [0, 0, 1], fromFront: false }),
});

export const TRUE_SCALE = Object.freeze({
  ...STUDIO,
  view: 'true-scale',
  camera: 'ortho',
  pxPerMetre: 300,
  background: TEST_BACKGROUND,
  toneMapping: 'none',
  shadows: false,
  floorGrid: false,
  controls: false,
  preserveDrawingBuffer: true,
});

export const MIRROR = Object.freeze({
  ...TRUE_SCALE,
  view: 'mirror',
  light: 'plain',
  background: '#14161b',
  floorPx: 16,
  preserveDrawingBuffer: false,
});

const TONE_MAPPING = { neutral: THREE.NeutralToneMapping, none: THREE.NoToneMapping };

// sRGB bytes of a '#rrggbb' colour as they appear in a screenshot (THREE.Color holds linear).
export function hexToRgb255(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// A glTF loader that also reads the server's meshopt-compressed LOD levels.
export function gltfLoader() {
  return new GLTFLoader().setMeshoptDecoder(MeshoptDecoder);
}

// A Box3 from bounds as the API writes them: {min: [x, y, z], max: [x, y, z]} in metres.
export function boxFromBounds(bounds) {
  return new THREE.Box3(new THREE.Vector3(...bounds.min), new THREE.Vector3(...bounds.max));
}

function disposeObject(root) {
  root.traverse((node) => {
    if (node.geometry) node.geometry.dispose();
    const materials = Array.isArray(node.material) ? node.material : node.material ? [node.material] : [];
    for (const material of materials) {
      for (const value of Object.values(material)) if (value && value.isTexture) value.dispose();
      material.dispose();
    }
  });
}

// The studio's three.js add-ons (orbit controls, the room environment), fetched only for a view
// that uses them: the product page's module graph, timed to its first level, stays without.
async function addonsFor(options) {
  const [controls, room] = await Promise.all([
    options.controls ? import('three/addons/controls/OrbitControls.js') : null,
    options.light === 'studio' ? import('three/addons/environments/RoomEnvironment.js') : null,
  ]);
  return { OrbitControls: controls?.OrbitControls, RoomEnvironment: room?.RoomEnvironment };
}

// A stage in `container` (prepends its canvas). `options`: one of STUDIO, PRODUCT, TRUE_SCALE,
// optionally with fields changed, plus `canvasLabel` (the canvas's aria-label) and
// `onResize(widthPx, heightPx)`. Throws when WebGL is not available.
export async function openStage(container, options = STUDIO) {
  const merged = { ...STUDIO, ...options };
  return new Stage(container, merged, await addonsFor(merged));
}

export class Stage {
  // Use openStage(), which loads the add-ons the options need.
  constructor(container, options, addons) {
    this.options = options;
    const o = options;
    if (o.camera === 'ortho' && !(Number.isFinite(o.pxPerMetre) && o.pxPerMetre > 0)) {
      throw new RangeError(`an orthographic stage needs pxPerMetre > 0, not ${o.pxPerMetre}`);
    }
    this.container = container;
    this.object = null; // what show() put on the stage
    this.box = null; // its bounds in metres, skinning applied
    this.target = new THREE.Vector3(0, 0.9, 0); // what the camera looks at, metres
    this.frameRequested = false;
    this.drawnSizePx = null; // [width, height] the renderer was last sized to

    // (1) renderer: sRGB output; the canvas says which stage drew it.
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: o.preserveDrawingBuffer });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, o.maxPixelRatio));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.renderer.toneMapping = TONE_MAPPING[o.toneMapping];
    this.renderer.shadowMap.enabled = o.shadows;
    this.renderer.shadowMap.type = THREE.PCFShadowMap;
    const canvas = this.renderer.domElement;
    canvas.dataset.stage = o.view;
    if (o.canvasLabel) canvas.setAttribute('aria-label', o.canvasLabel);
    if (o.controls) canvas.tabIndex = 0;
    container.prepend(canvas);

    // (2) scene: background, light, floor.
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(o.background);
    if (o.light === 'studio') this.addStudioLight(addons.RoomEnvironment);
    else this.addPlainLight();
    if (o.floorGrid) this.addFloor();

    // (3) camera: perspective (with orbit controls when asked) or a fixed orthographic front.
    if (o.camera === 'ortho') {
      this.camera = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.01, 100);
    } else {
      this.camera = new THREE.PerspectiveCamera(o.fovDeg, 1, 0.05, 100);
      this.camera.position.set(1.2, 1.4, 4.2);
    }
    if (o.controls) {
      this.controls = new addons.OrbitControls(this.camera, canvas);
      this.controls.enableDamping = true;
      this.controls.dampingFactor = 0.12;
      this.controls.target.copy(this.target);
      this.controls.minDistance = 0.4;
      this.controls.maxDistance = 12;
      this.controls.maxPolarAngle = Math.PI * 0.495; // stay above the floor
      this.controls.addEventListener('change', () => this.requestFrame());
      this.controls.update();
    } else {
      this.controls = null;
      this.camera.lookAt(this.target);
    }

    // (4) size: follow the container.
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  // Image-based room light for the materials, a hemisphere fill and a key light for form.
  addStudioLight(RoomEnvironment) {
    const pmrem = new THREE.PMREMGenerator(this.renderer);
    this.scene.environment = pmrem.fromScene(new RoomEnvironment(), 0.04, 0.1, 100, {
      size: ENVIRONMENT_SIZE_PX,
    }).texture;
    this.scene.environmentIntensity = 0.55;
    pmrem.dispose();
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0xb9b3aa, 0.6));
    const key = new THREE.DirectionalLight(0xffffff, 1.6);
    key.position.set(1.5, 3.2, 2.4);
    if (this.options.shadows) {
      key.castShadow = true;
      key.shadow.mapSize.set(1024, 1024);
      Object.assign(key.shadow.camera, { left: -1.5, right: 1.5, top: 1.5, bottom: -1.5, near: 0.5, far: 8 });
      key.shadow.bias = -0.0005;
      key.shadow.radius = 4;
    }
    this.scene.add(key, key.target);
  }

  // No environment to prefilter: the first frame is ready as soon as the geometry is.
  addPlainLight() {
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x8a7f74, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(1, 2, 3);
    this.scene.add(sun);
  }

  // A shadow-catching floor and a GRID_CELL_M grid on y = 0: the scale a shopper reads.
  addFloor() {
    if (this.options.shadows) {
      const ground = new THREE.Mesh(
        new THREE.PlaneGeometry(GRID_SIZE_M, GRID_SIZE_M),
        new THREE.ShadowMaterial({ opacity: 0.16 }),
      );
      ground.rotation.x = -Math.PI / 2;
      ground.receiveShadow = true;
      this.scene.add(ground);
    }
    const grid = new THREE.GridHelper(GRID_SIZE_M, GRID_SIZE_M / GRID_CELL_M, 0x9aa3b2, 0xc8ced8);
    grid.material.transparent = true;
    grid.material.opacity = 0.7;
    grid.position.y = 0.0005; // above the shadow plane, below any foot
    this.scene.add(grid);
  }

  get sizePx() {
    return [Math.max(1, this.container.clientWidth), Math.max(1, this.container.clientHeight)];
  }

  resize() {
    const [width, height] = this.sizePx;
    // Resizing a canvas clears it, even to the same size: only when the size changed.
    if (this.drawnSizePx && this.drawnSizePx[0] === width && this.drawnSizePx[1] === height) return;
    this.drawnSizePx = [width, height];
    this.renderer.setSize(width, height, false);
    if (this.camera.isOrthographicCamera) {
      this.fitOrtho(width, height);
    } else {
      this.camera.aspect = width / height;
      this.camera.updateProjectionMatrix();
    }
    this.options.onResize?.(width, height);
    this.requestFrame();
  }

  // An orthographic frustum whose width in metres is the canvas width in pixels / pxPerMetre,
  // centred on the object: one metre on the object is exactly pxPerMetre CSS pixels on screen.
  // With `floorPx` set (a mirror), the view stays put instead: x = 0 at the centre and the
  // floor (y = 0) that many CSS pixels above the bottom edge, whatever the object does.
  fitOrtho(width, height) {
    const halfW = width / 2 / this.options.pxPerMetre;
    const halfH = height / 2 / this.options.pxPerMetre;
    const floorPx = this.options.floorPx;
    const centre = Number.isFinite(floorPx)
      ? new THREE.Vector3(0, halfH - floorPx / this.options.pxPerMetre, 0)
      : this.box ? this.box.getCenter(new THREE.Vector3()) : this.target.clone();
    Object.assign(this.camera, { left: -halfW, right: halfW, top: halfH, bottom: -halfH });
    this.target.copy(centre);
    this.camera.position.set(centre.x, centre.y, centre.z + 10);
    this.camera.lookAt(centre);
    this.camera.updateProjectionMatrix();
  }

  // A new scale for an orthographic stage (a mirror calibrated to its display), kept framed.
  setPxPerMetre(pxPerMetre) {
    if (!this.camera.isOrthographicCamera || !(Number.isFinite(pxPerMetre) && pxPerMetre > 0)) {
      throw new RangeError(`an orthographic stage needs pxPerMetre > 0, not ${pxPerMetre}`);
    }
    this.options.pxPerMetre = pxPerMetre;
    const [width, height] = this.sizePx;
    this.fitOrtho(width, height);
    this.requestFrame();
  }

  // Frame the whole box with the view's margins, so feet and head never touch the edge; from
  // the front-right, slightly above hip height in the studio, as a fitting-room mirror would.
  framePerspective(box, framing = this.options.framing) {
    const centre = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    const vFov = THREE.MathUtils.degToRad(this.camera.fov);
    const hFov = 2 * Math.atan(Math.tan(vFov / 2) * this.camera.aspect);
    const distForHeight = (size.y * framing.heightMargin) / 2 / Math.tan(vFov / 2);
    const distForWidth = (Math.max(size.x, size.z) * framing.widthMargin) / 2 / Math.tan(hFov / 2);
    const distance = Math.max(distForHeight, distForWidth) + (framing.fromFront ? size.z / 2 : 0);
    const direction = new THREE.Vector3(...framing.direction).normalize();
    this.target.copy(centre);
    this.camera.position.copy(centre).addScaledVector(direction, distance);
    this.camera.near = Math.max(0.01, distance / 100);
    this.camera.far = distance * 20;
    this.camera.updateProjectionMatrix();
    if (this.controls) {
      this.controls.target.copy(centre);
      this.controls.update();
    } else {
      this.camera.lookAt(centre);
    }
    // Let the floor grid fade out behind the object instead of ending in a hard horizon.
    if (this.options.floorGrid) this.scene.fog = new THREE.Fog(this.options.background, distance + 1.5, distance + 7);
    return distance;
  }

  frame(box) {
    if (this.camera.isOrthographicCamera) {
      const [width, height] = this.sizePx;
      this.fitOrtho(width, height);
    } else {
      this.framePerspective(box);
    }
    this.requestFrame();
  }

  // Put `object` on the stage in place of the last one and return its bounds (metres, skinning
  // applied). `frame`: true frames those bounds, a Box3 frames that box instead (say, bounds
  // known before the object), false keeps the camera. `disposePrevious: false` keeps the last
  // object's GPU resources for a caller that will show it again.
  show(object, { frame = true, disposePrevious = true } = {}) {
    this.clear({ dispose: disposePrevious });
    object.traverse((node) => {
      if (node.isMesh) {
        node.castShadow = this.options.shadows;
        node.frustumCulled = false; // skinned bounds change with pose; never cull the body
      }
    });
    this.scene.add(object);
    this.object = object;
    // Bones need world matrices before skinned vertex positions can be evaluated.
    this.scene.updateMatrixWorld(true);
    object.traverse((node) => {
      if (node.isSkinnedMesh) node.skeleton.update();
    });
    this.box = new THREE.Box3().setFromObject(object, true);
    if (frame) this.frame(frame === true ? this.box : frame);
    this.requestFrame();
    return this.box;
  }

  clear({ dispose = true } = {}) {
    if (!this.object) return;
    this.scene.remove(this.object);
    if (dispose) disposeObject(this.object);
    this.object = null;
    this.box = null;
    this.requestFrame();
  }

  // Millimetres on an object at the camera's target covered by one device pixel of this
  // display (perspective stages): what a level of detail's geometric error is measured against.
  millimetresPerDevicePixel() {
    const distance = this.camera.position.distanceTo(this.target);
    const viewHeightM = 2 * distance * Math.tan(THREE.MathUtils.degToRad(this.camera.fov / 2));
    return (viewHeightM / (this.container.clientHeight * (window.devicePixelRatio || 1))) * 1000;
  }

  // Draw now (a caller timing its first frame); requestFrame() draws on the next animation frame.
  render() {
    this.renderer.render(this.scene, this.camera);
  }

  requestFrame() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      if (this.controls && this.controls.update()) this.requestFrame();
      this.render();
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
