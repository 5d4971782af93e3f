// cellvol's volume browser: three synchronised orthogonal planes with a crosshair, zoom and
// pan across pyramid levels, scale bars, contrast, colour maps, a label overlay, a 3-D view
// (view3d.js), the segments with their annotations (segments.js), and channels and a scene's
// placed images over the planes (overlay.js).
// Plain JavaScript, no build step: every plane is one /slice request for the visible region
// at the level whose voxels best match the screen's pixels. A plane is drawn whenever its image
// arrives and again at once after a resize (resizing a canvas clears it), never on animation
// frames, so a headless screenshot with virtual time sees the planes as a browser shows them.
"use strict";

const AXES = { z: 0, y: 1, x: 2 };
const PLANE_AXES = { 0: [1, 2], 1: [0, 2], 2: [0, 1] }; // [row axis, column axis]
const name = document.body.dataset.volume;
const state = {
  volume: null,
  cursor: [0, 0, 0], // physical position of the crosshair (z, y, x)
  center: [0, 0, 0], // physical point at the middle of every panel
  zoom: 1, // 1: each plane fitted to its panel; 2: twice as many physical units per pixel
  low: 0,
  high: 1,
  cmap: "gray",
  labels: "",
  overlay: true,
  alpha: 0.5,
  selected: null, // { id, low, high }: the selected segment and its bounding box (physical)
};
const panels = [...document.querySelectorAll(".panel")].map((element) => {
  const axis = AXES[element.dataset.axis];
  const [rows, cols] = PLANE_AXES[axis];
  return {
    element,
    axis,
    rows,
    cols,
    canvas: element.querySelector("canvas"),
    slider: element.querySelector(".plane"),
    where: element.querySelector(".where"),
    sequence: 0,
    image: null,
    fit: 1, // physical units per screen pixel that fit the whole plane in the panel
  };
});

function level(i) {
  return state.volume.levels[i];
}

function position(levelInfo, axis, index) {
  return levelInfo.translation[axis] + index * levelInfo.scale[axis];
}

function perPixel(panel) {
  return panel.fit * state.zoom;
}

function chooseLevel(panel) {
  // The coarsest level whose voxels are still no larger than a screen pixel along the panel's
  // rows and columns, except that an axis already coarser than a pixel at level 0 keeps its
  // level-0 voxel: Volume.level_for's rule, so 50 nm sections do not hold an XZ panel at level 0.
  const base = level(0);
  const fits = (info, axis) => info.scale[axis] <= Math.max(perPixel(panel), base.scale[axis]) * 1.001;
  let chosen = 0;
  state.volume.levels.forEach((info, i) => {
    if (fits(info, panel.rows) && fits(info, panel.cols)) chosen = i;
  });
  return chosen;
}

function visible(panel) {
  const width = panel.canvas.width;
  const height = panel.canvas.height;
  return {
    colMin: state.center[panel.cols] - (width / 2) * perPixel(panel),
    rowMin: state.center[panel.rows] - (height / 2) * perPixel(panel),
    width,
    height,
  };
}

function query(params) {
  return Object.entries(params)
    .filter(([, value]) => value !== null && value !== "")
    .map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
    .join("&");
}

