// "My tokens" (users mode): personal API tokens for scripts, the CLI and napari.
// A new token's secret is shown once, here, and never again.

import { getJson, sendJson, setStatus } from "./api.js";

const $ = (id) => document.getElementById(id);
let wired = false;

function when(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

function row(t) {
  const tr = document.createElement("tr");
  tr.dataset.id = t.id;
  const state = t.revoked_at
    ? "revoked"
    : t.expires_at && new Date(t.expires_at) < new Date()
      ? "expired"
      : "active";
  const cells = [
    t.name,
    t.read_only ? "read-only" : "read and write",
    when(t.created_at),
    when(t.expires_at),
    when(t.last_used_at),
    state,
  ];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement("td");
  if (state === "active") {
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "small danger";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke token ${t.name}`);
    revoke.addEventListener("click", async () => {
      try {
        await sendJson("DELETE", `/api/tokens/${t.id}`);
        setStatus(`Token ${t.name} revoked`);
        await refresh();
      } catch (err) {
        setStatus(`Could not revoke ${t.name}: ${err.message}`, true);
      }
    });
    td.append(revoke);
  }
  tr.append(td);
  return tr;
}

async function refresh() {
  try {
    const tokens = await getJson("/api/tokens");
    $("tokens-body").replaceChildren(...tokens.map(row));
    $("tokens-empty").hidden = tokens.length > 0;
  } catch (err) {
    setStatus(`Could not list tokens: ${err.message}`, true);
  }
}

function wire() {
  $("token-create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const days = $("token-expires").value.trim();
    const body = {
      name: $("token-name").value.trim() || "token",
      read_only: $("token-read-only").checked,
      expires_days: days ? Number(days) : null,
    };
    try {
      const made = await sendJson("POST", "/api/tokens", body);
      $("token-secret").textContent = made.token;
      $("token-created").hidden = false;
      $("token-name").value = "";
      await refresh();
    } catch (err) {
      setStatus(`Could not create the token: ${err.message}`, true);
    }
  });
}

export function showTokens() {
  if (!wired) {
    wire();
    wired = true;
  }
  document.title = "My tokens · zstack-analyzer";
  $("token-created").hidden = true;
  $("token-secret").textContent = "";
  return refresh();
}
