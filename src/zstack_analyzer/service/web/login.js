// The login page (users mode): username and password; back to where the user was after.

import { logIn } from "./session.js";

const $ = (id) => document.getElementById(id);
let wired = false;

function nextHash() {
  const match = location.hash.match(/[?&]next=([^&]+)/);
  const next = match ? decodeURIComponent(match[1]) : "#/";
  // Only our own hash routes: never a URL somewhere else.
  return next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/";
}

function wire() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const error = $("login-error");
    const button = $("login-submit");
    error.hidden = true;
    button.disabled = true;
    try {
      await logIn($("login-username").value.trim(), $("login-password").value);
      $("login-password").value = "";
      location.hash = nextHash();
    } catch (err) {
      error.textContent =
        err.status === 401
          ? "Wrong username or password."
          : err.status === 429
            ? `Too many attempts: ${err.message}`
            : `Could not log in: ${err.message}`;
      error.hidden = false;
      $("login-password").select();
    } finally {
      button.disabled = false;
    }
  });
}

export function showLoginPage() {
  if (!wired) {
    wire();
    wired = true;
  }
  document.title = "Log in · zstack-analyzer";
  $("login-error").hidden = true;
  $("login-username").focus();
}
