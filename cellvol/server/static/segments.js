// The page's segments: the searchable list (/segments), the selected segment's details and
// annotations, and selection shared by the 2-D planes (its bounding box drawn) and the 3-D
// view (its surface lit, the others dimmed).
"use strict";

let searchSequence = 0;

function segmentsUrl(params) {
  return `/segments/${encodeURIComponent(name)}/${encodeURIComponent(state.labels)}?${query(params)}`;
}

async function loadSegmentList() {
  const list = document.getElementById("segment-list");
  const count = document.getElementById("segment-count");
  const sequence = ++searchSequence;
  if (!state.labels) {
    list.replaceChildren();
    count.textContent = "no labels chosen";
    return;
  }
  const text = document.getElementById("segment-search").value.trim();
  const response = await fetch(segmentsUrl({ q: text, limit: 200 }));
  if (sequence !== searchSequence) return; // a newer search was typed meanwhile
  const found = await response.json();
  if (!response.ok) {
    count.textContent = found.error || "the segment list is not available";
    list.replaceChildren();
    return;
  }
  count.textContent = `${found.total.toLocaleString()} segment(s)${found.truncated ? `, first ${found.segments.length} shown` : ""}`;
  list.replaceChildren(...found.segments.map(segmentRow));
  list.dataset.loaded = String(sequence);
}

function segmentRow(record) {
  const row = document.createElement("li");
  row.dataset.id = String(record.id);
  row.style.borderLeftColor = `rgb(${record.color.slice(0, 3).join(",")})`;
  if (state.selected && state.selected.id === record.id) row.classList.add("selected");
  const title = document.createElement("div");
  title.textContent = `${record.name || "(unnamed)"} · ID ${record.id}`;
  const size = document.createElement("div");
  size.className = "count";
  size.textContent = `${record.voxel_count.toLocaleString()} voxels`;
  row.append(title, size);
  if (record.references.length) {
    const refs = document.createElement("div");
    refs.className = "refs";
    refs.textContent = record.references.map(referenceText).join(", ");
    row.append(refs);
  }
  row.addEventListener("click", () => chooseSegment(record.id, true));
  return row;
}

function referenceText(reference) {
  const accession = String(reference.accession);
  return accession.startsWith(`${reference.resource}:`) ? accession : `${reference.resource} ${accession}`;
}

// Select segment ``id`` (from the list or the 3-D view); with ``jump``, move the crosshair to
// its centroid and centre the planes there.
async function chooseSegment(id, jump) {
  const found = await (await fetch(segmentsUrl({ ids: id, limit: 1 }))).json();
  const record = found.segments && found.segments[0];
  if (!record) return;
  if (jump) {
    state.cursor = [...record.centroid_physical];
    state.center = [...record.centroid_physical];
  }
  select(record);
  refresh();
  const base = level(0);
  const voxel = [0, 1, 2].map((a) => Math.round((state.cursor[a] - base.translation[a]) / base.scale[a]));
  showDetails(voxel, record.id, record, record);
}

function select(record) {
  state.selected = record
    ? { id: record.id, color: record.color, low: record.bbox_physical[0], high: record.bbox_physical[1] }
    : null;
  for (const row of document.querySelectorAll("#segment-list li")) {
    row.classList.toggle("selected", record !== null && row.dataset.id === String(record.id));
  }
  view3d.select(record ? record.id : null);
  panels.forEach(draw);
}

// The segment under the crosshair (after a click in a plane): selected, details shown.
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
  if (found.id !== 0 && found.segment) {
    const properties = found.properties || {};
    select({ ...found.segment, color: [255, 255, 0, 255], name: properties.name });
  } else {
    select(null);
  }
  showDetails(voxel, found.id, found.segment, found.properties || {});
}

function showDetails(voxel, id, segment, properties) {
  const body = document.getElementById("segment-body");
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
  add("voxel (z, y, x)", voxel.join(", "));
  add("segment ID", id === 0 ? "0 (background)" : String(id));
  if (segment) {
    add("voxels", segment.voxel_count.toLocaleString());
    add("centroid", ["x", "y", "z"].map((axis, k) => `${axis} ${units.format(segment.centroid_physical[2 - k])}`).join(", "));
  }
  if (properties.name) add("name", properties.name);
  if (properties.description) add("description", properties.description);
  for (const reference of properties.references || []) {
    // A link only to a web page: never a javascript: (or any other scheme's) URL.
    if (!/^https?:\/\//i.test(String(reference.url || ""))) {
      add("reference", referenceText(reference));
      continue;
    }
    const link = document.createElement("a");
    link.href = reference.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = referenceText(reference);
    add("reference", link);
  }
  body.append(list);
}

function connectSegments() {
  const search = document.getElementById("segment-search");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(loadSegmentList, 150);
  });
  search.addEventListener("change", loadSegmentList);
}
