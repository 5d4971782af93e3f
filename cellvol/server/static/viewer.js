// cellvol's volume browser: three synchronised orthogonal planes with a crosshair, zoom and
// pan across pyramid levels, contrast, colour maps, a label overlay and segment annotations.
// Plain JavaScript, no build step: every plane is one /slice request for the visible region
// at the level whose voxels best match the screen's pixels.
"use strict";

const AXES = { z: 0, y: 1, x: 2 };
const PLANE_AXES = { 0: [1, 2], 1: [0, 2], 2: [0, 1] }; // [row axis, column axis]
const name = document.body.dataset.volume;
const state = {
  volume: null,
  cursor: [0, 0, 0], // physical position of the crosshair (z, y, x)
  center: [0, 0, 0], // physical point at the middle of every panel
  perPixel: 1, // physical units per screen pixel
  low: 0,
  high: 1,
  cmap: "gray",
  labels: "",
  overlay: true,
  alpha: 0.5,
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
    drawn: null,
  };
});

function level(i) {
  return state.volume.levels[i];
}

function position(levelInfo, axis, index) {
  return levelInfo.translation[axis] + index * levelInfo.scale[axis];
}

function chooseLevel(panel) {
  // The coarsest level whose voxels are still no larger than a screen pixel along the panel's
  // rows and columns, except that an axis already coarser than a pixel at level 0 keeps its
  // level-0 voxel: Volume.level_for's rule, so 50 nm sections do not hold an XZ panel at level 0.
  const base = level(0);
  const fits = (info, axis) => info.scale[axis] <= Math.max(state.perPixel, base.scale[axis]) * 1.001;
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
    colMin: state.center[panel.cols] - (width / 2) * state.perPixel,
    rowMin: state.center[panel.rows] - (height / 2) * state.perPixel,
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
    const stop = Math.ceil((min + pixels * state.perPixel - info.translation[axis]) / info.scale[axis]) + 1;
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
}

function draw(panel) {
  const context = panel.canvas.getContext("2d");
  const view = visible(panel);
  context.fillStyle = "#000";
  context.fillRect(0, 0, view.width, view.height);
  if (panel.image) {
    const { image, info, r0, r1, c0, c1 } = panel.image;
    const left = (position(info, panel.cols, c0 - 0.5) - view.colMin) / state.perPixel;
    const top = (position(info, panel.rows, r0 - 0.5) - view.rowMin) / state.perPixel;
    const width = ((c1 - c0) * info.scale[panel.cols]) / state.perPixel;
    const height = ((r1 - r0) * info.scale[panel.rows]) / state.perPixel;
    context.imageSmoothingEnabled = false;
    context.drawImage(image, left, top, width, height);
  }
  const x = (state.cursor[panel.cols] - view.colMin) / state.perPixel;
  const y = (state.cursor[panel.rows] - view.rowMin) / state.perPixel;
  context.strokeStyle = "rgba(255, 255, 0, 0.7)";
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(x + 0.5, 0);
  context.lineTo(x + 0.5, view.height);
  context.moveTo(0, y + 0.5);
  context.lineTo(view.width, y + 0.5);
  context.stroke();
  if (panel.image) {
    panel.element.dataset.ready = "1";
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  }
}

function refresh() {
  for (const panel of panels) {
    const base = level(0);
    panel.slider.value = String(Math.round((state.cursor[panel.axis] - base.translation[panel.axis]) / base.scale[panel.axis]));
    request(panel);
  }
}

function resize() {
  for (const panel of panels) {
    panel.canvas.width = panel.canvas.clientWidth;
    panel.canvas.height = panel.canvas.clientHeight;
  }
}

function physicalAt(panel, event) {
  const rect = panel.canvas.getBoundingClientRect();
  const view = visible(panel);
  return [view.colMin + (event.clientX - rect.left) * state.perPixel, view.rowMin + (event.clientY - rect.top) * state.perPixel];
}

async function showSegment() {
  const body = document.getElementById("segment-body");
  if (!state.labels) {
    body.textContent = "";
    return;
  }
  const base = level(0);
  const voxel = [0, 1, 2].map((a) => Math.min(Math.max(Math.round((state.cursor[a] - base.translation[a]) / base.scale[a]), 0), base.shape[a] - 1));
  const response = await fetch(`/segment/${encodeURIComponent(name)}/${encodeURIComponent(state.labels)}?${query({ z: voxel[0], y: voxel[1], x: voxel[2] })}`);
  const found = await response.json();
  body.replaceChildren();
  const list = document.createElement("dl");
  const add = (term, value) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    list.append(dt, dd);
  };
  add("voxel", voxel.join(", "));
  add("segment ID", found.id === 0 ? "0 (background)" : String(found.id));
  if (found.segment) add("voxels", found.segment.voxel_count.toLocaleString());
  const properties = found.properties || {};
  if (properties.name) add("name", properties.name);
  if (properties.description) add("description", properties.description);
  for (const reference of properties.references || []) {
    const link = document.createElement("a");
    link.href = reference.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = `${reference.resource} ${reference.accession}`;
    add("reference", link);
  }
  body.append(list);
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
      state.center[panel.cols] -= dx * state.perPixel;
      state.center[panel.rows] -= dy * state.perPixel;
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
      state.perPixel *= event.deltaY > 0 ? 1.25 : 0.8;
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
    input.addEventListener("change", () => {
      state.low = Math.min(Number(low.value), Number(high.value) - 1e-6);
      state.high = Number(high.value);
      refresh();
    });
  }
  document.getElementById("cmap").addEventListener("change", (event) => {
    state.cmap = event.target.value;
    refresh();
  });
  document.getElementById("labels").addEventListener("change", (event) => {
    state.labels = event.target.value;
    refresh();
    showSegment();
  });
  document.getElementById("overlay").addEventListener("change", (event) => {
    state.overlay = event.target.checked;
    refresh();
  });
  document.getElementById("alpha").addEventListener("change", (event) => {
    state.alpha = Number(event.target.value);
    refresh();
  });
  window.addEventListener("resize", () => {
    resize();
    refresh();
  });
}

async function start() {
  const catalog = await (await fetch("/catalog")).json();
  state.volume = catalog.volumes.find((v) => v.name === name);
  const volume = state.volume;
  const base = level(0);
  document.getElementById("shape").textContent = `${volume.shape.join(" × ")} ${volume.dtype}, ${base.voxel_size ? base.voxel_size.join(" × ") : "?"} ${volume.unit || ""}`;
  document.getElementById("neuroglancer").href = volume.neuroglancer;
  const low = document.getElementById("low");
  const high = document.getElementById("high");
  for (const input of [low, high]) {
    input.min = volume.window.min;
    input.max = volume.window.max;
  }
  low.value = state.low = volume.window.start;
  high.value = state.high = volume.window.end;
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
  resize();
  const extent = [0, 1, 2].map((a) => base.shape[a] * base.scale[a]);
  state.center = [0, 1, 2].map((a) => base.translation[a] + (extent[a] - base.scale[a]) / 2);
  state.cursor = [...state.center];
  state.perPixel = Math.max(
    ...panels.map((p) => Math.max(extent[p.cols] / p.canvas.width, extent[p.rows] / p.canvas.height)),
  );
  connect();
  refresh();
  showSegment();
}

start();
