// Projects and datasets beside the gallery: choose one to list its images; link images to
// a dataset by dragging their cards onto it, or by ticking them and pressing "Link selected".
//
// Plain buttons in nested lists rather than an ARIA tree widget: Tab and Enter reach
// every container, and screen readers announce the nesting of the lists.
//
// A container the API marks `can_change: false` (another member's, in a read-only or
// read-annotate group) is shown but offers no rename, delete, drop, link or unlink: the
// server would refuse each with 403, so the page does not offer them.

import { getJson, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";
import { chosenGroup, setScope } from "./search.js";

const $ = (id) => document.getElementById(id);
const DRAG_TYPE = "application/x-zstack-image-ids";

const state = {
  projects: [],
  datasets: [],
  selected: new Set(), // image ids ticked in the gallery
  scope: null, // {param, id, label}
  onChange: () => {},
};

function button(label, pressed) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "tree-node";
  b.textContent = label;
  b.setAttribute("aria-pressed", String(pressed));
  return b;
}

/** Whether the API lets you change a container (older servers send no flag: yes). */
const mayChange = (container) => container.can_change !== false;

/** "ann's: you may view it, not change it": why a container offers nothing to change. */
function readOnlyNote(container) {
  return `${container.owner ? `${container.owner}'s` : "Not yours"}: you may view it, not change it`;
}

function isScope(param, id) {
  return Boolean(state.scope && state.scope.param === param && String(state.scope.id) === String(id));
}

/** The rename/delete form for a container you may change, else a note saying whose it is. */
function showScopeForm(scope) {
  $("scope-form").hidden = !scope || !scope.canChange;
  $("scope-read-only").hidden = !scope || scope.canChange;
  if (scope && !scope.canChange) $("scope-read-only").textContent = scope.note;
}

function choose(scope) {
  state.scope = scope;
  setScope(scope);
  showScopeForm(scope);
  if (scope) $("scope-name").value = scope.label;
  $("tree-all").setAttribute("aria-pressed", String(!scope));
  if (scope && scope.param === "dataset" && scope.canChange) $("link-target").value = String(scope.id);
  render();
  state.onChange();
}

function scopeOf(param, container) {
  return {
    param,
    id: container.id,
    label: container.name,
    canChange: mayChange(container),
    note: readOnlyNote(container),
  };
}

