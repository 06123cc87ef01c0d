// Tag chips on the open image: add (with autocomplete from the group's tags), remove,
// copy and paste between images. Every change sends the whole list
// (PUT /api/images/{id}/tags replaces the image's tags; new names are created on first use).

import { getJson, sendJson, setStatus } from "./api.js";
import { listOf, tagName } from "./listing.js";

const $ = (id) => document.getElementById(id);
const CLIPBOARD = "zstack-copied-tags"; // localStorage: pasting works across tabs too

let current = null; // {id, tags: [names]} of the open image
let wired = false;

/** Fill the shared <datalist> with the tags the caller can see (for both tag inputs). */
export async function loadTagNames() {
  let tags;
  try {
    tags = listOf(await getJson("/api/tags"), "tags");
  } catch {
    return; // suggestions are a convenience: typing still works
  }
  const names = [...new Set(tags.map(tagName))].sort((a, b) => a.localeCompare(b));
  $("tag-names").replaceChildren(
    ...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      const count = tags.find((t) => tagName(t) === name)?.count;
      if (count != null) option.label = `${name} (${count})`;
      return option;
    }),
  );
}

function chip(name) {
  const li = document.createElement("li");
  li.className = "chip";
  const text = document.createElement("span");
  text.textContent = name;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "chip-remove";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Remove tag ${name}`);
  remove.addEventListener("click", () => save(current.tags.filter((t) => t !== name)));
  li.append(text, remove);
  return li;
}

function render() {
  $("tag-chips").replaceChildren(...current.tags.map(chip));
  $("tag-paste").disabled = !localStorage.getItem(CLIPBOARD);
}

async function save(tags) {
  const view = current;
  const unique = [...new Set(tags.map((t) => t.trim()).filter(Boolean))];
  try {
    const body = await sendJson("PUT", `/api/images/${view.id}/tags`, unique);
    if (view !== current) return;
    const answered = listOf(body, "tags");
    view.tags = answered.length || !unique.length ? answered.map(tagName) : unique;
  } catch (err) {
    setStatus(`Could not save the tags: ${err.message}`, true);
    return;
  }
  render();
  loadTagNames();
}

function wire() {
  $("tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!current) return;
    // "a, b" adds two tags at once.
    const added = $("tag-input").value.split(",").map((t) => t.trim()).filter(Boolean);
    $("tag-input").value = "";
    if (added.length) save([...current.tags, ...added]);
  });
  $("tag-copy").addEventListener("click", () => {
    if (!current) return;
    localStorage.setItem(CLIPBOARD, JSON.stringify(current.tags));
    setStatus(`Copied ${current.tags.length} tag${current.tags.length === 1 ? "" : "s"}`);
    render();
  });
  $("tag-paste").addEventListener("click", () => {
    if (!current) return;
    let copied = [];
    try {
      copied = JSON.parse(localStorage.getItem(CLIPBOARD) || "[]");
    } catch {
      copied = [];
    }
    if (Array.isArray(copied) && copied.length) save([...current.tags, ...copied.map(String)]);
  });
}

/** Show the tags of image `id` (called when the viewer opens an image). */
export async function showTags(id) {
  if (!wired) {
    wire();
    wired = true;
  }
  const view = (current = { id, tags: [] });
  render();
  try {
    const body = await getJson(`/api/images/${id}/tags`);
    if (view !== current) return;
    view.tags = listOf(body, "tags").map(tagName);
  } catch (err) {
    if (view === current) setStatus(`Could not read the tags: ${err.message}`, true);
    return;
  }
  render();
  loadTagNames();
}
