// ROIs on the XY plane: draw, select, move, reshape and delete rectangles, ellipses,
// polygons, polylines, lines and points; measure the selected ROI (stats table).
//
// The shapes live in an <svg> inside the XY stage, whose CSS transform the viewer sets
// for zoom and pan: drawn in full-resolution pixel coordinates (viewBox = the plane),
// they follow the picture and the deep-zoom tiles with no arithmetic of their own.
// Coordinates follow the API: (0, 0) is the image's top-left corner; area shapes snap
// to pixel corners, lines and points to pixel centres (x + 0.5), so what a user drew
// never cuts a pixel in half.

import { ApiError, apiFetch, downloadWithToken, getJson, problemOf, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const AREA = new Set(["rectangle", "ellipse", "polygon"]);
const DEFAULT_COLOR = "#ffd700";

/** The fields of each shape type (besides type, z, t, c), as the API spells them. */
const FIELDS = {
  rectangle: ["x", "y", "width", "height"],
  ellipse: ["x", "y", "radius_x", "radius_y"],
  line: ["x1", "y1", "x2", "y2"],
  point: ["x", "y"],
  polygon: ["points"],
  polyline: ["points"],
};

let r = null; // {id, size, z, t, mip, rois, selected, tool, draft, drag}
let wired = false;

// ---------------------------------------------------------------- geometry

const snapCorner = (value, max) => Math.min(max, Math.max(0, Math.round(value)));
const snapCentre = (value, max) => Math.min(max - 0.5, Math.max(0.5, Math.floor(value) + 0.5));

function snap(type, p) {
  const f = AREA.has(type) ? snapCorner : snapCentre;
  return [f(p[0], r.size.x), f(p[1], r.size.y)];
}

/** A new shape of `type` from two corners of a drag (or one point). */
function shapeFromDrag(type, a, b) {
  const [x0, y0] = snap(type, a);
  const [x1, y1] = snap(type, b);
  const box = { x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
  if (type === "rectangle") return { type, x: box.x, y: box.y, width: box.w, height: box.h };
  if (type === "ellipse") {
    return { type, x: box.x + box.w / 2, y: box.y + box.h / 2, radius_x: box.w / 2, radius_y: box.h / 2 };
  }
  if (type === "line") return { type, x1: x0, y1: y0, x2: x1, y2: y1 };
  return { type: "point", x: x1, y: y1 };
}

/** The handles of a shape: [x, y] points a user can drag to reshape it. */
function handles(s) {
  switch (s.type) {
    case "rectangle":
      return [
        [s.x, s.y],
        [s.x + s.width, s.y],
        [s.x + s.width, s.y + s.height],
        [s.x, s.y + s.height],
      ];
    case "ellipse":
      return [
        [s.x - s.radius_x, s.y - s.radius_y],
        [s.x + s.radius_x, s.y - s.radius_y],
        [s.x + s.radius_x, s.y + s.radius_y],
        [s.x - s.radius_x, s.y + s.radius_y],
      ];
    case "line":
      return [
        [s.x1, s.y1],
        [s.x2, s.y2],
      ];
    case "point":
      return [[s.x, s.y]];
    default:
      return s.points.map((p) => [p[0], p[1]]);
  }
}

/** `s` with handle `i` moved to `p` (the opposite corner stays for boxes). */
function reshape(s, i, p) {
  const q = snap(s.type, p);
  if (s.type === "rectangle" || s.type === "ellipse") {
    const opposite = handles(s)[(i + 2) % 4];
    return { ...s, ...shapeFromDrag(s.type, opposite, q) };
  }
  if (s.type === "line") return i === 0 ? { ...s, x1: q[0], y1: q[1] } : { ...s, x2: q[0], y2: q[1] };
  if (s.type === "point") return { ...s, x: q[0], y: q[1] };
  return { ...s, points: s.points.map((pt, j) => (j === i ? q : pt)) };
}

/** `s` moved by whole pixels (dx, dy). */
function translate(s, dx, dy) {
  switch (s.type) {
    case "line":
      return { ...s, x1: s.x1 + dx, y1: s.y1 + dy, x2: s.x2 + dx, y2: s.y2 + dy };
    case "polygon":
    case "polyline":
      return { ...s, points: s.points.map(([x, y]) => [x + dx, y + dy]) };
    default:
      return { ...s, x: s.x + dx, y: s.y + dy };
  }
}

function onPlane(s) {
  const zOk = r.mip || s.z == null || s.z === r.z;
  return zOk && (s.t == null || s.t === r.t);
}

// ---------------------------------------------------------------- drawing

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, value] of Object.entries(attrs)) el.setAttribute(k, String(value));
  return el;
}

