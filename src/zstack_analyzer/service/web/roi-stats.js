// The selected ROI's measurements: per channel, at full resolution (GET .../stats),
// and optionally its mean on every Z plane (?z=all). One column per channel, one row per
// measure, so the table fits the sidebar; every cell keeps all its digits in `title`.

import { getJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";
import { AREA } from "./roi-geometry.js";

const $ = (id) => document.getElementById(id);

/** A number as the table shows it: integers whole, others to 7 significant digits. */
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

/**
 * Measure and show one ROI (null: hide the tables). `ctx`: {roi, url (the ROI's API URL),
 * channelNames ({index: name}), sizeZ, isCurrent() (false once another ROI or image is
 * shown: a late answer is dropped)}.
 */
export async function showStats(ctx) {
  const box = $("roi-stats");
  const { roi } = ctx;
  box.hidden = !roi;
  if (!roi) return;
  const body = $("roi-stats-table").tBodies[0];
  body.replaceChildren();
  $("roi-stats-note").textContent = "measuring…";
  let stats;
  try {
    stats = await getJson(`${ctx.url}/stats`);
  } catch (err) {
    if (ctx.isCurrent()) $("roi-stats-note").textContent = `No measurement: ${err.message}`;
    return;
  }
  if (!ctx.isCurrent()) return; // another ROI was chosen meanwhile
  const channels = listOf(stats, "channels");
  const names = ctx.channelNames || {};
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
  $("roi-allz-row").hidden = ctx.sizeZ <= 1;
  if ($("roi-allz").checked && ctx.sizeZ > 1) showPlanes(ctx);
  else $("roi-planes-table").hidden = true;
}

/** The ROI's footprint measured on every Z plane (?z=all): the mean per channel and plane. */
async function showPlanes(ctx) {
  const table = $("roi-planes-table");
  let stats;
  try {
    stats = await getJson(`${ctx.url}/stats?z=all`);
  } catch (err) {
    if (ctx.isCurrent()) setStatus(`No per-plane measurement: ${err.message}`, true);
    return;
  }
  if (!ctx.isCurrent() || !$("roi-allz").checked) return;
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
    th.textContent = `Mean ${c.name || (ctx.channelNames || {})[c.channel] || `channel ${Number(c.channel) + 1}`}`;
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
