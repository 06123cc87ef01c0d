// "Change password" (users mode): one's own password, the current one first.
// POST /api/auth/password ends the user's other sessions; this one goes on under a new
// session cookie, which the browser takes from the answer (the CSRF token stays).

import { changePassword } from "./session.js";

const $ = (id) => document.getElementById(id);
let wired = false;

const FIELDS = ["password-current", "password-new", "password-repeat"];

function fail(text, field = null) {
  const error = $("password-error");
  error.textContent = text;
  error.hidden = false;
  if (field) field.select();
}

/** Words a person understands for the server's refusal. */
function refusal(err) {
  if (err.status === 403 && /current password/.test(err.message)) return "The current password is wrong.";
  if (err.status === 429) return `Too many attempts: ${err.message}`;
  if (err.status === 409) return `${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}.`;
  return `Could not change the password: ${err.message}`;
}

function wire() {
  $("password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const [current, fresh, repeat] = FIELDS.map($);
    const button = $("password-submit");
    $("password-error").hidden = true;
    $("password-done").hidden = true;
    if (!current.value) return fail("Enter your current password.", current);
    // The rule is the input's own minlength (the server's: 8 characters).
    if (fresh.value.length < fresh.minLength) {
      return fail(`The new password needs at least ${fresh.minLength} characters.`, fresh);
    }
    if (fresh.value !== repeat.value) return fail("The two new passwords differ.", repeat);
    button.disabled = true;
    try {
      await changePassword(current.value, fresh.value);
      for (const input of [current, fresh, repeat]) input.value = "";
      $("password-done").textContent =
        "Password changed. Your other sessions were logged out; you stay logged in here.";
      $("password-done").hidden = false;
    } catch (err) {
      fail(refusal(err), err.status === 403 || err.status === 429 ? current : null);
    } finally {
      button.disabled = false;
    }
  });
}

export function showPasswordPage() {
  if (!wired) {
    wire();
    wired = true;
  }
  document.title = "Change password · zstack-analyzer";
  for (const id of FIELDS) $(id).value = "";
  $("password-error").hidden = true;
  $("password-done").hidden = true;
  $("password-current").focus();
}