function shapeEl(s) {
  switch (s.type) {
    case "rectangle":
      return svgEl("rect", { x: s.x, y: s.y, width: s.width, height: s.height });
    case "ellipse":
      return svgEl("ellipse", { cx: s.x, cy: s.y, rx: s.radius_x, ry: s.radius_y });
    case "line":
      return svgEl("line", { x1: s.x1, y1: s.y1, x2: s.x2, y2: s.y2 });
    case "point":
      return svgEl("circle", { cx: s.x, cy: s.y, r: 3 / pxPerImagePixel() });
    default:
      return svgEl(s.type, { points: s.points.map((p) => p.join(",")).join(" ") });
  }
}

/** Screen (CSS) pixels per image pixel at the current zoom. */
function pxPerImagePixel() {
  const box = $("roi-layer").getBoundingClientRect();
  return box.width / r.size.x || 1;
}

function colorOf(roi, s) {
  return s.colour || s.color || roi.colour || roi.color || DEFAULT_COLOR;
}

function render() {
  const layer = $("roi-layer");
  if (!r) {
    layer.replaceChildren();
    return;
  }
  layer.setAttribute("viewBox", `0 0 ${r.size.x} ${r.size.y}`);
  layer.setAttribute("preserveAspectRatio", "none");
  layer.classList.toggle("drawing", Boolean(r.tool));
  const children = [];
  for (const roi of r.rois) {
    const selected = String(roi.id) === String(r.selected);
    roi.shapes.forEach((s, index) => {
      if (!onPlane(s)) return;
      const el = shapeEl(s);
      el.classList.add("roi-shape", `roi-${s.type}`);
      if (selected) el.classList.add("selected");
      el.setAttribute("stroke", colorOf(roi, s));
      if (s.type === "point") el.setAttribute("fill", colorOf(roi, s));
      el.dataset.roi = String(roi.id);
      el.dataset.shape = String(index);
      children.push(el);
    });
  }
  const sel = selectedRoi();
  if (sel && !r.tool) {
    const radius = 4 / pxPerImagePixel();
    sel.shapes.forEach((s, index) => {
      if (!onPlane(s)) return;
      handles(s).forEach(([x, y], i) => {
        const h = svgEl("circle", { cx: x, cy: y, r: radius, class: "roi-handle" });
        h.dataset.roi = String(sel.id);
        h.dataset.shape = String(index);
        h.dataset.handle = String(i);
        children.push(h);
      });
    });
  }
  if (r.draft) {
    const el = shapeEl(r.draft.shape);
    el.classList.add("roi-shape", "roi-draft");
    el.setAttribute("stroke", $("roi-color").value);
    children.push(el);
  }
  layer.replaceChildren(...children);
}

/** A shape of `type` around the crosshair, a tenth of the plane wide (keyboard drawing). */
function shapeAtCrosshair(type) {
  const { x, y } = r.cross;
  const hw = Math.max(1, Math.round(r.size.x / 20));
  const hh = Math.max(1, Math.round(r.size.y / 20));
  if (type === "polygon" || type === "polyline") {
    const pts = [
      [x - hw, y + hh],
      [x, y - hh],
      [x + hw, y + hh],
    ].map((p) => snap(type, p));
    return { type, points: pts };
  }
  if (type === "point") return shapeFromDrag(type, [x, y], [x, y]);
  return shapeFromDrag(type, [x - hw, y - hh], [x + hw + 1, y + hh + 1]);
}