function request(panel) {
  const view = visible(panel);
  const index = chooseLevel(panel);
  const info = level(index);
  const shape = info.shape;
  const plane = Math.round((state.cursor[panel.axis] - info.translation[panel.axis]) / info.scale[panel.axis]);
  const clampedPlane = Math.min(Math.max(plane, 0), shape[panel.axis] - 1);
  const span = (axis, min, pixels) => {
    const start = Math.floor((min - info.translation[axis]) / info.scale[axis]);
    const stop = Math.ceil((min + pixels * perPixel(panel) - info.translation[axis]) / info.scale[axis]) + 1;
    return [Math.max(0, start), Math.min(shape[axis], stop)];
  };
  const [c0, c1] = span(panel.cols, view.colMin, view.width);
  const [r0, r1] = span(panel.rows, view.rowMin, view.height);
  panel.where.textContent = `${"zyx"[panel.axis]} = ${clampedPlane} (level ${index})`;
  const sequence = ++panel.sequence;
  if (c1 <= c0 || r1 <= r0) {
    panel.image = null;
    draw(panel);
    return;
  }
  const params = {
    axis: "zyx"[panel.axis],
    index: clampedPlane,
    level: index,
    rows: `${r0}:${r1}`,
    cols: `${c0}:${c1}`,
    window: `${state.low},${state.high}`,
    cmap: state.cmap,
    labels: state.overlay ? state.labels : "",
    alpha: state.overlay && state.labels ? state.alpha : "",
    ...overlay.channelParams(),
  };
  const image = new Image();
  image.onload = () => {
    if (sequence !== panel.sequence) return; // a newer view was asked for meanwhile
    panel.image = { image, info, r0, r1, c0, c1 };
    draw(panel);
  };
  image.onerror = () => {
    if (sequence === panel.sequence) panel.element.dataset.error = "1";
  };
  image.src = `/slice/${encodeURIComponent(name)}.png?${query(params)}`;
  overlay.request(panel, params, { info, r0, r1, c0, c1 });
}

function draw(panel) {
  const context = panel.canvas.getContext("2d");
  const view = visible(panel);
  const scale = perPixel(panel);
  context.fillStyle = "#000";
  context.fillRect(0, 0, view.width, view.height);
  if (panel.image) {
    const { image, info, r0, r1, c0, c1 } = panel.image;
    const left = (position(info, panel.cols, c0 - 0.5) - view.colMin) / scale;
    const top = (position(info, panel.rows, r0 - 0.5) - view.rowMin) / scale;
    const width = ((c1 - c0) * info.scale[panel.cols]) / scale;
    const height = ((r1 - r0) * info.scale[panel.rows]) / scale;
    context.imageSmoothingEnabled = false;
    context.drawImage(image, left, top, width, height);
  }
  overlay.paint(panel, context, view, scale);
  drawSelection(panel, context, view, scale);
  const x = (state.cursor[panel.cols] - view.colMin) / scale;
  const y = (state.cursor[panel.rows] - view.rowMin) / scale;
  context.strokeStyle = "rgba(255, 255, 0, 0.7)";
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(x + 0.5, 0);
  context.lineTo(x + 0.5, view.height);
  context.moveTo(0, y + 0.5);
  context.lineTo(view.width, y + 0.5);
  context.stroke();
  drawScaleBar(panel, context, view, scale);
  if (panel.image) {
    panel.element.dataset.ready = "1";
    if (!document.body.dataset.firstPlanes && panels.every((p) => p.element.dataset.ready === "1")) {
      document.body.dataset.firstPlanes = String(performance.now());
    }
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  }
}

// Where the plane cuts the selected segment's bounding box: a dashed outline.
function drawSelection(panel, context, view, scale) {
  const chosen = state.selected;
  if (!chosen) return;
  const base = level(0);
  const half = (axis) => base.scale[axis] / 2;
  const at = state.cursor[panel.axis];
  if (at < chosen.low[panel.axis] - half(panel.axis) || at > chosen.high[panel.axis] + half(panel.axis)) return;
  const left = (chosen.low[panel.cols] - half(panel.cols) - view.colMin) / scale;
  const top = (chosen.low[panel.rows] - half(panel.rows) - view.rowMin) / scale;
  const right = (chosen.high[panel.cols] + half(panel.cols) - view.colMin) / scale;
  const bottom = (chosen.high[panel.rows] + half(panel.rows) - view.rowMin) / scale;
  context.save();
  context.setLineDash([6, 4]);
  context.strokeStyle = "rgba(255, 255, 255, 0.9)";
  context.lineWidth = 2;
  context.strokeRect(left, top, right - left, bottom - top);
  context.restore();
}

