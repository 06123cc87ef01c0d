// Viewer for one image: XY plane (or Z MIP) with XZ/YZ sections linked by a crosshair,
// per-channel display controls, zoom/pan, scale bar and the metadata panel.
//
// Every picture is rendered by the server at the size it is displayed (device pixels);
// zooming re-requests the whole plane at up to native resolution and shows it with a CSS
// transform. A plane larger than the view is the exception (deepzoom.js): its whole-plane
// picture stays at the view's size and tiles of the matching pyramid level cover what is
// on screen as one zooms in.

import { ApiError, debounce, downloadWithToken, getJson, setStatus, showImage, token } from "./api.js";
import { accountsOn } from "./session.js";
import { DeepZoom, needsDeepZoom } from "./deepzoom.js";
import { dimsText } from "./gallery.js";
import { showQuality } from "./quality.js";
import { showAttachments } from "./attachments.js";
import { showComments } from "./comments.js";
import { showKeyValues } from "./keyvalues.js";
import { closeRois, followView, showRois } from "./rois.js";
import { showTags } from "./tags.js";
import { showDatasets } from "./image-datasets.js";

const $ = (id) => document.getElementById(id);

// Colours for channels the file gives none: one channel grey, two green/magenta, ...
const PALETTES = {
  1: ["ffffff"],
  2: ["00ff00", "ff00ff"],
  3: ["ff0000", "00ff00", "0000ff"],
};
const MANY = ["00ffff", "ff00ff", "ffff00", "ff0000", "00ff00", "0000ff", "ffffff"];
const MAX_COMPOSITE = 7; // the renderer composites at most seven channels
const GAP = 6; // px between the XY, YZ and XZ panels
const MAX_ZOOM = 64;

let v = null; // the open image's state; null when the viewer is closed
let wired = false;
let deep = null; // DeepZoom of the XY pane (made on first use)

// ---------------------------------------------------------------- helpers

function apiBase() {
  return `/api/images/${v.id}`;
}

function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

