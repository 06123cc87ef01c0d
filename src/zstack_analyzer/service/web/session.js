// Who is using the viewer: the server's auth mode and, with accounts, the logged-in user.
//
// ZSTACK_AUTH=none (the default) and =token look and work exactly as before accounts:
// no login page, no user menu, no owner or group labels. Only ZSTACK_AUTH=users adds them.
// The mode is read from the API itself: GET /api/auth/me answers 200 ("none", a token, a
// session) or 401; after a 401, POST /api/auth/login with an empty body is refused as
// invalid (422) only where logging in is open, i.e. in users mode (token mode: 401).

import {
  ApiError,
  forgetToken,
  problemOf,
  sendJson,
  setCsrfToken,
  setLoginHandler,
  token,
} from "./api.js";

export const session = {
  /** "none", "token" or "users" */
  mode: "none",
  /** GET /api/auth/me's answer (username, is_admin, groups, csrf_token), or null */
  me: null,
};

const listeners = new Set();

/** Call `fn(session)` whenever the user logs in or out. */
export function onSessionChange(fn) {
  listeners.add(fn);
}

function changed() {
  setCsrfToken(session.me ? session.me.csrf_token : null);
  for (const fn of listeners) fn(session);
}

function bearer() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** Ask the server who we are; sets `session.mode` and `session.me`. */
export async function detectSession() {
  const response = await fetch("/api/auth/me", { headers: bearer(), cache: "no-store" });
  if (response.ok) {
    const me = await response.json();
    session.me = me;
    // A personal token or a session cookie only exist in users mode.
    session.mode = me.auth === "session" || me.auth === "api-token" ? "users" : me.auth;
  } else if (response.status === 401) {
    const probe = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    session.mode = probe.status === 422 ? "users" : "token";
    session.me = null;
    // A token kept from when this server ran in token mode would be sent instead of the
    // session cookie (and refused) on every request: users mode logs in instead.
    if (session.mode === "users") forgetToken();
  } else {
    session.mode = "none";
    session.me = null;
  }
  if (session.mode === "users") {
    setLoginHandler(() => {
      if (!location.hash.startsWith("#/login")) showLogin();
    });
  }
  changed();
  return session;
}

/** Send the browser to the login page, coming back here afterwards. */
export function showLogin() {
  const back = location.hash && !location.hash.startsWith("#/login") ? location.hash : "#/";
  session.me = null;
  changed();
  location.hash = `#/login?next=${encodeURIComponent(back)}`;
}

/** Log in with username and password (the server sets the session cookie). */
export async function logIn(username, password) {
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  session.me = await response.json();
  changed();
  return session.me;
}

/**
 * Change one's own password (the current one first). The server ends the other sessions
 * and renews this one's cookie in its answer; the CSRF token and `session.me` stay.
 */
export async function changePassword(current, next) {
  session.me = await sendJson("POST", "/api/auth/password", {
    current_password: current,
    new_password: next,
  });
  return session.me;
}

/** End the session on the server, then show the login page. */
export async function logOut() {
  const headers = session.me && session.me.csrf_token ? { "X-CSRF-Token": session.me.csrf_token } : {};
  try {
    await fetch("/api/auth/logout", { method: "POST", headers });
  } finally {
    session.me = null;
    changed();
    location.hash = "#/login";
  }
}

/** Whether the viewer shows accounts (owner, group, user menu): users mode only. */
export function accountsOn() {
  return session.mode === "users";
}
