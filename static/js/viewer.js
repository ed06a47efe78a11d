// 3D viewer of a part's repair: the uploaded mesh with the faces the repair removed in red,
// the repaired mesh with the faces hole filling invented in orange, side by side (one shared
// camera) or one at a time. Touch: one finger rotates, two fingers zoom and pan.
//
// The element #viewer names three URLs (data-original, data-repaired: binary STL; data-changes:
// JSON face indices). Face i of the JSON is triangle i of the STL file. When drawn, the element
// gets data-ready="1" and data-invented / data-removed (faces coloured); on failure data-error
// and a readable message instead of an empty box.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { STLLoader } from "three/addons/loaders/STLLoader.js";

const NEUTRAL = new THREE.Color(0xb8c0c8);
const INVENTED = new THREE.Color(0xff8a00);
const REMOVED = new THREE.Color(0xd0201a);
const BACKGROUND = new THREE.Color(0xf3f5f7);
const VIEW_DIRECTION = new THREE.Vector3(0.9, -1.4, 0.8).normalize(); // front right, above (Z up)
const FOV = 35;

const root = document.getElementById("viewer");
if (root && !root.dataset.error) {
  start(root).catch((err) => {
    console.error(err);
    fail(root, "fetch", `The 3D view could not be loaded (${err.message}). Reload the page; ` +
      "the figures on this page are complete without it.");
  });
}

function setStatus(box, text) {
  const status = box.querySelector(".status");
  status.hidden = !text;
  status.textContent = text || "";
}

function fail(box, kind, text) {
  box.dataset.error = kind;
  delete box.dataset.ready;
  const canvas = box.querySelector("canvas");
  if (canvas) canvas.remove();
  setStatus(box, text);
  document.querySelectorAll(".modes button").forEach((b) => { b.disabled = true; });
}

function makeRenderer() {
  try {
    const renderer = new THREE.WebGLRenderer({ antialias: true });
    if (!renderer.getContext()) return null;
    return renderer;
  } catch (err) {
    console.warn("WebGL unavailable:", err);
    return null;
  }
}

