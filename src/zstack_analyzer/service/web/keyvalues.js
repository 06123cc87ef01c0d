// The open image's key-value pairs as an editable table: ordered rows, repeatable keys,
// optional namespace; "Save pairs" sends the whole table (PUT replaces the image's pairs).
// A template (a list of expected keys, e.g. REMBI's study/sample/specimen fields) is
// offered as a form whose answers are added as rows.

import { getJson, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";

const $ = (id) => document.getElementById(id);
export const TEMPLATES_URL = "/api/annotations/templates";

let current = null; // {id} of the open image
let templates = [];
let wired = false;

function cellInput(value, label, cls) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = cls;
  input.value = value ?? "";
  input.setAttribute("aria-label", label);
  return input;
}

function row(pair = {}) {
  const tr = document.createElement("tr");
  const n = $("kv-table").tBodies[0].rows.length + 1;
  const cells = [
    cellInput(pair.key, `Key of row ${n}`, "kv-key"),
    cellInput(pair.value, `Value of row ${n}`, "kv-value"),
    cellInput(pair.namespace, `Namespace of row ${n}`, "kv-ns"),
  ];
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "small";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Remove row ${n}`);
  remove.addEventListener("click", () => tr.remove());
  for (const el of [...cells, remove]) {
    const td = document.createElement("td");
    td.append(el);
    tr.append(td);
  }
  return tr;
}

/** The table's rows as pairs, in order; rows without a key are left out. */
export function tablePairs() {
  return [...$("kv-table").tBodies[0].rows]
    .map((tr) => ({
      key: tr.querySelector(".kv-key").value.trim(),
      value: tr.querySelector(".kv-value").value,
      namespace: tr.querySelector(".kv-ns").value.trim() || null,
    }))
    .filter((p) => p.key);
}

function fill(pairs) {
  $("kv-table").tBodies[0].replaceChildren();
  for (const pair of pairs) $("kv-table").tBodies[0].append(row(pair));
}

async function save() {
  const view = current;
  const pairs = tablePairs();
  try {
    const body = await sendJson("PUT", `/api/images/${view.id}/key-values`, pairs);
    if (view !== current) return;
    const answered = listOf(body, "key_values", "pairs");
    fill(answered.length || !pairs.length ? answered : pairs);
  } catch (err) {
    setStatus(`Could not save the key-value pairs: ${err.message}`, true);
    return;
  }
  setStatus(`Saved ${pairs.length} key-value pair${pairs.length === 1 ? "" : "s"}`);
}

/** A template's fields as [{key, namespace, description, values, required, section}]. */
function templateFields(t) {
  // Keys come grouped in sections ({title, keys}), or as one flat list.
  const sections = Array.isArray(t.sections) ? t.sections : [{ keys: t.keys || t.fields || [] }];
  return sections.flatMap((section) =>
    (section.keys || []).map((f) =>
      typeof f === "string"
        ? { key: f, namespace: t.namespace, section: section.title }
        : {
            key: f.key || f.name,
            namespace: f.namespace ?? t.namespace,
            description: f.description,
            values: f.values || f.choices || f.options,
            required: Boolean(f.required),
            section: section.title || section.name,
          },
    ),
  );
}

function showTemplateForm(t) {
  const form = $("kv-template-form");
  form.replaceChildren();
  form.hidden = !t;
  if (!t) return;
  const title = document.createElement("p");
  title.className = "hint";
  title.textContent = t.description || `Template ${t.name}: fill in what applies.`;
  form.append(title);
  let section = null;
  templateFields(t).forEach((f, i) => {
    if (f.section && f.section !== section) {
      section = f.section;
      const h = document.createElement("p");
      h.className = "kv-template-section";
      h.textContent = section;
      form.append(h);
    }
    const id = `kv-tpl-${i}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = f.required ? `${f.key} *` : f.key;
    if (f.description) label.title = f.description;
    const input = document.createElement("input");
    input.type = "text";
    input.id = id;
    input.dataset.key = f.key;
    input.dataset.namespace = f.namespace || "";
    if (f.description) input.placeholder = f.description;
    if (Array.isArray(f.values) && f.values.length) {
      const list = document.createElement("datalist");
      list.id = `${id}-values`;
      list.append(...f.values.map((v) => new Option(String(v), String(v))));
      input.setAttribute("list", list.id);
      form.append(list);
    }
    const line = document.createElement("div");
    line.className = "row";
    line.append(label, input);
    form.append(line);
  });
  const add = document.createElement("button");
  add.type = "submit";
  add.className = "small";
  add.textContent = "Add to pairs";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "small";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => {
    $("kv-template").value = "";
    showTemplateForm(null);
  });
  form.append(add, cancel);
  form.querySelector("input")?.focus();
}

async function loadTemplates() {
  try {
    templates = listOf(await getJson(TEMPLATES_URL), "templates");
  } catch {
    templates = []; // no templates on this server: the table alone
  }
  $("kv-template").replaceChildren(
    new Option("template…", ""),
    ...templates.map((t, i) => new Option(t.title || t.name, String(i))),
  );
  $("kv-template").hidden = !templates.length;
}

function wire() {
  $("kv-add").addEventListener("click", () => {
    const tr = row();
    $("kv-table").tBodies[0].append(tr);
    tr.querySelector("input").focus();
  });
  $("kv-save").addEventListener("click", () => current && save());
  $("kv-template").addEventListener("change", () => {
    const value = $("kv-template").value;
    showTemplateForm(value === "" ? null : templates[Number(value)]);
  });
  $("kv-template-form").addEventListener("submit", (e) => {
    e.preventDefault();
    for (const input of $("kv-template-form").querySelectorAll("input[data-key]")) {
      if (!input.value.trim()) continue; // an unanswered field adds nothing
      $("kv-table").tBodies[0].append(
        row({ key: input.dataset.key, value: input.value.trim(), namespace: input.dataset.namespace || null }),
      );
    }
    $("kv-template").value = "";
    showTemplateForm(null);
    setStatus("Template answers added: press “Save pairs” to keep them");
  });
  loadTemplates();
}

/** Show the key-value pairs of image `id` (called when the viewer opens an image). */
export async function showKeyValues(id) {
  if (!wired) {
    wire();
    wired = true;
  }
  const view = (current = { id });
  fill([]);
  showTemplateForm(null);
  try {
    const body = await getJson(`/api/images/${id}/key-values`);
    if (view === current) fill(listOf(body, "key_values", "pairs"));
  } catch (err) {
    if (view === current) setStatus(`Could not read the key-value pairs: ${err.message}`, true);
  }
}
