// Gallery search: the filter box and a few typed filters, sent to GET /api/images/search.
//
// Kept apart from gallery.js so the gallery only asks "which URL lists the current page?"
// and "how do I describe the filters in words?".

import { debounce, getJson } from "./api.js";
import { onSessionChange, session } from "./session.js";

const $ = (id) => document.getElementById(id);

/** The typed filters: element id -> search parameter. */
const TYPED = {
  "filter-format": "format",
  "filter-channel": "channel",
  "filter-objective": "objective",
  "filter-after": "acquired_after",
  "filter-before": "acquired_before",
  "filter-group": "group", // users mode only (hidden and empty otherwise)
};

// The container chosen in the tree (tree.js): {param: "dataset"|"project", id, label} or null.
let scope = null;

/** Limit the gallery to one dataset or project (null: all images). */
export function setScope(value) {
  scope = value;
  const info = $("scope-info");
  info.hidden = !scope;
  info.textContent = scope ? `Showing ${scope.param} “${scope.label}”` : "";
}

/** "a, b" -> ["a", "b"]: the tags asked for (every one must be on an image). */
export function tagFilter() {
  return $("filter-tag").value.split(",").map((t) => t.trim()).filter(Boolean);
}

/** "strain:N2; drug" -> ["strain:N2", "drug"] (each a kv= parameter, AND; a key alone: any value). */
export function kvFilter() {
  return $("filter-kv").value.split(";").map((t) => t.trim()).filter((t) => t && !t.startsWith(":"));
}

/** Current filter values as search parameters (empty ones left out). */
export function searchParams() {
  const params = new URLSearchParams();
  const q = $("filter").value.trim();
  if (q) params.set("q", q);
  for (const tag of tagFilter()) params.append("tag", tag);
  for (const kv of kvFilter()) params.append("kv", kv);
  if (scope) params.set(scope.param, String(scope.id));
  for (const [id, name] of Object.entries(TYPED)) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  // The quality choice carries its own parameter: "saturated_min=0.01", "focus_edge=true"...
  const quality = $("filter-quality").value;
  if (quality) {
    const [name, value] = quality.split("=");
    params.set(name, value);
  }
  return params;
}

/** The URL of one page of matching images. */
export function searchUrl(skip, limit) {
  const params = searchParams();
  // A dataset chosen in the tree and nothing else: its own listing (every server with
  // datasets has it); with more filters, the search narrows by dataset= as well.
  const onlyDataset = scope && scope.param === "dataset" && [...params.keys()].every((k) => k === "dataset");
  params.set("skip", String(skip));
  params.set("limit", String(limit));
  if (onlyDataset) {
    params.delete("dataset");
    return `/api/datasets/${encodeURIComponent(scope.id)}/images?${params}`;
  }
  return `/api/images/search?${params}`;
}

/** "“dapi”, channel DAPI, from 2025-03-01" — for the "nothing found" message. */
export function describeSearch() {
  const parts = [];
  const q = $("filter").value.trim();
  if (q) parts.push(`“${q}”`);
  for (const tag of tagFilter()) parts.push(`tag ${tag}`);
  for (const kv of kvFilter()) parts.push(kv);
  if (scope) parts.push(`in ${scope.param} ${scope.label}`);
  const labels = {
    format: "format",
    channel: "channel",
    objective: "objective",
    acquired_after: "from",
    acquired_before: "until",
    group: "in group",
  };
  for (const [id, name] of Object.entries(TYPED)) {
    const value = $(id).value.trim();
    if (value) parts.push(`${labels[name]} ${value}`);
  }
  const quality = $("filter-quality");
  if (quality.value) parts.push(quality.selectedOptions[0].textContent);
  return parts.join(", ");
}

/** Fill the format list from the server's formats table (names only, once each). */
async function loadFormats() {
  const select = $("filter-format");
  try {
    const body = await getJson("/api/images/formats/supported");
    const names = [...new Set(Object.values(body.formats).map((f) => f.name))].sort();
    for (const name of names) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.append(option);
    }
  } catch {
    // The search still works without the list; the select just offers "any".
  }
}

/**
 * The group filter (users mode): the caller's groups; an admin sees every group.
 * Rebuilt when the user changes (log out, log in as someone else).
 */
async function loadGroups() {
  const box = $("group-filter");
  const select = $("filter-group");
  const me = session.mode === "users" ? session.me : null;
  select.replaceChildren(new Option(me && me.is_admin ? "all groups" : "all my groups", ""));
  box.hidden = !me;
  if (!me) return;
  let names = me.groups.map((g) => g.name);
  if (me.is_admin) {
    try {
      names = (await getJson("/api/admin/groups")).map((g) => g.name);
    } catch {
      // Keep the admin's own groups.
    }
  }
  for (const name of [...new Set(names)].sort()) select.append(new Option(name, name));
}

/** The group chosen in the filter (uploads go there), or null. */
export function chosenGroup() {
  return $("filter-group").value || null;
}

/** Call onChange (debounced for typing) whenever a filter changes. */
export function wireSearch(onChange) {
  const typed = debounce(onChange, 250);
  $("filter").addEventListener("input", typed);
  for (const id of ["filter-channel", "filter-objective", "filter-tag", "filter-kv"]) {
    $(id).addEventListener("input", typed);
  }
  for (const id of [
    "filter-format",
    "filter-after",
    "filter-before",
    "filter-group",
    "filter-quality",
  ]) {
    $(id).addEventListener("change", onChange);
  }
  $("filter-clear").addEventListener("click", () => {
    $("filter").value = "";
    for (const id of [...Object.keys(TYPED), "filter-tag", "filter-kv"]) $(id).value = "";
    $("filter-quality").value = "";
    onChange();
  });
  loadFormats();
  loadGroups();
  onSessionChange(loadGroups);
}