function fmtNumber(x) {
  // Windows are raw values: integers stay integers, floats keep 6 significant digits.
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

/** A round length (1, 2 or 5 × 10^n) close to `target`. */
export function roundLength(target) {
  const n = Math.floor(Math.log10(target));
  const base = 10 ** n;
  let best = base;
  for (const m of [1, 2, 5, 10]) {
    if (Math.abs(Math.log(m * base / target)) < Math.abs(Math.log(best / target))) best = m * base;
  }
  return best;
}

function fmtLength(um) {
  return `${Number(um.toPrecision(3))} µm`;
}

// Render parameters shared by the XY, XZ and YZ requests.
function renderParams() {
  const p = new URLSearchParams({ t: String(v.t), scene: String(v.scene) });
  if (v.spp === 1) {
    const on = v.channels.filter((c) => c.on);
    p.set("channels", on.map((c) => c.index).join(","));
    p.set("colors", on.map((c) => c.color).join(","));
    if (on.every((c) => c.lo != null && c.hi != null)) {
      p.set("windows", on.map((c) => `${fmtNumber(c.lo)}:${fmtNumber(c.hi)}`).join(","));
    }
  }
  if (v.gamma !== 1) p.set("gamma", String(v.gamma));
  return p;
}

function anyChannelOn() {
  return v.spp > 1 || v.channels.some((c) => c.on);
}

// Size to ask for: what is displayed, in device pixels, never above native or 4096.
function requestSize(cssW, cssH, nativeW, nativeH) {
  const dpr = window.devicePixelRatio || 1;
  return {
    width: clamp(Math.ceil(cssW * dpr), 1, Math.min(4096, Math.max(1, nativeW))),
    height: clamp(Math.ceil(cssH * dpr), 1, Math.min(4096, Math.max(1, nativeH))),
  };
}

// ---------------------------------------------------------------- layout

/** Fit XY, YZ (right) and XZ (below) into the pane area, keeping physical proportions. */
function layout() {
  const panes = $("panes");
  const W = v.size.x;
  const H = v.size.y;
  const hasZ = v.size.z > 1;
  // Z extent in X-pixel units: the Z step over the pixel width, when both are known.
  let zExtent = 0;
  if (hasZ) {
    const ratio = v.um.x && v.um.z ? Math.abs(v.um.z) / v.um.x : 1;
    // Keep sections clickable and not overwhelming; they are then stretched, not exact.
    zExtent = clamp(v.size.z * ratio, 0.12 * Math.max(W, H), Math.max(W, H));
  }
  const css = getComputedStyle(panes);
  const padX = parseFloat(css.paddingLeft) + parseFloat(css.paddingRight);
  const padY = parseFloat(css.paddingTop) + parseFloat(css.paddingBottom);
  const availW = panes.clientWidth - padX - (hasZ ? GAP : 0) - 2;
  const availH = panes.clientHeight - padY - (hasZ ? GAP : 0) - 30; // room for the position line
  const s = Math.max(0.01, Math.min(availW / (W + zExtent), availH / (H + zExtent)));
  v.fit = s;
  v.view = { w: Math.round(W * s), h: Math.round(H * s), z: Math.round(zExtent * s) };
  const xy = $("pane-xy");
  xy.style.width = `${v.view.w}px`;
  xy.style.height = `${v.view.h}px`;
  $("img-xy").style.width = `${v.view.w}px`;
  $("img-xy").style.height = `${v.view.h}px`;
  $("pane-yz").hidden = !hasZ;
  $("pane-xz").hidden = !hasZ;
  if (hasZ) {
    Object.assign($("pane-yz").style, { width: `${v.view.z}px`, height: `${v.view.h}px` });
    Object.assign($("pane-xz").style, { width: `${v.view.w}px`, height: `${v.view.z}px` });
  }
  panes.style.gridTemplateColumns = hasZ ? `${v.view.w}px ${v.view.z}px` : `${v.view.w}px`;
  clampPan();
  applyTransform();
}

function clampPan() {
  const { w, h } = v.view;
  v.pan.x = clamp(v.pan.x, w - w * v.zoom, 0);
  v.pan.y = clamp(v.pan.y, h - h * v.zoom, 0);
}

function applyTransform() {
  $("stage-xy").style.transform = `translate(${v.pan.x}px, ${v.pan.y}px) scale(${v.zoom})`;
  // The sections share XY's zoom and pan along their common axis (X for XZ, Y for YZ).
  $("img-xz").style.transform = `translate(${v.pan.x}px, 0) scale(${v.zoom}, 1)`;
  $("img-yz").style.transform = `translate(0, ${v.pan.y}px) scale(1, ${v.zoom})`;
  drawCrosshairs();
  drawScaleBar();
  updateDeepZoomSoon();
}

// ---------------------------------------------------------------- deep zoom

function deepZoomOn() {
  return !v.mip && anyChannelOn() && needsDeepZoom(v.size, v.view);
}

function updateDeepZoom() {
  if (!v || !v.view) return;
  if (!deep) deep = new DeepZoom($("tiles-xy"));
  const p = renderParams();
  p.set("z", String(v.z));
  deep.update({
    enabled: deepZoomOn(),
    base: apiBase(),
    size: v.size,
    view: v.view,
    zoom: v.zoom,
    pan: { ...v.pan },
    params: p.toString(),
  });
}

// ---------------------------------------------------------------- overlays

function lines(svg, w, h, px, py) {
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.innerHTML =
    (px == null ? "" : `<line x1="${px}" y1="0" x2="${px}" y2="${h}"/>`) +
    (py == null ? "" : `<line x1="0" y1="${py}" x2="${w}" y2="${py}"/>`);
}

function drawCrosshairs() {
  const { w, h, z } = v.view;
  const fx = (v.x + 0.5) / v.size.x;
  const fy = (v.y + 0.5) / v.size.y;
  const fz = (v.z + 0.5) / v.size.z;
  lines($("cross-xy"), w, h, v.pan.x + fx * w * v.zoom, v.pan.y + fy * h * v.zoom);
  if (v.size.z > 1) {
    lines($("cross-xz"), w, z, v.pan.x + fx * w * v.zoom, v.mip ? null : fz * z);
    lines($("cross-yz"), z, h, v.mip ? null : fz * z, v.pan.y + fy * h * v.zoom);
  }
  const um = (i, size) => (size ? ` (${(i * size).toFixed(2)} µm)` : "");
  $("position").textContent =
    `x ${v.x}${um(v.x, v.um.x)} · y ${v.y}${um(v.y, v.um.y)}` +
    (v.size.z === 1 ? "" : v.mip ? ` · Z projection of ${v.size.z}` : ` · z ${v.z + 1}/${v.size.z}${um(v.z, v.um.z)}`) +
    (v.size.t > 1 ? ` · t ${v.t + 1}/${v.size.t}` : "") +
    (v.zoom > 1 ? ` · zoom ${v.zoom.toFixed(1)}×` : "");
  followView(v); // ROI shapes of this plane, handles sized for this zoom
}

function drawScaleBar() {
  const bar = $("scalebar");
  if (!v.um.x) {
    bar.classList.add("unknown");
    bar.dataset.um = "";
    $("scalebar-bar").style.width = "0";
    $("scalebar-label").textContent = "No scale bar: the file gives no pixel size";
    return;
  }
  bar.classList.remove("unknown");
  const umPerPx = (v.um.x * v.size.x) / (v.view.w * v.zoom); // µm per CSS pixel on screen
  const length = roundLength((v.view.w / 5) * umPerPx);
  const px = length / umPerPx;
  bar.dataset.um = String(length);
  bar.dataset.px = px.toFixed(2);
  $("scalebar-bar").style.width = `${px}px`;
  $("scalebar-label").textContent = fmtLength(length);
  bar.setAttribute("aria-label", `Scale bar: ${fmtLength(length)}`);
}

// ---------------------------------------------------------------- rendering

function paneError(err) {
  const msg = err instanceof ApiError ? err.message : String(err);
  setStatus(`Could not render: ${msg}`, true);
}

// A picture that renders again clears an earlier rendering error.
function paneShown(shown) {
  if (shown && $("status").textContent.startsWith("Could not render")) setStatus("");
}

function renderXY() {
  const img = $("img-xy");
  const message = $("xy-message");
  if (!anyChannelOn()) {
    img.style.visibility = "hidden";
    message.hidden = false;
    message.textContent = "All channels are off.";
    return;
  }
  img.style.visibility = "";
  message.hidden = true;
  // Deep zoom: the whole plane only at the view's size; tiles bring the detail.
  const zoomed = deepZoomOn() ? 1 : v.zoom;
  const size = requestSize(v.view.w * zoomed, v.view.h * zoomed, v.size.x, v.size.y);
  const p = renderParams();
  p.set("width", String(size.width));
  p.set("height", String(size.height));
  let url;
  if (v.mip) {
    p.set("axis", "0");
    url = `${apiBase()}/mip?${p}`;
  } else {
    url = `${apiBase()}/slice/${v.z}?${p}`;
  }
  showImage(img, url).then(paneShown, paneError);
  updateDeepZoom();
}

function renderSections() {
  if (v.size.z <= 1) return;
  for (const [plane, index, el, w, h, nw, nh] of [
    ["xz", v.y, $("img-xz"), v.view.w * v.zoom, v.view.z, v.size.x, 4096],
    ["yz", v.x, $("img-yz"), v.view.z, v.view.h * v.zoom, 4096, v.size.y],
  ]) {
    el.style.visibility = anyChannelOn() ? "" : "hidden";
    if (!anyChannelOn()) continue;
    const size = requestSize(w, h, nw, nh);
    const p = renderParams();
    p.set("width", String(size.width));
    p.set("height", String(size.height));
    showImage(el, `${apiBase()}/section/${plane}/${index}?${p}`).then(paneShown, paneError);
  }
}

// Slider drags and typing fire many events: render once things settle.
const renderXYSoon = debounce(() => v && renderXY(), 90);
const updateDeepZoomSoon = debounce(() => v && updateDeepZoom(), 60);
const renderSectionsSoon = debounce(() => v && renderSections(), 90);

function renderAll() {
  renderXYSoon();
  renderSectionsSoon();
}

// ---------------------------------------------------------------- position changes

function setZ(z) {
  z = clamp(z, 0, v.size.z - 1);
  if (z === v.z) return;
  v.z = z;
  $("z-slider").value = String(z);
  $("z-value").textContent = `${z + 1}/${v.size.z}`;
  drawCrosshairs();
  if (!v.mip) renderXYSoon();
}

function setT(t) {
  t = clamp(t, 0, v.size.t - 1);
  if (t === v.t) return;
  v.t = t;
  $("t-slider").value = String(t);
  $("t-value").textContent = `${t + 1}/${v.size.t}`;
  drawCrosshairs();
  renderAll();
}

function setXY(x, y) {
  x = clamp(x, 0, v.size.x - 1);
  y = clamp(y, 0, v.size.y - 1);
  const moved = { x: x !== v.x, y: y !== v.y };
  v.x = x;
  v.y = y;
  drawCrosshairs();
  if (moved.x || moved.y) renderSectionsSoon();
}

function setZoom(zoom, cx = v.view.w / 2, cy = v.view.h / 2) {
  zoom = clamp(zoom, 1, MAX_ZOOM);
  // Keep the point under (cx, cy) fixed on screen.
  v.pan.x = cx - ((cx - v.pan.x) * zoom) / v.zoom;
  v.pan.y = cy - ((cy - v.pan.y) * zoom) / v.zoom;
  const before = requestSize(v.view.w * v.zoom, v.view.h * v.zoom, v.size.x, v.size.y);
  v.zoom = zoom;
  clampPan();
  applyTransform();
  const after = requestSize(v.view.w * v.zoom, v.view.h * v.zoom, v.size.x, v.size.y);
  if (after.width !== before.width || after.height !== before.height) renderAll();
}

// ---------------------------------------------------------------- pointer input

/** The fraction (0..1) of an element's box under a pointer event. */
function fraction(event, el) {
  const r = el.getBoundingClientRect();
  return { fx: (event.clientX - r.left) / r.width, fy: (event.clientY - r.top) / r.height };
}

function wirePointer() {
  const xy = $("pane-xy");
  let drag = null;
  xy.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || e.target.closest("button")) return;
    drag = { x0: e.clientX, y0: e.clientY, px: v.pan.x, py: v.pan.y, moved: false };
    xy.setPointerCapture(e.pointerId);
  });
  xy.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x0;
    const dy = e.clientY - drag.y0;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return; // a click, not yet a drag
    drag.moved = true;
    xy.classList.add("panning");
    v.pan.x = drag.px + dx;
    v.pan.y = drag.py + dy;
    clampPan();
    applyTransform();
  });
  xy.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const wasClick = !drag.moved;
    drag = null;
    xy.classList.remove("panning");
    if (!wasClick) return;
    // Screen -> image pixel, undoing pan and zoom.
    const r = xy.getBoundingClientRect();
    const ix = (e.clientX - r.left - v.pan.x) / (v.view.w * v.zoom);
    const iy = (e.clientY - r.top - v.pan.y) / (v.view.h * v.zoom);
    setXY(Math.floor(ix * v.size.x), Math.floor(iy * v.size.y));
  });
  xy.addEventListener("pointercancel", () => {
    drag = null;
    xy.classList.remove("panning");
  });
  xy.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const r = xy.getBoundingClientRect();
      setZoom(v.zoom * (e.deltaY < 0 ? 1.25 : 0.8), e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false },
  );

  // XZ: columns are X, rows are Z. YZ: rows are Y, columns are Z.
  // Undo the shared zoom and pan along X (XZ) or Y (YZ).
  $("pane-xz").addEventListener("click", (e) => {
    const { fy } = fraction(e, $("pane-xz"));
    const fx = (e.clientX - $("pane-xz").getBoundingClientRect().left - v.pan.x) / (v.view.w * v.zoom);
    setXY(Math.floor(fx * v.size.x), v.y);
    if (v.mip) setMip(false); // a Z position only means something on a plane
    setZ(Math.floor(fy * v.size.z));
  });
  $("pane-yz").addEventListener("click", (e) => {
    const { fx } = fraction(e, $("pane-yz"));
    const fy = (e.clientY - $("pane-yz").getBoundingClientRect().top - v.pan.y) / (v.view.h * v.zoom);
    setXY(v.x, Math.floor(fy * v.size.y));
    if (v.mip) setMip(false);
    setZ(Math.floor(fx * v.size.z));
  });
}

