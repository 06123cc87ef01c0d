// Entry point: hash routing between the gallery (#/) and the viewer (#/image/{id}); with
// accounts (ZSTACK_AUTH=users) also the login page (#/login), "my tokens" (#/tokens),
// "change password" (#/password) and the admin page (#/admin). Hash routes need no server routes beyond the static files.

import { setStatus } from "./api.js";
import { showAdmin } from "./admin.js";
import { showGallery } from "./gallery.js";
import { showLoginPage } from "./login.js";
import { showPasswordPage } from "./password.js";
import { detectSession, onSessionChange, session, showLogin } from "./session.js";
import { showTokens } from "./tokens.js";
import { wireUserMenu } from "./usermenu.js";
import { closeViewer, showViewer } from "./viewer.js";

const VIEWS = ["gallery-view", "viewer-view", "login-view", "tokens-view", "password-view", "admin-view"];

function only(id) {
  for (const view of VIEWS) document.getElementById(view).hidden = view !== id;
}

function route() {
  const match = location.hash.match(/^#\/image\/([^/?#]+)/);
  setStatus("");
  const users = session.mode === "users";
  if (users && location.hash.startsWith("#/login")) {
    closeViewer();
    only("login-view");
    showLoginPage();
    return;
  }
  if (users && !session.me) {
    showLogin(); // changes the hash; route() runs again
    return;
  }
  if (users && location.hash.startsWith("#/tokens")) {
    closeViewer();
    only("tokens-view");
    showTokens();
  } else if (users && location.hash.startsWith("#/password") && session.me.password_changeable) {
    closeViewer();
    only("password-view");
    showPasswordPage();
  } else if (users && location.hash.startsWith("#/admin") && session.me.is_admin) {
    closeViewer();
    only("admin-view");
    showAdmin();
  } else if (match) {
    only("viewer-view"); // visible first: the viewer sizes itself from its box
    showViewer(decodeURIComponent(match[1]));
  } else {
    closeViewer();
    only("gallery-view");
    showGallery();
  }
}

async function start() {
  try {
    await detectSession();
  } catch {
    // The server did not answer: behave as before accounts; the gallery says what failed.
  }
  wireUserMenu();
  // Another user logs in in this tab: what was shown belonged to the one before.
  onSessionChange(() => document.body.classList.toggle("accounts", session.mode === "users"));
  document.body.classList.toggle("accounts", session.mode === "users");
  window.addEventListener("hashchange", route);
  route();
}

start();
