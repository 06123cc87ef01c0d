// Talking to our REST API: optional bearer token, problem+json errors, image loading.
//
// Without a token, images are plain <img src> so the browser cache and ETags work.
// With a token an <img> cannot send the Authorization header, so images are fetched
// and shown through blob: URLs instead.

const TOKEN_KEY = "zstack-api-token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

let tokenPrompt = null; // one shared prompt while several requests wait on a 401

// Accounts (ZSTACK_AUTH=users): the session cookie travels by itself; a request that
// changes state must also carry the session's CSRF token (session.js sets it), and a
// 401 means "log in again" (the login page), not "type a token".
let csrfToken = null;
let onLoginNeeded = null;

export function setCsrfToken(value) {
  csrfToken = value || null;
}

/** In users mode: `handler()` shows the login page when a request answers 401. */
export function setLoginHandler(handler) {
  onLoginNeeded = handler;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Drop a stored token (users mode logs in with a session; a stale token would win over it). */
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders(headers = {}, method = "GET") {
  const t = token();
  let out = t ? { ...headers, Authorization: `Bearer ${t}` } : { ...headers };
  if (csrfToken && !SAFE_METHODS.has(method.toUpperCase())) {
    out = { ...out, "X-CSRF-Token": csrfToken };
  }
  return out;
}

/** Ask for the token once; concurrent 401s wait on the same dialog. */
function askToken(refused) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").hidden = !refused;
  input.value = "";
  tokenPrompt = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const value = input.value.trim();
        if (value) sessionStorage.setItem(TOKEN_KEY, value);
        tokenPrompt = null;
        resolve(Boolean(value));
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return tokenPrompt;
}

/** An API failure with the server's words (problem+json `detail`) and stable `code`. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || null;
  }
}

export async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText };
  }
}

/** fetch() with the token; on 401 asks for a token and retries (users mode: the login page). */
export async function apiFetch(url, options = {}) {
  const headers = () => authHeaders(options.headers, options.method || "GET");
  for (let attempt = 0; attempt < 3; attempt++) {
    const response = await fetch(url, { ...options, headers: headers() });
    if (response.status !== 401) return response;
    if (onLoginNeeded) {
      onLoginNeeded();
      return response;
    }
    const hadToken = Boolean(token());
    if (!(await askToken(hadToken))) return response;
  }
  return fetch(url, { ...options, headers: headers() });
}

/** A JSON request that changes state (POST/PATCH/PUT/DELETE); the answer's JSON, or null. */
export async function sendJson(method, url, body) {
  const options = { method };
  if (body !== undefined) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  const response = await apiFetch(url, options);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.status === 204 ? null : response.json();
}

export async function getJson(url) {
  const response = await apiFetch(url);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.json();
}

export async function deleteImage(id) {
  const response = await apiFetch(`/api/images/${id}`, { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    throw new ApiError(response.status, await problemOf(response));
  }
}

/**
 * Upload one file with progress (fetch cannot report upload progress, XHR can), to
 * `group` when given (users mode), else the uploader's default group.
 * Resolves with the upload response; rejects with an ApiError in the API's words.
 */
export function uploadFile(file, onProgress, group = null) {
  const url = group ? `/api/images/upload?group=${encodeURIComponent(group)}` : "/api/images/upload";
  const send = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      for (const [name, value] of Object.entries(authHeaders({}, "POST"))) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = { title: xhr.statusText };
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, body));
      };
      xhr.onerror = () => reject(new ApiError(0, { detail: "network error: the server did not answer" }));
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  return send().catch(async (err) => {
    if (err.status === 401 && onLoginNeeded) {
      onLoginNeeded();
      throw err;
    }
    if (err.status === 401 && (await askToken(Boolean(token())))) return send();
    throw err;
  });
}

/** Words a person understands for an upload failure, from the status and problem code. */
export function uploadErrorText(err) {
  const detail = err.message || "";
  if (err.status === 400 || err.code === "unsupported_format") return `Unsupported format: ${detail}`;
  if (err.status === 413) return `Too large: ${detail}`;
  if (err.code === "corrupt_file") return `Corrupt file: ${detail}`;
  if (err.code === "limit_exceeded") return `Too large to read safely: ${detail}`;
  if (err.code === "missing_dependency") return `Server is missing a reader: ${detail}`;
  return `Upload failed (${err.status || "no answer"}): ${detail}`;
}

/**
 * Show `url` in `img`, keeping the previous picture until the new one has loaded.
 * Later calls win: a slow earlier response never replaces a newer picture.
 * Resolves true when shown, false when superseded; rejects with an ApiError.
 */
export function showImage(img, url) {
  const seq = (img._seq = (img._seq || 0) + 1);
  img.dataset.pending = url;
  const done = (src, blobUrl) =>
    new Promise((resolve, reject) => {
      const probe = new Image();
      probe.onload = () => {
        if (seq !== img._seq) {
          if (blobUrl) URL.revokeObjectURL(blobUrl);
          resolve(false);
          return;
        }
        if (img._blobUrl) URL.revokeObjectURL(img._blobUrl);
        img._blobUrl = blobUrl;
        img.src = src;
        img.dataset.src = url; // what is on screen (tests and debugging read it)
        delete img.dataset.pending;
        img.dispatchEvent(new CustomEvent("shown", { detail: url }));
        resolve(true);
      };
      probe.onerror = () => reject(new ApiError(0, { detail: "the picture could not be decoded" }));
      probe.src = src;
    });
  if (!token()) {
    return done(url, null).catch(async () => {
      // An <img> hides the reason; ask once more to read the problem JSON.
      const response = await apiFetch(url);
      if (!response.ok) throw new ApiError(response.status, await problemOf(response));
      throw new ApiError(0, { detail: "the picture could not be decoded" });
    });
  }
  return apiFetch(url).then(async (response) => {
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const blobUrl = URL.createObjectURL(await response.blob());
    return done(blobUrl, blobUrl);
  });
}

/** Download through the API (with a token an <a href> cannot authenticate). */
export async function downloadWithToken(url, filename) {
  const response = await apiFetch(url);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  const blobUrl = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = blobUrl;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
}

export function humanBytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function setStatus(text, isError = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}