function setMip(on) {
  v.mip = on;
  $("mip").checked = on;
  $("z-slider").disabled = on;
  drawCrosshairs();
  renderXYSoon();
}

// ---------------------------------------------------------------- controls

function wireControls() {
  $("z-slider").addEventListener("input", () => setZ(Number($("z-slider").value)));
  $("t-slider").addEventListener("input", () => setT(Number($("t-slider").value)));
  $("mip").addEventListener("change", () => setMip($("mip").checked));
  $("gamma").addEventListener("input", () => {
    v.gamma = Number($("gamma").value);
    $("gamma-value").textContent = v.gamma.toFixed(2);
    renderAll();
  });
  $("scene").addEventListener("change", () => openScene(Number($("scene").value)));
  $("zoom-in").addEventListener("click", () => setZoom(v.zoom * 1.5));
  $("zoom-out").addEventListener("click", () => setZoom(v.zoom / 1.5));
  $("zoom-reset").addEventListener("click", () => {
    v.pan = { x: 0, y: 0 };
    setZoom(1);
  });
  $("download").addEventListener("click", (e) => {
    if (!token() || !v) return; // a plain link works without a token
    e.preventDefault();
    downloadWithToken(`${apiBase()}/download`, v.image.filename).catch((err) =>
      setStatus(`Download failed: ${err.message}`, true),
    );
  });
  document.addEventListener("keydown", (e) => {
    if (!v || $("viewer-view").hidden) return;
    if (e.target.closest("input, select, textarea, dialog[open]")) return; // their own keys
    const keys = {
      ArrowUp: () => setZ(v.z + 1),
      ArrowDown: () => setZ(v.z - 1),
      ArrowRight: () => setT(v.t + 1),
      ArrowLeft: () => setT(v.t - 1),
      "+": () => setZoom(v.zoom * 1.5),
      "=": () => setZoom(v.zoom * 1.5),
      "-": () => setZoom(v.zoom / 1.5),
      0: () => setZoom(1),
    };
    const action = keys[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  });
  new ResizeObserver(() => {
    if (!v || !v.size || $("viewer-view").hidden) return; // not opened yet
    layout();
    renderAll();
  }).observe($("panes"));
}

function drawHistogram(canvas, ch) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  if (!ch.bins || !ch.bins.length) return;
  // Log counts: a few bright spots must stay visible beside a huge background peak.
  const logs = ch.bins.map((b) => Math.log1p(b));
  const top = Math.max(...logs) || 1;
  ctx.fillStyle = `#${ch.color}`;
  const bw = w / logs.length;
  logs.forEach((l, i) => ctx.fillRect(i * bw, h - (l / top) * h, Math.max(1, bw), (l / top) * h));
  // The window as a shaded band.
  const span = ch.binHi - ch.binLo || 1;
  const x0 = ((ch.lo - ch.binLo) / span) * w;
  const x1 = ((ch.hi - ch.binLo) / span) * w;
  ctx.strokeStyle = "#fff";
  ctx.strokeRect(x0, 0.5, Math.max(1, x1 - x0), h - 1);
}