// ---------------------------------------------------------------- pointer input

function imagePoint(e) {
  const box = $("roi-layer").getBoundingClientRect();
  return [((e.clientX - box.left) / box.width) * r.size.x, ((e.clientY - box.top) / box.height) * r.size.y];
}

function onPointerDown(e) {
  if (!r || e.button !== 0) return;
  const layer = $("roi-layer");
  const p = imagePoint(e);
  if (r.tool) {
    // No text selection or native drag: either would cancel the pointer (pointercancel).
    e.preventDefault();
    e.stopPropagation(); // not a pan of the plane
    layer.setPointerCapture(e.pointerId);
    if (r.tool === "polygon" || r.tool === "polyline") {
      const q = snap(r.tool, p);
      if (!r.draft) r.draft = { shape: { type: r.tool, points: [q, q] } };
      else r.draft.shape.points.splice(-1, 0, q); // the last point follows the pointer
    } else {
      r.draft = { start: p, shape: shapeFromDrag(r.tool, p, p) };
    }
    render();
    return;
  }
  const target = e.target.closest("[data-roi]");
  if (!target) return; // the plane: the viewer pans
  e.preventDefault();
  e.stopPropagation();
  layer.classList.add("dragging");
  layer.setPointerCapture(e.pointerId);
  const roi = r.rois.find((x) => String(x.id) === target.dataset.roi);
  if (String(r.selected) !== String(roi.id)) select(roi.id);
  const index = Number(target.dataset.shape);
  r.drag = {
    roi,
    index,
    handle: target.dataset.handle == null ? null : Number(target.dataset.handle),
    start: p,
    original: roi.shapes[index],
    moved: false,
  };
}

function onPointerMove(e) {
  if (!r) return;
  const p = imagePoint(e);
  if (r.draft) {
    const s = r.draft.shape;
    if (s.type === "polygon" || s.type === "polyline") s.points[s.points.length - 1] = snap(s.type, p);
    else if (r.draft.start) r.draft.shape = shapeFromDrag(r.tool, r.draft.start, p);
    render();
    return;
  }
  if (!r.drag) return;
  const d = r.drag;
  const dx = Math.round(p[0] - d.start[0]);
  const dy = Math.round(p[1] - d.start[1]);
  if (!d.moved && Math.abs(dx) < 1 && Math.abs(dy) < 1) return;
  d.moved = true;
  d.roi.shapes[d.index] = d.handle == null ? translate(d.original, dx, dy) : reshape(d.original, d.handle, p);
  render();
}

function onPointerUp() {
  if (!r) return;
  if (r.draft && r.draft.start) {
    const s = r.draft.shape;
    r.draft = null;
    // A click with a box tool draws nothing (a point needs no drag).
    const empty =
      (s.type === "rectangle" && (s.width === 0 || s.height === 0)) ||
      (s.type === "ellipse" && (s.radius_x === 0 || s.radius_y === 0)) ||
      (s.type === "line" && s.x1 === s.x2 && s.y1 === s.y2);
    if (empty) render();
    else create(s);
    return;
  }
  $("roi-layer").classList.remove("dragging");
  if (r.drag) {
    const d = r.drag;
    r.drag = null;
    if (d.moved) update(d.roi);
  }
}

/** Finish a polygon or polyline (double-click or Enter). */
function finishDraft() {
  if (!r || !r.draft || r.draft.start) return;
  const s = r.draft.shape;
  r.draft = null;
  const points = s.points.slice(0, -1).filter((p, i, all) => i === 0 || p[0] !== all[i - 1][0] || p[1] !== all[i - 1][1]);
  if (points.length < (s.type === "polygon" ? 3 : 2)) {
    render();
    setStatus(`A ${s.type} needs ${s.type === "polygon" ? "three" : "two"} points or more`, true);
    return;
  }
  create({ type: s.type, points });
}

// ---------------------------------------------------------------- the API

