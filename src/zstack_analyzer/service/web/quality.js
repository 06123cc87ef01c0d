// The image panel's quality: focus against Z and mean intensity against T, per channel,
// drawn as small inline SVG charts (no external service, nothing inline for the CSP).
// Clicking a point of the focus chart, or the "best focus" button, moves to that plane.

import { getJson } from "./api.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const W = 220;
const H = 70;
const PAD = 4;
const COLOURS = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, value] of Object.entries(attrs)) el.setAttribute(k, String(value));
  return el;
}

function fmt(x) {
  if (x === null || x === undefined) return "–";
  if (Math.abs(x) >= 1000 || (Math.abs(x) < 0.01 && x !== 0)) return x.toExponential(2);
  return Number(x.toPrecision(3)).toString();
}

/** One small line chart of several series; onPick(i) when a point is clicked. */
function chart(title, series, onPick) {
  const figure = document.createElement("figure");
  figure.className = "quality-chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  svg.setAttribute("aria-label", title);
  const n = Math.max(...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values).filter((x) => Number.isFinite(x));
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const x = (i) => PAD + (n > 1 ? (i * (W - 2 * PAD)) / (n - 1) : (W - 2 * PAD) / 2);
  const y = (value) => H - PAD - (hi > lo ? ((value - lo) * (H - 2 * PAD)) / (hi - lo) : (H - 2 * PAD) / 2);
  series.forEach((s) => {
    const points = s.values.map((value, i) => `${x(i)},${y(value)}`).join(" ");
    svg.append(svgEl("polyline", { points, fill: "none", stroke: s.colour, "stroke-width": 1.5 }));
    s.values.forEach((value, i) => {
      const dot = svgEl("circle", { cx: x(i), cy: y(value), r: 2.5, fill: s.colour });
      dot.classList.add("quality-point");
      const tip = svgEl("title", {});
      tip.textContent = `${s.label} #${i + 1}: ${fmt(value)}`;
      dot.append(tip);
      if (onPick) dot.addEventListener("click", () => onPick(i));
      svg.append(dot);
    });
  });
  figure.append(caption, svg);
  return figure;
}

/** Show the quality of ``scene`` of image ``id``; onPickZ(z) jumps to a plane. */
export async function showQuality(id, scene, onPickZ) {
  const box = $("quality");
  const body = $("quality-body");
  body.replaceChildren();
  let q;
  try {
    q = await getJson(`/api/images/${id}/quality?scene=${scene}`);
  } catch {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  if (q.status !== "ready") {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent =
      q.status === "pending" ? "Not measured yet." : `Could not be measured: ${q.error || ""}`;
    body.append(p);
    return;
  }
  const list = document.createElement("ul");
  list.className = "quality-list";
  q.channels.forEach((ch, i) => {
    const li = document.createElement("li");
    li.dataset.channel = String(ch.channel);
    const swatch = document.createElement("span");
    swatch.className = `quality-swatch quality-c${i % COLOURS.length}`;
    const text = document.createElement("span");
    const flags = [];
    if (ch.focus_edge) flags.push("focus at edge");
    if (ch.saturated_fraction >= 0.01) flags.push("saturated");
    text.textContent =
      `${ch.name || `C${ch.channel}`}: saturated ${fmt(100 * (ch.saturated_fraction ?? 0))}%` +
      `, SNR ${fmt(ch.snr)}` +
      (ch.bleaching_rate !== null ? `, bleaching ${fmt(ch.bleaching_rate)}/frame` : "") +
      (flags.length ? ` ⚠ ${flags.join(", ")}` : "");
    const best = document.createElement("button");
    best.type = "button";
    best.className = "best-focus";
    best.textContent = `Best focus: Z ${ch.best_focus_z + 1}`;
    best.addEventListener("click", () => onPickZ(ch.best_focus_z));
    li.append(swatch, text, best);
    list.append(li);
  });
  body.append(list);
  const series = (key) =>
    q.channels.map((ch, i) => ({
      label: ch.name || `C${ch.channel}`,
      colour: COLOURS[i % COLOURS.length],
      values: ch[key],
    }));
  body.append(chart("Focus score against Z (click a point to go there)", series("focus"), onPickZ));
  if (q.channels.length && q.channels[0].intensity_t.length > 1) {
    body.append(chart("Mean intensity against T", series("intensity_t"), null));
  }
}