function channelRow(ch) {
  const row = document.createElement("div");
  row.className = "channel";
  row.dataset.index = ch.index;
  const id = `ch${ch.index}`;
  const label = ch.name ? `${ch.name}` : `Channel ${ch.index + 1}`;
  row.innerHTML = `
    <div class="channel-head">
      <input type="checkbox" id="${id}-on">
      <label for="${id}-on" class="channel-name"></label>
      <input type="color" id="${id}-color">
      <button type="button" id="${id}-auto" class="small">Auto</button>
    </div>
    <canvas class="hist" width="240" height="28" aria-hidden="true"></canvas>
    <div class="row"><label for="${id}-lo">Low</label><input type="range" id="${id}-lo"><output for="${id}-lo"></output></div>
    <div class="row"><label for="${id}-hi">High</label><input type="range" id="${id}-hi"><output for="${id}-hi"></output></div>`;
  // Channel names come from files: set as text and attributes, never as HTML.
  row.querySelector(".channel-name").textContent = label;
  row.querySelector(`#${id}-color`).setAttribute("aria-label", `Colour of ${label}`);
  row.querySelector(`#${id}-auto`).setAttribute("aria-label", `Automatic contrast for ${label} (1–99 percentile)`);
  row.querySelector(`#${id}-lo`).setAttribute("aria-label", `Contrast low of ${label}`);
  row.querySelector(`#${id}-hi`).setAttribute("aria-label", `Contrast high of ${label}`);
  const on = row.querySelector(`#${id}-on`);
  const color = row.querySelector(`#${id}-color`);
  const lo = row.querySelector(`#${id}-lo`);
  const hi = row.querySelector(`#${id}-hi`);
  const canvas = row.querySelector("canvas");

  ch.sync = () => {
    on.checked = ch.on;
    color.value = `#${ch.color}`;
    for (const input of [lo, hi]) {
      input.min = String(ch.rangeLo);
      input.max = String(ch.rangeHi);
      input.step = ch.isFloat ? String((ch.rangeHi - ch.rangeLo) / 1000 || 0.001) : "1";
    }
    lo.value = String(ch.lo ?? ch.rangeLo);
    hi.value = String(ch.hi ?? ch.rangeHi);
    lo.nextElementSibling.textContent = ch.lo == null ? "auto" : fmtNumber(ch.lo);
    hi.nextElementSibling.textContent = ch.hi == null ? "auto" : fmtNumber(ch.hi);
    row.classList.toggle("off", !ch.on);
    drawHistogram(canvas, ch);
  };
  on.addEventListener("change", () => {
    if (on.checked && v.channels.filter((c) => c.on).length >= MAX_COMPOSITE) {
      on.checked = false;
      setStatus(`At most ${MAX_COMPOSITE} channels can be shown at once: switch one off first.`, true);
      return;
    }
    ch.on = on.checked;
    ch.sync();
    renderAll();
  });
  color.addEventListener("input", () => {
    ch.color = color.value.slice(1);
    ch.sync();
    renderAll();
  });
  const onWindow = (which) => () => {
    let a = Number(lo.value);
    let b = Number(hi.value);
    // Keep low below high: the slider being moved pushes the other one.
    if (a >= b) {
      if (which === "lo") b = a + (ch.isFloat ? 1e-6 : 1);
      else a = b - (ch.isFloat ? 1e-6 : 1);
    }
    ch.lo = a;
    ch.hi = b;
    ch.sync();
    renderAll();
  };
  lo.addEventListener("input", onWindow("lo"));
  hi.addEventListener("input", onWindow("hi"));
  row.querySelector(`#${id}-auto`).addEventListener("click", () => autoContrast(ch));
  ch.sync();
  return row;
}