const base = () => `/api/images/${r.id}/rois`;

function withPlane(shape) {
  const out = { ...shape, z: shape.z ?? r.z, t: shape.t ?? r.t };
  return out;
}

function nextName(type) {
  const typed = $("roi-name").value.trim();
  if (typed) return typed;
  const n = r.rois.length + 1;
  return `${type[0].toUpperCase()}${type.slice(1)} ${n}`;
}

async function create(shape) {
  const view = r;
  const body = { name: nextName(shape.type), scene: r.scene, shapes: [withPlane(shape)] };
  body.shapes[0].colour = $("roi-color").value || DEFAULT_COLOR;
  let answer;
  try {
    answer = await sendJson("POST", base(), body);
  } catch (err) {
    setStatus(`Could not save the ${shape.type}: ${err.message}`, true);
    render();
    return;
  }
  if (view !== r) return;
  $("roi-name").value = "";
  await load(answer && answer.id != null ? answer.id : null);
}

let canPut = true; // false once the server answered that it has no PUT for an ROI

/** Save an edited ROI: PUT when the server has it, else delete and add again. */
async function update(roi) {
  const view = r;
  const body = { name: roi.name, scene: roi.scene ?? r.scene, shapes: roi.shapes };
  const response = canPut
    ? await apiFetch(`${base()}/${roi.id}`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      })
    : { status: 405 };
  let id = roi.id;
  if (response.status === 405) {
    canPut = false;
    try {
      // The new one first: should the server refuse it, the old one is still there.
      id = (await sendJson("POST", base(), body)).id;
      await sendJson("DELETE", `${base()}/${roi.id}`);
    } catch (err) {
      setStatus(`Could not save the changed ROI: ${err.message}`, true);
    }
  } else if (!response.ok) {
    const err = new ApiError(response.status, await problemOf(response));
    setStatus(`Could not save the changed ROI: ${err.message}`, true);
  }
  if (view === r) await load(id);
}

async function remove(roi) {
  const view = r;
  try {
    await sendJson("DELETE", `${base()}/${roi.id}`);
  } catch (err) {
    if (err.status !== 404) {
      setStatus(`Could not delete ${roi.name || "the ROI"}: ${err.message}`, true);
      return;
    }
  }
  if (view !== r) return;
  setStatus(`Deleted ${roi.name || "the ROI"}`);
  await load(null);
}

function normalise(roi) {
  return { ...roi, shapes: listOf(roi.shapes, "shapes") };
}

/** Reload the image's ROIs; select `selectId` (or keep the selection if it still exists). */
async function load(selectId) {
  const view = r;
  let rois;
  try {
    rois = listOf(await getJson(base()), "rois").map(normalise);
  } catch (err) {
    if (view === r) setStatus(`Could not read the ROIs: ${err.message}`, true);
    return;
  }
  if (view !== r) return;
  r.rois = rois.filter((x) => (x.scene ?? 0) === r.scene); // the open scene's
  const wanted = selectId ?? r.selected;
  r.selected = rois.some((x) => String(x.id) === String(wanted)) ? wanted : null;
  renderList();
  render();
  showEdit();
  await showStats();
}

// ---------------------------------------------------------------- list, edit form, stats

function selectedRoi() {
  return r && r.rois.find((x) => String(x.id) === String(r.selected));
}

function select(id) {
  r.selected = id;
  renderList();
  render();
  showEdit();
  showStats();
}

function renderList() {
  const items = r.rois.map((roi) => {
    const li = document.createElement("li");
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "roi-item";
    const types = [...new Set(roi.shapes.map((s) => s.type))].join(", ");
    const where = roi.shapes[0] && roi.shapes[0].z != null ? ` · z ${roi.shapes[0].z + 1}` : "";
    pick.textContent = `${roi.name || `ROI ${roi.id}`} · ${types}${where}`;
    pick.setAttribute("aria-pressed", String(String(roi.id) === String(r.selected)));
    pick.addEventListener("click", () => {
      select(roi.id);
      // Drawn on another plane: go there, so the shape is on screen.
      const s = roi.shapes[0];
      if (s && !roi.shapes.some(onPlane)) r.goTo(s.z ?? null, s.t ?? null);
    });
    const del = document.createElement("button");
    del.type = "button";
    del.className = "small danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ROI ${roi.name || roi.id}`);
    del.addEventListener("click", () => remove(roi));
    li.append(pick, del);
    return li;
  });
  $("roi-list").replaceChildren(...items);
}

