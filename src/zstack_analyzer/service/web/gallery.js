// Gallery: upload (drop or picker, one progress bar per file), search (search.js), paging, delete;
// the projects/datasets tree beside it (tree.js) scopes the list and links images.

import {
  deleteImage,
  getJson,
  humanBytes,
  setStatus,
  showImage,
  token,
  uploadErrorText,
  uploadFile,
} from "./api.js";
import { chosenGroup, describeSearch, searchUrl, wireSearch } from "./search.js";
import { accountsOn } from "./session.js";
import { loadTagNames } from "./tags.js";
import { decorateCard, loadTree, wireTree } from "./tree.js";

// `ticket` numbers the searches: only the newest one's answer may fill the grid.
const state = { page: 0, pageSize: 24, count: 0, ticket: 0 };
let wired = false;

const $ = (id) => document.getElementById(id);

export function dimsText(img) {
  const parts = [`${img.width} × ${img.height}`];
  if (img.depth > 1) parts[0] += ` × ${img.depth} Z`;
  if (img.channels > 1) parts.push(`${img.channels} ch`);
  if (img.timepoints > 1) parts.push(`${img.timepoints} T`);
  // List items carry scene_count; a full record (GET /{id}) also has the scenes list.
  const scenes = img.scene_count ?? (img.scenes ? img.scenes.length : 1);
  if (scenes > 1) parts.push(`${scenes} scenes`);
  return parts.join(", ");
}

/** Ask before deleting; resolves true only on an explicit "Delete". */
function confirmDelete(name) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = `Delete “${name}”? The stored file and its previews are removed.`;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

/** "alice · imaging" under a card (users mode): whose image, in which group. */
export function ownerLine(img) {
  const p = document.createElement("p");
  p.className = "owner";
  p.textContent = `${img.owner || "no owner"} · ${img.group || "no group"}`;
  p.title = `Owner ${img.owner || "none"}, group ${img.group || "none"}`;
  return p;
}

function card(img) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.id = img.id;
  const link = document.createElement("a");
  link.href = `#/image/${img.id}`;
  link.className = "thumb-link";
  link.setAttribute("aria-label", `Open ${img.filename}`);
  const thumb = document.createElement("img");
  thumb.className = "thumb";
  thumb.alt = `Thumbnail of ${img.filename}`;
  thumb.width = 256;
  thumb.height = 256;
  const url = `/api/images/${img.id}/thumbnail?width=256&height=256`;
  if (token()) {
    showImage(thumb, url).catch(() => thumb.classList.add("broken"));
  } else {
    thumb.loading = "lazy";
    thumb.src = url;
    thumb.onerror = () => thumb.classList.add("broken");
  }
  link.append(thumb);

  const info = document.createElement("div");
  info.className = "card-info";
  const name = document.createElement("a");
  name.href = link.href;
  name.className = "filename";
  name.textContent = img.filename;
  name.title = img.filename;
  const dims = document.createElement("p");
  dims.className = "dims";
  dims.textContent = dimsText(img);
  const meta = document.createElement("p");
  meta.className = "meta";
  // A whole-slide file by its variant (SVS, NDPI, ..., DICOM WSI), not the bare "TIFF".
  meta.textContent = `${img.format_variant || img.format} · ${humanBytes(img.size_bytes)}`;
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.textContent = "Delete";
  del.setAttribute("aria-label", `Delete ${img.filename}`);
  del.addEventListener("click", async () => {
    if (!(await confirmDelete(img.filename))) return;
    try {
      await deleteImage(img.id);
      setStatus(`Deleted ${img.filename}`);
      await refresh();
    } catch (err) {
      setStatus(`Could not delete ${img.filename}: ${err.message}`, true);
    }
  });
  info.append(name, dims, meta);
  const flags = img.quality_flags || [];
  if (flags.length) {
    // A suspect acquisition, with the reason (saturated, focus at edge, weak signal).
    const badge = document.createElement("p");
    badge.className = "quality-badge";
    badge.textContent = `⚠ ${flags.join(", ")}`;
    badge.title = `Quality: ${flags.join(", ")}`;
    info.append(badge);
  }
  if (accountsOn()) info.append(ownerLine(img));
  info.append(del);
  li.append(link, info);
  decorateCard(li, info, img); // selection box, drag onto a dataset, unlink
  return li;
}

export async function refresh() {
  const ticket = ++state.ticket;
  let body;
  try {
    body = await getJson(searchUrl(state.page * state.pageSize, state.pageSize));
  } catch (err) {
    if (ticket === state.ticket) setStatus(`Could not search images: ${err.message}`, true);
    return;
  }
  // A later search was sent meanwhile (typing, "clear"): its answer is the one to show,
  // whichever order the answers arrive in.
  if (ticket !== state.ticket) return;
  state.count = body.count;
  // Deleting the last card of the last page: step back a page.
  if (body.data.length === 0 && state.page > 0 && body.count > 0) {
    state.page = Math.max(0, Math.ceil(body.count / state.pageSize) - 1);
    await refresh();
    return;
  }
  $("grid").replaceChildren(...body.data.map(card));
  $("gallery-empty").hidden = body.count > 0;
  const filters = describeSearch();
  $("gallery-empty").textContent = filters
    ? `No image matches ${filters}.`
    : "No images yet: drop a file above.";
  const first = body.count ? state.page * state.pageSize + 1 : 0;
  const last = state.page * state.pageSize + body.data.length;
  $("page-info").textContent = `${first}–${last} of ${body.count}`;
  $("prev-page").disabled = state.page === 0;
  $("next-page").disabled = last >= body.count;
}

function uploadAll(files) {
  const list = $("upload-list");
  const jobs = [...files].map(async (file) => {
    const li = document.createElement("li");
    li.className = "upload-item";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", `Upload progress of ${file.name}`);
    const msg = document.createElement("span");
    msg.className = "upload-msg";
    msg.textContent = humanBytes(file.size);
    li.append(name, bar, msg);
    list.prepend(li);
    try {
      const body = await uploadFile(
        file,
        (fraction) => {
          bar.value = fraction;
          // Bytes are sent; the server still stores, hashes and reads the headers.
          if (fraction >= 1) msg.textContent = "reading…";
        },
        chosenGroup(), // users mode: the group shown in the filter; else the default group
      );
      bar.value = 1;
      li.classList.add("ok");
      msg.textContent = `Uploaded: ${dimsText(body.image_stack)}`;
    } catch (err) {
      li.classList.add("failed");
      msg.textContent = uploadErrorText(err);
      msg.setAttribute("role", "alert");
    }
  });
  // Refresh once every file has finished, whatever the outcome.
  Promise.allSettled(jobs).then(refresh);
}

function wire() {
  const drop = $("dropzone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    if (input.files.length) uploadAll(input.files);
    input.value = "";
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) uploadAll(e.dataTransfer.files);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  wireSearch(() => {
    state.page = 0;
    refresh();
  });
  wireTree(() => {
    state.page = 0;
    refresh();
  });
  $("page-size").addEventListener("change", () => {
    state.pageSize = Number($("page-size").value);
    state.page = 0;
    refresh();
  });
  $("prev-page").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    refresh();
  });
  $("next-page").addEventListener("click", () => {
    state.page += 1;
    refresh();
  });
}

export function showGallery() {
  if (!wired) {
    wire();
    wired = true;
  }
  document.title = "Images · zstack-analyzer";
  loadTagNames(); // the tag filter's suggestions
  loadTree(); // counts may have changed while the viewer was open
  return refresh();
}