/** Set a channel's window to the 1–99 percentiles of what is shown (plane, or stack for MIP). */
async function autoContrast(ch) {
  const p = new URLSearchParams({ scene: String(v.scene), t: String(v.t) });
  if (!v.mip) p.set("z", String(v.z));
  try {
    const hist = await getJson(`${apiBase()}/histogram?${p}`);
    const h = hist.channels.find((c) => c.index === ch.index);
    if (!h) return;
    applyHistogram(ch, h, false);
    ch.sync();
    renderAll();
  } catch (err) {
    setStatus(`Automatic contrast failed: ${err.message}`, true);
  }
}

function applyHistogram(ch, h, isFirst) {
  ch.lo = h.p_low;
  ch.hi = h.p_high > h.p_low ? h.p_high : h.p_low + (ch.isFloat ? 1e-6 : 1);
  if (isFirst) {
    ch.bins = h.bins;
    ch.binLo = h.bin_edges_lo ?? h.min;
    ch.binHi = h.bin_edges_hi ?? h.max;
    ch.rangeLo = Math.min(h.min, ch.lo);
    ch.rangeHi = Math.max(h.max, ch.hi);
    if (!ch.colorFromFile && h.color) ch.color = h.color.replace("#", "");
  }
  // The window may come from a plane outside the stack sample's range.
  ch.rangeLo = Math.min(ch.rangeLo, ch.lo);
  ch.rangeHi = Math.max(ch.rangeHi, ch.hi);
}