/** Number fields for the selected ROI's first shape: reshaping without a mouse. */
function showEdit() {
  const box = $("roi-edit");
  const roi = selectedRoi();
  box.hidden = !roi;
  if (!roi) {
    box.replaceChildren();
    return;
  }
  const form = document.createElement("form");
  form.className = "roi-edit-form";
  form.setAttribute("aria-label", `Edit ${roi.name || "the ROI"}`);
  const field = (label, value, attrs = {}) => {
    const id = `roi-edit-${label.replace(/\W+/g, "-")}`;
    const l = document.createElement("label");
    l.htmlFor = id;
    l.textContent = label;
    const input = document.createElement("input");
    input.id = id;
    input.name = label;
    input.value = String(value ?? "");
    Object.assign(input, attrs);
    form.append(l, input);
    return input;
  };
  field("name", roi.name, { type: "text", maxLength: 255 });
  const s = roi.shapes[0];
  if (s) {
    for (const key of FIELDS[s.type] || []) {
      if (key === "points") field("points", s.points.map((p) => p.join(",")).join(" "), { type: "text" });
      else field(key, s[key], { type: "number", step: "any" });
    }
  }
  const apply = document.createElement("button");
  apply.type = "submit";
  apply.className = "small";
  apply.textContent = "Apply";
  form.append(apply);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    roi.name = String(data.get("name") || "").trim() || roi.name;
    if (s) {
      const next = { ...s };
      for (const key of FIELDS[s.type] || []) {
        const raw = String(data.get(key) ?? "");
        if (key === "points") {
          next.points = raw.trim().split(/\s+/).map((pair) => pair.split(",").map(Number));
        } else {
          next[key] = Number(raw);
        }
      }
      roi.shapes = [next, ...roi.shapes.slice(1)];
    }
    update(roi);
  });
  box.replaceChildren(form);
}

function fmt(x) {
  if (x == null) return "";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(7)));
}

/** Area (or, for lines, length) of one channel's row and its unit. */
function sizeOf(c) {
  if (c.area_um2 != null) return [c.area_um2, "µm²"];
  if (c.length_um != null && c.area_px2 == null) return [c.length_um, "µm"];
  if (c.area_px2 != null) return [c.area_px2, "px²"];
  if (c.length_um != null) return [c.length_um, "µm"];
  if (c.length_px != null) return [c.length_px, "px"];
  if (c.area != null) return [c.area, c.area_unit || c.unit || ""];
  if (c.length != null) return [c.length, c.length_unit || c.unit || ""];
  return [null, ""];
}

