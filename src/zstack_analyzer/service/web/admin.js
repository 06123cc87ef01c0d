// Admin page (users mode, admins only): users, groups and memberships, over /api/admin.

import { getJson, sendJson, setStatus } from "./api.js";

const $ = (id) => document.getElementById(id);
const LEVELS = ["private", "read-only", "read-annotate", "read-write"];
let wired = false;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function button(text, label, onClick, className = "small") {
  const b = el("button", { type: "button", className, textContent: text });
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

/** Run a change, say what happened, and redraw the page. */
async function change(what, fn) {
  try {
    await fn();
    setStatus(what);
  } catch (err) {
    setStatus(`${what}: failed (${err.message})`, true);
  }
  await refresh();
}

function userRow(u) {
  const groups = u.groups.map((g) => (g.role === "owner" ? `${g.name} (owner)` : g.name)).join(", ");
  const tr = el(
    "tr",
    {},
    el("td", { textContent: u.username }),
    el("td", { textContent: u.display_name || "" }),
    el("td", { textContent: u.auth_source }),
    el("td", { textContent: u.is_admin ? "yes" : "" }),
    el("td", { textContent: u.is_active ? "active" : "disabled" }),
    el("td", { textContent: groups }),
  );
  tr.dataset.username = u.username;
  const actions = el("td");
  actions.append(
    button(u.is_active ? "Disable" : "Enable", `${u.is_active ? "Disable" : "Enable"} ${u.username}`, () =>
      change(`${u.username} ${u.is_active ? "disabled" : "enabled"}`, () =>
        sendJson("PATCH", `/api/admin/users/${encodeURIComponent(u.username)}`, { is_active: !u.is_active }),
      ),
    ),
  );
  tr.append(actions);
  return tr;
}

function groupCard(g, usernames) {
  const card = el("section", { className: "admin-group" });
  card.dataset.group = g.name;
  const level = el("select", { id: `level-${g.id}` });
  level.setAttribute("aria-label", `Permission level of ${g.name}`);
  for (const name of LEVELS) level.append(el("option", { value: name, textContent: name, selected: name === g.permissions }));
  level.addEventListener("change", () =>
    change(`${g.name} is now ${level.value}`, () =>
      sendJson("PATCH", `/api/admin/groups/${encodeURIComponent(g.name)}`, { permissions: level.value }),
    ),
  );
  const head = el("div", { className: "admin-group-head" }, el("h3", { textContent: g.name }), level);
  const members = el("ul", { className: "members" });
  members.setAttribute("aria-label", `Members of ${g.name}`);
  for (const m of g.members) {
    const li = el("li", { textContent: `${m.username}${m.role === "owner" ? " (owner)" : ""} ` });
    li.dataset.username = m.username;
    li.append(
      button("Remove", `Remove ${m.username} from ${g.name}`, () =>
        change(`${m.username} removed from ${g.name}`, () =>
          sendJson("DELETE", `/api/admin/groups/${encodeURIComponent(g.name)}/members/${encodeURIComponent(m.username)}`),
        ),
      ),
    );
    members.append(li);
  }
  const who = el("select");
  who.setAttribute("aria-label", `User to add to ${g.name}`);
  const present = new Set(g.members.map((m) => m.username));
  for (const name of usernames.filter((n) => !present.has(n))) who.append(el("option", { value: name, textContent: name }));
  const owner = el("input", { type: "checkbox" });
  owner.setAttribute("aria-label", `as an owner of ${g.name}`);
  const add = el(
    "form",
    { className: "add-member" },
    who,
    el("label", {}, owner, " owner"),
    el("button", { type: "submit", className: "small", textContent: "Add" }),
  );
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!who.value) return;
    change(`${who.value} added to ${g.name}`, () =>
      sendJson("PUT", `/api/admin/groups/${encodeURIComponent(g.name)}/members/${encodeURIComponent(who.value)}`, {
        is_owner: owner.checked,
      }),
    );
  });
  card.append(head, members, add);
  return card;
}

async function refresh() {
  let users;
  let groups;
  try {
    [users, groups] = await Promise.all([getJson("/api/admin/users"), getJson("/api/admin/groups")]);
  } catch (err) {
    setStatus(`Could not load users and groups: ${err.message}`, true);
    return;
  }
  $("admin-users-body").replaceChildren(...users.map(userRow));
  const usernames = users.filter((u) => u.is_active).map((u) => u.username);
  $("admin-groups").replaceChildren(...groups.map((g) => groupCard(g, usernames)));
}

/** The newest 100 audit events matching the filter boxes (GET /api/audit). */
async function loadAudit() {
  const params = new URLSearchParams({ limit: "100" });
  const user = $("audit-user").value.trim();
  const action = $("audit-action").value.trim();
  if (user) params.set("user", user);
  if (action) params.set("action", action);
  let body;
  try {
    body = await getJson(`/api/audit?${params}`);
  } catch (err) {
    setStatus(`Could not read the audit trail: ${err.message}`, true);
    return;
  }
  $("audit-body").replaceChildren(
    ...body.data.map((e) => {
      const tr = el(
        "tr",
        {},
        el("td", { textContent: new Date(e.at).toLocaleString() }),
        el("td", { textContent: e.username || (e.details.via === "cli" ? "(command line)" : "") }),
        el("td", { textContent: e.action }),
        el("td", { textContent: e.target || "" }),
        el("td", { textContent: e.client || "" }),
        el("td", { textContent: e.request_id ? e.request_id.slice(0, 8) : "", title: e.request_id || "" }),
      );
      tr.dataset.action = e.action;
      return tr;
    }),
  );
  $("audit-count").textContent = `${body.data.length} of ${body.count} events`;
}

function wire() {
  $("audit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadAudit();
  });
  $("user-create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const username = $("new-username").value.trim();
    const body = {
      username,
      display_name: $("new-display-name").value.trim(),
      password: $("new-password").value || null,
      is_admin: $("new-admin").checked,
    };
    change(`User ${username} created`, async () => {
      await sendJson("POST", "/api/admin/users", body);
      e.target.reset();
    });
  });
  $("group-create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-group").value.trim();
    const permissions = $("new-group-level").value;
    change(`Group ${name} created`, async () => {
      await sendJson("POST", "/api/admin/groups", { name, permissions });
      e.target.reset();
    });
  });
}

export function showAdmin() {
  if (!wired) {
    wire();
    wired = true;
  }
  document.title = "Admin · zstack-analyzer";
  loadAudit();
  return refresh();
}