async function fetchOk(url, what) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status}`);
  return response;
}

// Colour every face neutral, the listed faces in `color`. Returns how many faces were coloured,
// and the box and area-weighted centre of those with an area (zero-area faces cannot be seen).
function paint(geometry, faces, color) {
  const count = geometry.attributes.position.count / 3;
  const colors = new Float32Array(count * 9);
  for (let i = 0; i < count * 3; i++) NEUTRAL.toArray(colors, i * 3);
  const positions = geometry.attributes.position;
  const triangle = new THREE.Triangle();
  const point = new THREE.Vector3();
  const box = new THREE.Box3();
  const weighted = new THREE.Vector3();
  let painted = 0;
  let area = 0;
  for (const face of faces) {
    if (!Number.isInteger(face) || face < 0 || face >= count) continue;
    for (let k = 0; k < 3; k++) color.toArray(colors, (face * 3 + k) * 3);
    painted++;
    triangle.setFromAttributeAndIndices(positions, face * 3, face * 3 + 1, face * 3 + 2);
    const a = triangle.getArea();
    if (!(a > 0)) continue;
    box.expandByPoint(triangle.a).expandByPoint(triangle.b).expandByPoint(triangle.c);
    weighted.addScaledVector(triangle.getMidpoint(point), a);
    area += a;
  }
  geometry.setAttribute("color", new THREE.BufferAttribute(colors, 3));
  return { painted, box, weighted, area };
}

function makeScene(geometry) {
  const scene = new THREE.Scene();
  scene.background = BACKGROUND;
  const material = new THREE.MeshLambertMaterial({
    vertexColors: true,
    flatShading: true,
    side: THREE.DoubleSide, // holes let one look inside
  });
  scene.add(new THREE.Mesh(geometry, material));
  scene.add(new THREE.HemisphereLight(0xffffff, 0x6d737a, 1.2));
  const headlight = new THREE.DirectionalLight(0xffffff, 2.4);
  scene.add(headlight); // follows the camera (see render), aimed at the origin = model centre
  scene.userData.headlight = headlight;
  return scene;
}

async function start(box) {
  const renderer = makeRenderer();
  if (!renderer) {
    fail(box, "webgl", "This browser could not start 3D graphics (WebGL 2 is unavailable or " +
      "switched off), so the meshes cannot be shown here. The figures on this page are " +
      "complete without it; the meshes can be downloaded below.");
    return;
  }
  const [originalBytes, repairedBytes, changes] = await Promise.all([
    fetchOk(box.dataset.original, "uploaded mesh").then((r) => r.arrayBuffer()),
    fetchOk(box.dataset.repaired, "repaired mesh").then((r) => r.arrayBuffer()),
    fetchOk(box.dataset.changes, "changes").then((r) => r.json()),
  ]);
  const loader = new STLLoader();
  const original = loader.parse(originalBytes);
  const repaired = loader.parse(repairedBytes);
  const removed = paint(original, changes.removed || [], REMOVED);
  const invented = paint(repaired, changes.invented || [], INVENTED);

  // Both meshes share one frame (the repair does not move them): centre both on the middle of
  // their common bounding box, so the camera orbits the model and the headlight aims at it.
  original.computeBoundingBox();
  repaired.computeBoundingBox();
  const whole = original.boundingBox.clone().union(repaired.boundingBox);
  const centre = whole.getCenter(new THREE.Vector3());
  original.translate(-centre.x, -centre.y, -centre.z);
  repaired.translate(-centre.x, -centre.y, -centre.z);
  whole.translate(centre.clone().negate());
  const changed = removed.box.clone().union(invented.box);
  // Look from the side where (area-weighted) the given changes lie, so they are in sight.
  function sideOf(weighted, area) {
    if (!(area > 0)) return VIEW_DIRECTION.clone();
    const towards = weighted.clone().divideScalar(area).sub(centre);
    if (towards.length() <= 0.05 * whole.getSize(new THREE.Vector3()).length()) {
      return VIEW_DIRECTION.clone();
    }
    return towards.normalize().addScaledVector(VIEW_DIRECTION, 0.6).normalize();
  }
  // First look from the side where the repair changed most surface.
  const home = sideOf(removed.weighted.clone().add(invented.weighted), removed.area + invented.area);
  if (!changed.isEmpty()) changed.translate(centre.clone().negate());
  // "Zoom to changes" per mode: the removed faces on the upload, the invented ones on the
  // repaired mesh (each from its own side), both side by side.
  const focus = { both: { region: changed, side: home } };
  for (const [name, painted] of [["original", removed], ["repaired", invented]]) {
    const region = painted.box.clone();
    if (region.isEmpty()) continue;
    region.translate(centre.clone().negate());
    focus[name] = { region, side: sideOf(painted.weighted, painted.area) };
  }

  const scenes = { original: makeScene(original), repaired: makeScene(repaired) };
  const camera = new THREE.PerspectiveCamera(FOV, 1, 0.1, 1000);
  camera.up.set(0, 0, 1);

  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setScissorTest(true);
  const canvas = renderer.domElement;
  canvas.setAttribute("aria-label", "3D view of the uploaded and the repaired mesh");
  box.prepend(canvas);
  canvas.addEventListener("webglcontextlost", (event) => {
    event.preventDefault();
    fail(box, "context-lost", "The 3D view lost its graphics context (the tablet may be short " +
      "of memory). Reload the page to show it again.");
  });

  // Clipping planes and zoom range from the model's size, fixed, so zooming never clips it.
  const modelRadius = whole.getBoundingSphere(new THREE.Sphere()).radius || 1;
  camera.near = modelRadius / 200;
  camera.far = modelRadius * 24;
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = false;
  controls.screenSpacePanning = true;
  controls.minDistance = modelRadius / 50;
  controls.maxDistance = modelRadius * 12;

  for (const f of Object.values(focus)) { // some surroundings
    if (!f.region.isEmpty()) f.region.expandByScalar(modelRadius * 0.04);
  }
  let mode = box.dataset.mode || "both";
  let frame = 0;
  let lastRegion = whole;

  function aspect() {
    const w = box.clientWidth / (mode === "both" ? 2 : 1);
    return w / Math.max(box.clientHeight, 1);
  }

  // Look at `region` (a Box3 of the origin-centred model) from `direction` (unit vector from
  // the target towards the camera), as close as the box's eight projected corners allow.
  function fit(region, direction) {
    const centreOf = region.getCenter(new THREE.Vector3());
    const forward = direction.clone().negate();
    const right = new THREE.Vector3().crossVectors(forward, camera.up);
    if (right.lengthSq() < 1e-10) right.set(1, 0, 0); // looking straight along Z
    right.normalize();
    const up = new THREE.Vector3().crossVectors(right, forward).normalize();
    const tanV = Math.tan(THREE.MathUtils.degToRad(FOV) / 2);
    const tanH = tanV * aspect();
    const corner = new THREE.Vector3();
    let distance = 0;
    for (let i = 0; i < 8; i++) {
      corner.set(
        i & 1 ? region.max.x : region.min.x,
        i & 2 ? region.max.y : region.min.y,
        i & 4 ? region.max.z : region.min.z,
      ).sub(centreOf);
      const towardsCamera = corner.dot(direction);
      distance = Math.max(
        distance,
        towardsCamera + Math.abs(corner.dot(right)) / tanH,
        towardsCamera + Math.abs(corner.dot(up)) / tanV,
      );
    }
    controls.target.copy(centreOf);
    camera.position.copy(centreOf).addScaledVector(direction, Math.max(distance * 1.06, modelRadius / 20));
    controls.update();
    lastRegion = region;
  }

  let size = "";
  function draw() {
    frame = 0;
    const width = box.clientWidth;
    const height = box.clientHeight;
    if (size !== `${width}x${height}`) { // resizing clears the canvas: only when it changed
      size = `${width}x${height}`;
      renderer.setSize(width, height, false);
    }
    camera.aspect = aspect();
    camera.updateProjectionMatrix();
    const parts = mode === "both" ? ["original", "repaired"] : [mode];
    const w = width / parts.length;
    parts.forEach((name, i) => {
      const scene = scenes[name];
      scene.userData.headlight.position.copy(camera.position);
      renderer.setViewport(i * w, 0, w, height);
      renderer.setScissor(i * w, 0, w, height);
      renderer.render(scene, camera);
    });
  }

  function requestDraw() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function setMode(next) {
    mode = next;
    box.dataset.mode = next;
    document.querySelectorAll(".modes button[data-mode]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.mode === next));
    });
    // The view's width changed: keep the angle, refit the distance to what was shown.
    fit(lastRegion, camera.position.clone().sub(controls.target).normalize());
    requestDraw();
  }

  document.querySelectorAll(".modes button").forEach((button) => {
    button.disabled = false;
    button.addEventListener("click", () => {
      if (button.dataset.mode) setMode(button.dataset.mode);
      else if (button.dataset.action === "reset") fit(whole, home);
      else if (button.dataset.action === "changes" && !changed.isEmpty()) {
        const f = focus[mode] || focus.both;
        fit(f.region, f.side);
      }
      requestDraw();
    });
  });
  const zoomChanges = document.querySelector(".modes button[data-action=changes]");
  if (zoomChanges && changed.isEmpty()) zoomChanges.disabled = true;

  controls.addEventListener("change", requestDraw);
  new ResizeObserver(requestDraw).observe(box);

  fit(whole, home);
  draw();
  setStatus(box, "");
  box.dataset.invented = String(invented.painted);
  box.dataset.removed = String(removed.painted);
  document.querySelectorAll("[data-count=invented]").forEach((el) => { el.textContent = invented.painted; });
  document.querySelectorAll("[data-count=removed]").forEach((el) => { el.textContent = removed.painted; });
  const zeroArea = (changes.counts || {}).removed_zero_area || 0;
  document.querySelectorAll("[data-count=removed-zero-area]").forEach((el) => {
    el.textContent = zeroArea ? ` (${zeroArea} of them without area, so not visible)` : "";
  });
  box.dataset.ready = "1";
}