// A bar of a round length (1, 2 or 5 × 10^k Å, nm or µm) at most a fifth of the panel wide.
function drawScaleBar(panel, context, view, scale) {
  const { length, label } = units.niceLength((view.width / 5) * scale);
  const pixels = Math.round(length / scale);
  const x = 12;
  const y = view.height - 14;
  context.fillStyle = "rgba(0, 0, 0, 0.6)";
  context.fillRect(x - 6, y - 20, Math.max(pixels, 60) + 12, 30);
  context.fillStyle = "#fff";
  context.fillRect(x, y, pixels, 4);
  context.font = "12px system-ui, sans-serif";
  context.fillText(label, x, y - 6);
  panel.element.dataset.scalebar = label;
  panel.element.dataset.scalebarPixels = String(pixels);
}

function showCursor() {
  const base = level(0);
  const voxel = [0, 1, 2].map((a) => Math.round((state.cursor[a] - base.translation[a]) / base.scale[a]));
  const where = ["x", "y", "z"].map((axis, k) => `${axis} ${units.format(state.cursor[2 - k])}`).join("  ");
  const cursor = document.getElementById("cursor");
  cursor.textContent = `${where}  (voxel z ${voxel[0]}, y ${voxel[1]}, x ${voxel[2]})`;
  cursor.dataset.position = JSON.stringify(state.cursor.map((v) => units.toDisplay(v)));
  cursor.dataset.unit = units.display.symbol;
}

function refresh() {
  showCursor();
  view3d.updatePlanes();
  for (const panel of panels) {
    const base = level(0);
    panel.slider.value = String(Math.round((state.cursor[panel.axis] - base.translation[panel.axis]) / base.scale[panel.axis]));
    request(panel);
  }
}

// Size each canvas to its panel and fit the whole plane in it. Setting a canvas's size clears
// it, so only a changed size is set, and the plane is drawn again at once from the image it
// holds while a sharper one is fetched. Returns whether any canvas changed size.
function resize() {
  const base = level(0);
  const extent = [0, 1, 2].map((a) => base.shape[a] * base.scale[a]);
  let changed = false;
  for (const panel of panels) {
    const width = Math.max(1, panel.canvas.clientWidth);
    const height = Math.max(1, panel.canvas.clientHeight);
    panel.fit = Math.max(extent[panel.cols] / width, extent[panel.rows] / height) * 1.04;
    if (panel.canvas.width !== width || panel.canvas.height !== height) {
      panel.canvas.width = width;
      panel.canvas.height = height;
      changed = true;
      draw(panel);
    }
  }
  view3d.resize();
  return changed;
}

function physicalAt(panel, event) {
  const rect = panel.canvas.getBoundingClientRect();
  const view = visible(panel);
  return [view.colMin + (event.clientX - rect.left) * perPixel(panel), view.rowMin + (event.clientY - rect.top) * perPixel(panel)];
}