async function loadChannels() {
  const box = $("channels");
  box.replaceChildren();
  if (v.spp > 1) {
    v.channels = [];
    box.innerHTML = `<p class="hint">Colour (RGB) image: shown in its recorded colours.</p>`;
    return;
  }
  const nc = v.size.c;
  const palette = PALETTES[nc] || MANY;
  const isFloat = v.md.dtype.startsWith("float");
  const dtypeMax = isFloat ? 1 : 2 ** (v.md.significant_bits || v.md.bit_depth) - 1;
  v.channels = Array.from({ length: nc }, (_, i) => {
    const info = v.md.channels.find((c) => c.index === i) || {};
    return {
      index: i,
      name: info.name,
      on: i < MAX_COMPOSITE,
      color: info.color ? info.color.replace("#", "").toLowerCase() : palette[i % palette.length],
      colorFromFile: Boolean(info.color),
      lo: null, // null: the server's own percentile window until the histogram arrives
      hi: null,
      rangeLo: 0,
      rangeHi: dtypeMax,
      isFloat,
    };
  });
  const view = v;
  try {
    const p = new URLSearchParams({ scene: String(v.scene), t: String(v.t) });
    const hist = await getJson(`${apiBase()}/histogram?${p}`);
    if (v !== view) return; // the viewer was left (or another image opened) meanwhile
    for (const h of hist.channels) {
      const ch = v.channels.find((c) => c.index === h.index);
      if (ch) applyHistogram(ch, h, true);
    }
  } catch (err) {
    if (v !== view) return;
    setStatus(`No histogram (the server picks the contrast): ${err.message}`, true);
  }
  box.replaceChildren(...v.channels.map(channelRow));
}

