// The annotation routes answer lists either bare or wrapped in a page ({data, count}):
// one place reads both, so a module never guesses the envelope again.

/** The items of a list answer: a bare array, or the array under `data`, `items` or one of `keys`. */
export function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  if (!body || typeof body !== "object") return [];
  for (const key of ["data", "items", ...keys]) {
    if (Array.isArray(body[key])) return body[key];
  }
  return [];
}

/** A tag given as a bare name or as {name, ...}. */
export function tagName(tag) {
  return typeof tag === "string" ? tag : tag.name;
}
