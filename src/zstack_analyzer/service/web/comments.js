// Comments on the open image: who said what, when; newest last, as a conversation reads.

import { getJson, sendJson, setStatus } from "./api.js";
import { listOf } from "./listing.js";

const $ = (id) => document.getElementById(id);

let current = null; // {id} of the open image
let wired = false;

function item(c) {
  const li = document.createElement("li");
  li.className = "comment";
  const head = document.createElement("p");
  head.className = "comment-head";
  const when = c.created_at ? new Date(c.created_at) : null;
  // Without accounts there is one user and no name to show: the time alone.
  const author = c.owner ?? c.author ?? null;
  const time = when && !Number.isNaN(when.valueOf()) ? when.toLocaleString() : "";
  head.textContent = [author, time].filter(Boolean).join(" · ");
  const text = document.createElement("p");
  text.className = "comment-text";
  text.textContent = c.text ?? c.body ?? "";
  li.append(head, text);
  return li;
}

async function load(view) {
  try {
    const body = await getJson(`/api/images/${view.id}/comments`);
    if (view === current) $("comment-list").replaceChildren(...listOf(body, "comments").map(item));
  } catch (err) {
    if (view === current) setStatus(`Could not read the comments: ${err.message}`, true);
  }
}

function wire() {
  $("comment-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const view = current;
    const text = $("comment-text").value.trim();
    if (!view || !text) return;
    try {
      await sendJson("POST", `/api/images/${view.id}/comments`, { text });
    } catch (err) {
      setStatus(`Could not add the comment: ${err.message}`, true);
      return;
    }
    $("comment-text").value = "";
    await load(view);
  });
}

/** Show the comments of image `id` (called when the viewer opens an image). */
export function showComments(id) {
  if (!wired) {
    wire();
    wired = true;
  }
  current = { id };
  $("comment-list").replaceChildren();
  return load(current);
}
