// Entry point: hash routing between the gallery (#/) and the viewer (#/image/{id}).
// Hash routes need no server routes beyond the static files.

import { setStatus } from "./api.js";
import { showGallery } from "./gallery.js";
import { closeViewer, showViewer } from "./viewer.js";

function route() {
  const match = location.hash.match(/^#\/image\/([^/?#]+)/);
  const gallery = document.getElementById("gallery-view");
  const viewer = document.getElementById("viewer-view");
  setStatus("");
  if (match) {
    gallery.hidden = true;
    viewer.hidden = false; // visible first: the viewer sizes itself from its box
    showViewer(decodeURIComponent(match[1]));
  } else {
    closeViewer();
    viewer.hidden = true;
    gallery.hidden = false;
    showGallery();
  }
}

window.addEventListener("hashchange", route);
route();
