// The datasets the open image is in, as chips in the annotations panel
// (GET /api/images/{id}/datasets answers only those the caller may see).
// Read-only here: filing is done from the tree and the gallery.

import { getJson } from "./api.js";
import { listOf } from "./listing.js";

const $ = (id) => document.getElementById(id);

let current = null; // the image id shown, so a late answer for another image is dropped

function chip(dataset) {
  const li = document.createElement("li");
  li.className = "chip";
  li.dataset.datasetId = String(dataset.id);
  li.textContent = dataset.name;
  if (dataset.group) li.title = `${dataset.name} (${dataset.group}${dataset.owner ? `, ${dataset.owner}` : ""})`;
  return li;
}

function render(datasets, note) {
  const list = $("dataset-chips");
  if (!list) return;
  list.replaceChildren(...datasets.map(chip));
  $("dataset-none").textContent = note;
  $("dataset-none").hidden = !note;
}

/** Show the datasets of image `id` (called when the viewer opens an image). */
export async function showDatasets(id) {
  current = id;
  render([], "");
  let datasets;
  try {
    datasets = listOf(await getJson(`/api/images/${id}/datasets`), "datasets");
  } catch (err) {
    if (current === id) render([], `Could not read the datasets: ${err.message}`);
    return;
  }
  if (current !== id) return;
  render(datasets, datasets.length ? "" : "In no dataset");
}