async function showStats() {
  const box = $("roi-stats");
  const roi = selectedRoi();
  box.hidden = !roi;
  if (!roi) return;
  const view = r;
  const id = roi.id;
  const body = $("roi-stats-table").tBodies[0];
  body.replaceChildren();
  $("roi-stats-note").textContent = "measuring…";
  let stats;
  try {
    stats = await getJson(`${base()}/${id}/stats`);
  } catch (err) {
    if (view === r && String(r.selected) === String(id)) $("roi-stats-note").textContent = `No measurement: ${err.message}`;
    return;
  }
  if (view !== r || String(r.selected) !== String(id)) return; // another ROI was chosen meanwhile
  const channels = listOf(stats, "channels");
  const names = view.channelNames || {};
  // One column per channel, one row per measure: narrow enough for the sidebar.
  const head = document.createElement("tr");
  const corner = document.createElement("th");
  corner.scope = "col";
  corner.textContent = "Measure";
  head.append(corner);
  for (const c of channels) {
    const th = document.createElement("th");
    th.scope = "col";
    th.dataset.channel = String(c.channel);
    th.textContent = c.name || names[c.channel] || `Channel ${Number(c.channel) + 1}`;
    head.append(th);
  }
  $("roi-stats-table").tHead.replaceChildren(head);
  const sizes = channels.map(sizeOf);
  const units = new Set(sizes.map(([, unit]) => unit).filter(Boolean));
  const isLine = roi.shapes.every((s) => !AREA.has(s.type));
  const sizeLabel = `${isLine ? "Length" : "Area"}${units.size ? ` (${[...units].join(", ")})` : ""}`;
  const measures = [
    ["pixel_count", "Pixels", (c) => c.pixel_count],
    ["min", "Min", (c) => c.min],
    ["max", "Max", (c) => c.max],
    ["mean", "Mean", (c) => c.mean],
    ["std", "Std", (c) => c.std],
    ["sum", "Sum", (c) => c.sum],
    ["size", sizeLabel, (c, i) => sizes[i][0]],
  ];
  if (sizes.every(([size]) => size == null)) measures.pop(); // points: no area, no length
  body.replaceChildren(
    ...measures.map(([key, label, get]) => {
      const tr = document.createElement("tr");
      tr.dataset.stat = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      tr.append(th);
      channels.forEach((c, i) => {
        const value = get(c, i);
        const td = document.createElement("td");
        td.dataset.stat = key;
        td.dataset.channel = String(c.channel);
        td.textContent = fmt(value);
        if (typeof value === "number") td.title = String(value); // every digit, on hover
        tr.append(td);
      });
      return tr;
    }),
  );
  const notes = [];
  if (stats.calibrated === false || units.has("px²") || units.has("px")) {
    notes.push("The file gives no pixel size: sizes in pixels.");
  }
  if (stats.note) notes.push(String(stats.note));
  $("roi-stats-note").textContent = notes.join(" ");
  $("roi-allz-row").hidden = r.sizeZ <= 1;
  if ($("roi-allz").checked && r.sizeZ > 1) showPlanes(view, id);
  else $("roi-planes-table").hidden = true;
}

/** The ROI's footprint measured on every Z plane (?z=all): the mean per channel and plane. */
async function showPlanes(view, id) {
  const table = $("roi-planes-table");
  let stats;
  try {
    stats = await getJson(`${base()}/${id}/stats?z=all`);
  } catch (err) {
    if (view === r) setStatus(`No per-plane measurement: ${err.message}`, true);
    return;
  }
  if (view !== r || String(r.selected) !== String(id) || !$("roi-allz").checked) return;
  const planes = listOf(stats, "planes");
  const channels = planes.length ? listOf(planes[0], "channels") : [];
  const head = document.createElement("tr");
  const corner = document.createElement("th");
  corner.scope = "col";
  corner.textContent = "Z";
  head.append(corner);
  for (const c of channels) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = `Mean ${c.name || (view.channelNames || {})[c.channel] || `channel ${Number(c.channel) + 1}`}`;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(
    ...planes.map((plane) => {
      const tr = document.createElement("tr");
      tr.dataset.z = String(plane.z);
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(plane.z + 1);
      tr.append(th);
      for (const c of listOf(plane, "channels")) {
        const td = document.createElement("td");
        td.dataset.channel = String(c.channel);
        td.textContent = fmt(c.mean);
        if (typeof c.mean === "number") td.title = String(c.mean);
        tr.append(td);
      }
      return tr;
    }),
  );
  table.hidden = false;
}

// ---------------------------------------------------------------- import and export

/** Import an ImageJ .roi/.zip or a QuPath/GeoJSON file into the open scene. */
async function importFile(file) {
  const view = r;
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await apiFetch(`${base()}/import?scene=${r.scene}`, { method: "POST", body: form });
  if (!response.ok) {
    const err = new ApiError(response.status, await problemOf(response));
    setStatus(`Could not import ${file.name}: ${err.message}`, true);
    return;
  }
  const body = await response.json();
  setStatus(`Imported ${body.count} ROI${body.count === 1 ? "" : "s"} from ${file.name}`);
  if (view === r) await load(null);
}