function datasetNode(ds) {
  const li = document.createElement("li");
  const count = ds.child_count ?? ds.image_count ?? null; // visible images of the dataset
  const b = button(count == null ? ds.name : `${ds.name} (${count})`, isScope("dataset", ds.id));
  b.classList.add("tree-dataset");
  b.dataset.datasetId = String(ds.id);
  b.addEventListener("click", () => choose(scopeOf("dataset", ds)));
  if (!mayChange(ds)) {
    b.classList.add("read-only");
    b.title = `${ds.description ? `${ds.description}. ` : ""}${readOnlyNote(ds)}`;
    li.append(b);
    return li;
  }
  b.title = ds.description || `Dataset ${ds.name}: drop images here to link them`;
  b.addEventListener("dragover", (e) => {
    if (!e.dataTransfer.types.includes(DRAG_TYPE)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "link";
    b.classList.add("drop-over");
  });
  b.addEventListener("dragleave", () => b.classList.remove("drop-over"));
  b.addEventListener("drop", (e) => {
    b.classList.remove("drop-over");
    const raw = e.dataTransfer.getData(DRAG_TYPE);
    if (!raw) return;
    e.preventDefault();
    e.stopPropagation();
    link(ds, JSON.parse(raw));
  });
  li.append(b);
  return li;
}

function render() {
  const byProject = new Map();
  // A dataset may sit in several projects (project_ids), or in none.
  for (const ds of state.datasets) {
    const ids = ds.project_ids ?? (ds.project_id == null ? [] : [ds.project_id]);
    for (const key of ids.length ? ids.map(String) : [""]) {
      if (!byProject.has(key)) byProject.set(key, []);
      byProject.get(key).push(ds);
    }
  }
  const nodes = state.projects.map((p) => {
    const li = document.createElement("li");
    li.className = "tree-project";
    const b = button(p.name, isScope("project", p.id));
    b.classList.add("tree-project-node");
    b.title = p.description || `Project ${p.name}`;
    if (!mayChange(p)) {
      b.classList.add("read-only");
      b.title = `${p.description ? `${p.description}. ` : ""}${readOnlyNote(p)}`;
    }
    b.addEventListener("click", () => choose(scopeOf("project", p)));
    const ul = document.createElement("ul");
    ul.setAttribute("aria-label", `Datasets of ${p.name}`);
    ul.append(...(byProject.get(String(p.id)) || []).map(datasetNode));
    li.append(b, ul);
    return li;
  });
  const orphans = byProject.get("") || [];
  if (orphans.length) {
    const li = document.createElement("li");
    li.className = "tree-project";
    const label = document.createElement("span");
    label.className = "tree-orphans";
    label.textContent = "Datasets without a project";
    const ul = document.createElement("ul");
    ul.setAttribute("aria-label", "Datasets without a project");
    ul.append(...orphans.map(datasetNode));
    li.append(label, ul);
    nodes.push(li);
  }
  $("tree").replaceChildren(...nodes);

  const option = (value, text) => new Option(text, String(value));
  const keepProject = $("new-dataset-project").value;
  $("new-dataset-project").replaceChildren(
    option("", "no project"),
    // A dataset goes into a project you may change (linking into another's is refused).
    ...state.projects.filter(mayChange).map((p) => option(p.id, p.name)),
  );
  $("new-dataset-project").value = keepProject;
  const keepTarget = $("link-target").value;
  $("link-target").replaceChildren(
    option("", "choose…"),
    ...state.datasets.filter(mayChange).map((ds) => option(ds.id, ds.name)),
  );
  // A kept choice that is no longer offered falls back to "choose…" (the select has no such value).
  $("link-target").value = keepTarget;
  if ($("link-target").value !== keepTarget) $("link-target").value = "";
  updateSelection();
}

/** Reload projects and datasets (after a change here or elsewhere). */
export async function loadTree() {
  try {
    const [projects, datasets] = await Promise.all([getJson("/api/projects?limit=1000"), getJson("/api/datasets?limit=1000")]);
    state.projects = listOf(projects, "projects");
    state.datasets = listOf(datasets, "datasets");
  } catch (err) {
    // A server without the annotation routes (404): no tree, the gallery as before.
    $("tree-panel").hidden = err.status === 404;
    if (err.status !== 404) setStatus(`Could not list projects and datasets: ${err.message}`, true);
    return;
  }
  $("tree-panel").hidden = false;
  // The chosen container was deleted meanwhile: back to all images.
  const gone =
    state.scope &&
    !(state.scope.param === "dataset" ? state.datasets : state.projects).some(
      (c) => String(c.id) === String(state.scope.id),
    );
  if (gone) choose(null);
  else {
    if (state.scope) {
      // Your rights may have changed meanwhile (a group's new level): the form follows them.
      const list = state.scope.param === "dataset" ? state.datasets : state.projects;
      const current = list.find((c) => String(c.id) === String(state.scope.id));
      Object.assign(state.scope, { canChange: mayChange(current), note: readOnlyNote(current) });
      showScopeForm(state.scope);
    }
    render();
  }
}

async function link(ds, ids) {
  if (!ids.length) return;
  try {
    await sendJson("POST", `/api/datasets/${ds.id}/images`, { image_ids: ids });
  } catch (err) {
    setStatus(`Could not link to ${ds.name}: ${err.message}`, true);
    return;
  }
  setStatus(`Linked ${ids.length} image${ids.length === 1 ? "" : "s"} to ${ds.name}`);
  state.selected.clear();
  for (const box of document.querySelectorAll(".card-select")) box.checked = false;
  await loadTree();
  state.onChange();
}

async function unlink(imageId, filename) {
  const ds = state.scope;
  try {
    await sendJson("DELETE", `/api/datasets/${ds.id}/images/${imageId}`);
  } catch (err) {
    setStatus(`Could not unlink ${filename}: ${err.message}`, true);
    return;
  }
  setStatus(`Removed ${filename} from ${ds.label}`);
  await loadTree();
  state.onChange();
}

function updateSelection() {
  const n = state.selected.size;
  $("selection-info").textContent = n
    ? `${n} image${n === 1 ? "" : "s"} selected.`
    : "Select images (their check boxes) or drag them onto a dataset.";
  $("link-selected").disabled = !n || !$("link-target").value;
}

/**
 * Give a gallery card its selection box and make it draggable onto a dataset; in a
 * dataset's listing also a button that unlinks it (the image itself stays).
 */
export function decorateCard(li, info, img) {
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "card-select";
  box.checked = state.selected.has(img.id);
  box.setAttribute("aria-label", `Select ${img.filename}`);
  box.addEventListener("change", () => {
    if (box.checked) state.selected.add(img.id);
    else state.selected.delete(img.id);
    li.classList.toggle("selected", box.checked);
    updateSelection();
  });
  li.classList.toggle("selected", box.checked);
  li.prepend(box);
  li.draggable = true;
  li.addEventListener("dragstart", (e) => {
    // Dragging a ticked card takes every ticked image along; an unticked one goes alone.
    const ids = state.selected.has(img.id) ? [...state.selected] : [img.id];
    e.dataTransfer.setData(DRAG_TYPE, JSON.stringify(ids));
    e.dataTransfer.setData("text/plain", ids.join("\n"));
    e.dataTransfer.effectAllowed = "link";
  });
  if (state.scope && state.scope.param === "dataset" && state.scope.canChange) {
    const out = document.createElement("button");
    out.type = "button";
    out.className = "small unlink";
    out.textContent = "Unlink";
    out.setAttribute("aria-label", `Remove ${img.filename} from ${state.scope.label}`);
    out.addEventListener("click", () => unlink(img.id, img.filename));
    info.append(out);
  }
}

async function create(url, body, input, what) {
  // Users mode: into the group shown in the gallery's filter (as uploads), else the default.
  const group = chosenGroup();
  const target = group ? `${url}?group=${encodeURIComponent(group)}` : url;
  try {
    await sendJson("POST", target, body);
  } catch (err) {
    setStatus(`Could not create the ${what}: ${err.message}`, true);
    return;
  }
  input.value = "";
  setStatus(`Created ${what} ${body.name}`);
  await loadTree();
}

/** Ask before deleting the chosen container; resolves true only on an explicit "Delete". */
function confirmDelete(scope) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent =
    `Delete the ${scope.param} “${scope.label}”? Its images stay in the archive` +
    (scope.param === "project" ? "; its datasets stay too." : ".");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

async function renameScope() {
  const scope = state.scope;
  const name = $("scope-name").value.trim();
  if (!scope || !name || name === scope.label) return;
  try {
    await sendJson("PATCH", `/api/${scope.param}s/${scope.id}`, { name });
  } catch (err) {
    setStatus(`Could not rename ${scope.label}: ${err.message}`, true);
    return;
  }
  setStatus(`Renamed ${scope.label} to ${name}`);
  scope.label = name;
  setScope(scope);
  await loadTree();
}

async function deleteScope() {
  const scope = state.scope;
  if (!scope || !(await confirmDelete(scope))) return;
  try {
    await sendJson("DELETE", `/api/${scope.param}s/${scope.id}`);
  } catch (err) {
    setStatus(`Could not delete ${scope.label}: ${err.message}`, true);
    return;
  }
  setStatus(`Deleted ${scope.param} ${scope.label}`);
  choose(null);
  await loadTree();
}

/** Wire the panel once; `onChange()` refreshes the gallery after a scope or link change. */
export function wireTree(onChange) {
  state.onChange = onChange;
  $("tree-all").addEventListener("click", () => choose(null));
  $("scope-form").addEventListener("submit", (e) => {
    e.preventDefault();
    renameScope();
  });
  $("scope-delete").addEventListener("click", deleteScope);
  $("project-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-project").value.trim();
    if (name) create("/api/projects", { name }, $("new-project"), "project");
  });
  $("dataset-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-dataset").value.trim();
    if (!name) return;
    const project = $("new-dataset-project").value;
    const body = { name };
    if (project) body.project_id = /^\d+$/.test(project) ? Number(project) : project;
    create("/api/datasets", body, $("new-dataset"), "dataset");
  });
  $("link-target").addEventListener("change", updateSelection);
  $("link-selected").addEventListener("click", () => {
    const ds = state.datasets.find((d) => String(d.id) === $("link-target").value);
    if (ds) link(ds, [...state.selected]);
  });
}