// ---------------------------------------------------------------- metadata panel

const UNITS = [
  [/_um$/, "µm"],
  [/_nm$/, "nm"],
  [/_ms$/, "ms"],
  [/_s$/, "s"],
  [/^bit_depth$|significant_bits$/, "bits"],
  [/_bytes$/, "bytes"],
  [/^acquired_at$|^created_at$/, "UTC"],
];

function unitOf(path) {
  const leaf = path.split(".").pop().replace(/\[\d+\]$/, "");
  for (const [re, unit] of UNITS) if (re.test(leaf)) return unit;
  return "";
}

/** Where a value came from: the provenance entry of the field or of its nearest parent. */
function sourceOf(path, provenance) {
  // Readers may record one source for all of size_x..size_t ("sizes").
  if (/^size_|^samples_per_pixel$/.test(path) && "sizes" in provenance) return provenance.sizes;
  const variants = (p) => [p, p.replace(/\[(\d+)\]/g, ".$1"), p.replace(/\[\d+\]/g, "")];
  let p = path;
  while (p) {
    for (const key of variants(p)) if (key in provenance) return provenance[key];
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    p = cut > 0 ? p.slice(0, cut) : "";
  }
  return "";
}

function flatten(value, path, out) {
  if (Array.isArray(value) && value.length && value.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
    value.forEach((item, i) => flatten(item, `${path}[${i}]`, out));
  } else if (value && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (!entries.length) out.push([path, "{}"]);
    for (const [k, item] of entries) flatten(item, path ? `${path}.${k}` : k, out);
  } else {
    out.push([path, value]);
  }
  return out;
}

