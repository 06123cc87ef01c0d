// ROIs on the XY plane: draw, select, move, reshape and delete rectangles, ellipses,
// polygons, polylines, lines and points; measure the selected ROI (stats table).
//
// The shapes live in an <svg> inside the XY stage, whose CSS transform the viewer sets
// for zoom and pan: drawn in full-resolution pixel coordinates (viewBox = the plane),
// they follow the picture and the deep-zoom tiles with no arithmetic of their own.
// Geometry (snapping, handles, reshaping) is roi-geometry.js; the tables roi-stats.js.

import { ApiError, apiFetch, downloadWithToken, getJson, problemOf, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";
import { FIELDS, handles, isEmpty, reshape, shapeAround, shapeFromDrag, snap, translate } from "./roi-geometry.js";
import { showStats as measure } from "./roi-stats.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_COLOR = "#ffd700";

let r = null; // the open image's ROI state (showRois): size, plane, rois, selection, tool, draft, drag
let wired = false;

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
      const q = snap(r.tool, p, r.size);
      if (!r.draft) r.draft = { shape: { type: r.tool, points: [q, q] } };
      else r.draft.shape.points.splice(-1, 0, q); // the last point follows the pointer
    } else {
      r.draft = { start: p, shape: shapeFromDrag(r.tool, p, p, r.size) };
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
    if (s.type === "polygon" || s.type === "polyline") s.points[s.points.length - 1] = snap(s.type, p, r.size);
    else if (r.draft.start) r.draft.shape = shapeFromDrag(r.tool, r.draft.start, p, r.size);
    render();
    return;
  }
  if (!r.drag) return;
  const d = r.drag;
  const dx = Math.round(p[0] - d.start[0]);
  const dy = Math.round(p[1] - d.start[1]);
  if (!d.moved && Math.abs(dx) < 1 && Math.abs(dy) < 1) return;
  d.moved = true;
  d.roi.shapes[d.index] = d.handle == null ? translate(d.original, dx, dy) : reshape(d.original, d.handle, p, r.size);
  render();
}

function onPointerUp() {
  if (!r) return;
  if (r.draft && r.draft.start) {
    const s = r.draft.shape;
    r.draft = null;
    // A click with a box tool draws nothing (a point needs no drag).
    if (isEmpty(s)) render();
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

/** Save an edited ROI in place (PUT): its id, author and links stay the same. */
async function update(roi) {
  const view = r;
  const body = { name: roi.name, scene: roi.scene ?? r.scene, shapes: roi.shapes };
  try {
    await sendJson("PUT", `${base()}/${roi.id}`, body);
  } catch (err) {
    setStatus(`Could not save the changed ROI: ${err.message}`, true);
  }
  if (view === r) await load(roi.id);
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

/** The selected ROI's measurements (roi-stats.js), dropped if the selection changes meanwhile. */
function showStats() {
  const view = r;
  const roi = selectedRoi();
  const id = roi ? roi.id : null;
  return measure({
    roi,
    url: roi ? `${base()}/${id}` : "",
    channelNames: r.channelNames,
    sizeZ: r.sizeZ,
    isCurrent: () => view === r && String(r.selected) === String(id),
  });
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
      create(shapeAround(r.tool, r.cross, r.size));
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
