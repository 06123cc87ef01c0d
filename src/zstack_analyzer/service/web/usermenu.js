// The user menu in the top bar (users mode): who is logged in, my tokens, admin, log out.

import { logOut, onSessionChange, session } from "./session.js";

const $ = (id) => document.getElementById(id);

function render() {
  const menu = $("user-menu");
  const me = session.me;
  if (session.mode !== "users" || !me) {
    menu.hidden = true;
    $("user-panel").hidden = true;
    return;
  }
  menu.hidden = false;
  $("user-name").textContent = me.username;
  $("user-button").setAttribute("aria-label", `User menu of ${me.username}`);
  $("menu-admin").hidden = !me.is_admin;
  // A directory (LDAP) account's password is changed in the directory: the server answers 409.
  $("menu-password").hidden = !me.password_changeable;
  const groups = me.groups.map((g) => `${g.name} (${g.permissions}${g.role === "owner" ? ", owner" : ""})`);
  $("user-groups").textContent = groups.length ? `Groups: ${groups.join(", ")}` : "No group yet";
}

function close() {
  $("user-panel").hidden = true;
  $("user-button").setAttribute("aria-expanded", "false");
}

export function wireUserMenu() {
  const button = $("user-button");
  button.addEventListener("click", () => {
    const open = $("user-panel").hidden;
    $("user-panel").hidden = !open;
    button.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("click", (e) => {
    if (!$("user-menu").contains(e.target)) close();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
  });
  for (const link of $("user-panel").querySelectorAll("a")) link.addEventListener("click", close);
  $("menu-logout").addEventListener("click", () => {
    close();
    logOut();
  });
  onSessionChange(render);
  render();
}