function connect() {
  for (const panel of panels) {
    let dragging = null;
    panel.canvas.addEventListener("mousedown", (event) => {
      dragging = { x: event.clientX, y: event.clientY, moved: false };
    });
    window.addEventListener("mousemove", (event) => {
      if (!dragging) return;
      const dx = event.clientX - dragging.x;
      const dy = event.clientY - dragging.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) dragging.moved = true;
      if (!dragging.moved) return;
      state.center[panel.cols] -= dx * perPixel(panel);
      state.center[panel.rows] -= dy * perPixel(panel);
      dragging.x = event.clientX;
      dragging.y = event.clientY;
      panels.forEach(draw);
    });
    window.addEventListener("mouseup", (event) => {
      if (!dragging) return;
      const moved = dragging.moved;
      dragging = null;
      if (moved) {
        refresh();
        return;
      }
      const [col, row] = physicalAt(panel, event);
      state.cursor[panel.cols] = col;
      state.cursor[panel.rows] = row;
      refresh();
      showSegment();
    });
    panel.canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      state.zoom *= event.deltaY > 0 ? 1.25 : 0.8;
      refresh();
    });
    panel.slider.addEventListener("input", () => {
      const base = level(0);
      state.cursor[panel.axis] = position(base, panel.axis, Number(panel.slider.value));
      refresh();
    });
  }
  const low = document.getElementById("low");
  const high = document.getElementById("high");
  for (const input of [low, high]) {
    input.addEventListener("input", () => showWindow(Number(low.value), Number(high.value)));
    input.addEventListener("change", () => {
      state.low = Math.min(Number(low.value), Number(high.value) - 1e-6);
      state.high = Number(high.value);
      showWindow(state.low, state.high);
      refresh();
    });
  }
  document.getElementById("cmap").addEventListener("change", (event) => {
    state.cmap = event.target.value;
    refresh();
  });
  document.getElementById("labels").addEventListener("change", (event) => {
    state.labels = event.target.value;
    select(null);
    refresh();
    showSegment();
    loadSegmentList();
    view3d.loadMeshes(state.labels);
  });
  document.getElementById("overlay").addEventListener("change", (event) => {
    state.overlay = event.target.checked;
    refresh();
  });
  document.getElementById("alpha").addEventListener("input", (event) => {
    document.getElementById("alpha-value").textContent = event.target.value;
  });
  document.getElementById("alpha").addEventListener("change", (event) => {
    state.alpha = Number(event.target.value);
    refresh();
  });
  window.addEventListener("resize", () => {
    resize();
    refresh();
  });
  // The header's height changes with its text (the cursor, a scene's controls wrapping): the
  // panels then change size without the window's doing so.
  new ResizeObserver(() => {
    if (resize()) refresh();
  }).observe(document.querySelector("main"));
  connectSegments();
}

// The window's numbers beside its sliders, with as many digits as the data's range needs.
function showWindow(low, high) {
  const span = Math.abs(state.volume.window.max - state.volume.window.min) || 1;
  const digits = Math.max(0, Math.min(6, 3 - Math.floor(Math.log10(span))));
  document.getElementById("low-value").textContent = low.toFixed(digits);
  document.getElementById("high-value").textContent = high.toFixed(digits);
}

async function start() {
  const catalog = await (await fetch("/catalog")).json();
  state.volume = catalog.volumes.find((v) => v.name === name);
  const volume = state.volume;
  const base = level(0);
  units.setup(volume.unit, base.scale, volume.nm_per_unit);
  const voxel = base.scale.map((s) => Number(units.toDisplay(s).toPrecision(4))).join(" × ");
  document.getElementById("shape").textContent = `${volume.shape.join(" × ")} ${volume.dtype}, voxel ${voxel} ${units.display.symbol} (z × y × x)`;
  document.getElementById("neuroglancer").href = volume.neuroglancer;
  overlay.controls(catalog, volume);
  const low = document.getElementById("low");
  const high = document.getElementById("high");
  for (const input of [low, high]) {
    input.min = volume.window.min;
    input.max = volume.window.max;
  }
  low.value = state.low = volume.window.start;
  high.value = state.high = volume.window.end;
  showWindow(state.low, state.high);
  const select = document.getElementById("labels");
  for (const labels of volume.labels) {
    const option = document.createElement("option");
    option.value = option.textContent = labels.name;
    select.append(option);
  }
  if (volume.labels.length) {
    select.value = state.labels = volume.labels[0].name;
  }
  for (const panel of panels) {
    panel.slider.max = String(base.shape[panel.axis] - 1);
  }
  const extent = [0, 1, 2].map((a) => base.shape[a] * base.scale[a]);
  state.center = [0, 1, 2].map((a) => base.translation[a] + (extent[a] - base.scale[a]) / 2);
  state.cursor = [...state.center];
  view3d.init(volume);
  resize();
  connect();
  refresh();
  showSegment();
  loadSegmentList();
  view3d.loadMeshes(state.labels);
}

start();