function showMetadata(md) {
  const warnings = $("md-warnings");
  warnings.replaceChildren(
    ...(md.warnings || []).map((w) => {
      const li = document.createElement("li");
      li.textContent = w;
      return li;
    }),
  );
  const { provenance = {}, warnings: _w, vendor_metadata: vendor, ...fields } = md;
  // The stored upload itself: the name the user gave, size, hash, when.
  const img = v.image;
  const upload = [
    ["upload.filename", img.filename],
    ["upload.size_bytes", img.size_bytes],
    ["upload.sha256", img.sha256],
    ["upload.created_at", img.created_at],
  ].map(([path, value]) => [path, value, "upload"]);
  const rows = [...upload, ...flatten(fields, "", [])].map(([path, value, origin]) => {
    const tr = document.createElement("tr");
    tr.dataset.field = path;
    const cells = [
      path,
      value == null ? "unknown" : Array.isArray(value) ? JSON.stringify(value) : String(value),
      unitOf(path),
      origin || sourceOf(path, provenance),
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    if (value == null) tr.classList.add("unknown");
    return tr;
  });
  $("md-table").tBodies[0].replaceChildren(...rows);
  $("md-vendor").textContent = vendor && Object.keys(vendor).length ? JSON.stringify(vendor, null, 2) : "(none)";
}

// ---------------------------------------------------------------- opening

async function openScene(scene) {
  const view = v;
  v.scene = scene;
  const sceneInfo = (v.image.scenes || []).find((s) => s.index === scene) || v.image.scenes?.[scene];
  let md;
  try {
    md = await getJson(`${apiBase()}/metadata?scene=${scene}`);
  } catch (err) {
    if (v === view) setStatus(`Could not read the metadata: ${err.message}`, true);
    return;
  }
  if (v !== view) return; // the viewer was left (or another image opened) meanwhile
  v.md = md;
  const src = sceneInfo || md;
  v.size = { x: src.size_x, y: src.size_y, z: src.size_z, c: src.size_c, t: src.size_t };
  v.spp = src.samples_per_pixel || 1;
  const ps = md.physical_size || {};
  v.um = { x: ps.x_um ?? null, y: ps.y_um ?? null, z: ps.z_um ?? null };
  v.z = Math.floor(v.size.z / 2); // the middle plane says more than the first
  v.t = 0;
  v.x = Math.floor(v.size.x / 2);
  v.y = Math.floor(v.size.y / 2);
  v.zoom = 1;
  v.pan = { x: 0, y: 0 };

  const z = $("z-slider");
  z.max = String(v.size.z - 1);
  z.value = String(v.z);
  z.disabled = v.size.z <= 1 || v.mip;
  $("z-value").textContent = `${v.z + 1}/${v.size.z}`;
  const t = $("t-slider");
  t.max = String(v.size.t - 1);
  t.value = "0";
  t.disabled = v.size.t <= 1;
  $("t-value").textContent = `1/${v.size.t}`;
  $("viewer-dims").textContent =
    `${dimsText(v.image)} · ${v.image.format_variant || v.image.format} · ${md.dtype}` +
    (v.um.x ? ` · ${Number(v.um.x.toPrecision(4))} µm/px` : " · pixel size unknown") +
    (v.um.z ? `, Z step ${Number(v.um.z.toPrecision(4))} µm` : "");
  showMetadata(md);
  showQuality(v.id, scene, (z) => {
    if (v === view) setZ(z);
  });
  layout();
  // Choosing an ROI drawn on another plane brings the viewer there.
  showRois(v, (z, t) => {
    if (v !== view) return;
    if (v.mip && z != null) setMip(false);
    if (t != null) setT(t);
    if (z != null) setZ(z);
  });
  await loadChannels();
  if (v !== view) return;
  renderXY();
  renderSections();
}

export async function showViewer(id) {
  if (!wired) {
    wirePointer();
    wireControls();
    wired = true;
  }
  if (deep) deep.clear();
  for (const img of [$("img-xy"), $("img-xz"), $("img-yz")]) {
    img._seq = (img._seq || 0) + 1; // drop pictures still loading for the previous image
    img.removeAttribute("src");
    delete img.dataset.src;
  }
  let image;
  try {
    image = await getJson(`/api/images/${id}`);
  } catch (err) {
    v = null;
    $("viewer-title").textContent = err.status === 404 ? "No such image" : "Could not open the image";
    setStatus(err.message, true);
    return;
  }
  v = { id, image, scene: 0, mip: false, gamma: 1, zoom: 1, pan: { x: 0, y: 0 }, channels: [] };
  const view = v;
  window.zstackViewer = v; // handy in the console and for the browser tests
  document.title = `${image.filename} · zstack-analyzer`;
  $("viewer-title").textContent = image.filename;
  // Users mode: whose image and which group (none/token mode: hidden, as before accounts).
  $("viewer-owner").hidden = !accountsOn();
  $("viewer-owner").textContent = `Owner ${image.owner || "none"} · group ${image.group || "none"}`;
  $("download").href = `/api/images/${id}/download`;
  $("download").setAttribute("download", image.filename);
  $("mip").checked = false;
  $("gamma").value = "1";
  $("gamma-value").textContent = "1.00";
  const scenes = image.scenes && image.scenes.length ? image.scenes : [{ index: 0 }];
  $("scene").replaceChildren(
    ...scenes.map((s) => {
      const o = document.createElement("option");
      o.value = String(s.index);
      const dims = s.size_x ? ` (${s.size_x} × ${s.size_y} × ${s.size_z})` : "";
      o.textContent = `${s.name || `Scene ${s.index + 1}`}${dims}`;
      return o;
    }),
  );
  $("scene").disabled = scenes.length < 2;
  // Annotations belong to the image, whatever the scene.
  showDatasets(id);
  showTags(id);
  showKeyValues(id);
  showComments(id);
  showAttachments(id);
  await openScene(0);
  if (v !== view) return;
  $("pane-xy").focus({ preventScroll: true });
}

export function closeViewer() {
  v = null;
  closeRois();
}
