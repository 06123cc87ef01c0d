// Files attached to the open image (a protocol PDF, a plate map): list, download, attach,
// delete. Stored like originals on the server, size-capped there (413 says by how much).

import { ApiError, apiFetch, downloadWithToken, getJson, humanBytes, problemOf, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";

const $ = (id) => document.getElementById(id);

let current = null; // {id} of the open image
let wired = false;

function item(a) {
  const li = document.createElement("li");
  li.className = "attachment";
  const get = document.createElement("button");
  get.type = "button";
  get.className = "link-button";
  get.textContent = a.filename;
  get.title = `Download ${a.filename} (${a.media_type || "file"})`;
  get.addEventListener("click", () =>
    downloadWithToken(`/api/attachments/${a.id}`, a.filename).catch((err) =>
      setStatus(`Download failed: ${err.message}`, true),
    ),
  );
  const size = document.createElement("span");
  size.className = "hint";
  size.textContent = ` ${humanBytes(a.size_bytes)}${a.owner ? ` · ${a.owner}` : ""}`;
  const del = document.createElement("button");
  del.type = "button";
  del.className = "small";
  del.textContent = "×";
  del.setAttribute("aria-label", `Delete the attachment ${a.filename}`);
  del.addEventListener("click", async () => {
    const view = current;
    try {
      await sendJson("DELETE", `/api/attachments/${a.id}`);
    } catch (err) {
      setStatus(`Could not delete ${a.filename}: ${err.message}`, true);
      return;
    }
    if (view === current) await load(view);
  });
  li.append(get, size, del);
  return li;
}

async function load(view) {
  try {
    const body = await getJson(`/api/images/${view.id}/attachments`);
    if (view === current) $("attachment-list").replaceChildren(...listOf(body, "attachments").map(item));
  } catch (err) {
    if (view === current) setStatus(`Could not list the attachments: ${err.message}`, true);
  }
}

async function attach(file) {
  const view = current;
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await apiFetch(`/api/images/${view.id}/attachments`, { method: "POST", body: form });
  if (!response.ok) {
    const err = new ApiError(response.status, await problemOf(response));
    setStatus(`Could not attach ${file.name}: ${err.message}`, true);
    return;
  }
  setStatus(`Attached ${file.name}`);
  if (view === current) await load(view);
}

function wire() {
  const input = $("attachment-input");
  input.addEventListener("change", async () => {
    const files = [...input.files];
    input.value = "";
    for (const file of files) await attach(file);
  });
}

/** Show the attachments of image `id` (called when the viewer opens an image). */
export function showAttachments(id) {
  if (!wired) {
    wire();
    wired = true;
  }
  current = { id };
  $("attachment-list").replaceChildren();
  return load(current);
}