function exportFile(path, ext) {
  const stem = (r.filename || "image").replace(/\.[^.]*$/, "");
  downloadWithToken(`/api/images/${r.id}/${path}`, `${stem}-rois.${ext}`).catch((err) =>
    setStatus(`Export failed: ${err.message}`, true),
  );
}

// ---------------------------------------------------------------- tools and keys

function setTool(tool) {
  if (!r) return;
  r.tool = tool;
  r.draft = null;
  for (const b of document.querySelectorAll(".roi-tools [data-tool]")) {
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  }
  render();
}

function wire() {
  const layer = $("roi-layer");
  layer.addEventListener("pointerdown", onPointerDown);
  layer.addEventListener("pointermove", onPointerMove);
  layer.addEventListener("pointerup", onPointerUp);
  layer.addEventListener("pointercancel", () => {
    if (r) r.drag = null;
  });
  layer.addEventListener("dblclick", (e) => {
    e.stopPropagation();
    finishDraft();
  });
  for (const b of document.querySelectorAll(".roi-tools [data-tool]")) {
    b.addEventListener("click", () => setTool(b.dataset.tool));
  }
  $("roi-import").addEventListener("change", () => {
    const file = $("roi-import").files[0];
    $("roi-import").value = "";
    if (file) importFile(file);
  });
  $("roi-allz").addEventListener("change", () => r && showStats());
  $("roi-export-geojson").addEventListener("click", () => exportFile("rois.geojson", "geojson"));
  $("roi-export-csv").addEventListener("click", () => exportFile("rois.csv", "csv"));
  document.addEventListener("keydown", (e) => {
    if (!r || $("viewer-view").hidden) return;
    if (e.target.closest("input, select, textarea, dialog[open]")) return;
    if (e.key === "Escape" && (r.draft || r.tool)) {
      r.draft ? ((r.draft = null), render()) : setTool("");
    } else if (e.key === "Enter" && r.draft) {
      e.preventDefault();
      finishDraft();
    } else if (e.key === "Enter" && r.tool && e.target.closest("#pane-xy")) {
      // Without a mouse: a shape around the crosshair, to be set exactly in the edit form.
      e.preventDefault();
      create(shapeAtCrosshair(r.tool));
    } else if ((e.key === "Delete" || e.key === "Backspace") && selectedRoi() && !r.draft) {
      e.preventDefault();
      remove(selectedRoi());
    }
  });
}

/**
 * Start on a newly opened image (or scene): `v` is the viewer's state; `goTo(z, t)`
 * moves the viewer to another plane (an ROI chosen in the list may be drawn there).
 */
export function showRois(v, goTo = () => {}) {
  if (!wired) {
    wire();
    wired = true;
  }
  r = {
    id: v.id,
    size: { x: v.size.x, y: v.size.y },
    z: v.z,
    t: v.t,
    mip: v.mip,
    scene: v.scene || 0,
    cross: { x: v.x, y: v.y },
    rois: [],
    selected: null,
    tool: "",
    draft: null,
    drag: null,
    filename: v.image && v.image.filename,
    sizeZ: v.size.z,
    goTo,
    channelNames: Object.fromEntries(((v.md && v.md.channels) || []).map((c) => [c.index, c.name])),
  };
  setTool("");
  $("roi-list").replaceChildren();
  $("roi-edit").hidden = true;
  $("roi-stats").hidden = true;
  return load(null);
}

/** Follow the viewer's plane and zoom (shapes of the shown Z and T; handle sizes). */
export function followView(v) {
  if (!r || !v || r.id !== v.id) return;
  r.z = v.z;
  r.t = v.t;
  r.mip = v.mip;
  r.cross = { x: v.x, y: v.y };
  render();
}

export function closeRois() {
  r = null;
  render();
}
