// ROI geometry, free of the page: the shapes' fields as the API spells them, snapping
// to pixels, a shape from a drag, its handles, reshaping and moving it.
//
// Coordinates follow the API: (0, 0) is the image's top-left corner, pixel (i, j) spans
// [i, i + 1) x [j, j + 1). Area shapes snap to pixel corners, lines and points to pixel
// centres (x + 0.5), so what a user drew never cuts a pixel in half. `size` is the
// plane's {x, y} in pixels.

/** Shapes whose footprint is an area (pixels whose centre is inside). */
export const AREA = new Set(["rectangle", "ellipse", "polygon"]);

/** The fields of each shape type (besides type, z, t, c), as the API spells them. */
export const FIELDS = {
  rectangle: ["x", "y", "width", "height"],
  ellipse: ["x", "y", "radius_x", "radius_y"],
  line: ["x1", "y1", "x2", "y2"],
  point: ["x", "y"],
  polygon: ["points"],
  polyline: ["points"],
};

const snapCorner = (value, max) => Math.min(max, Math.max(0, Math.round(value)));
const snapCentre = (value, max) => Math.min(max - 0.5, Math.max(0.5, Math.floor(value) + 0.5));

/** `p` ([x, y]) snapped for a shape of `type` and kept on the plane. */
export function snap(type, p, size) {
  const f = AREA.has(type) ? snapCorner : snapCentre;
  return [f(p[0], size.x), f(p[1], size.y)];
}

/** A new shape of `type` from two corners of a drag (or one point). */
export function shapeFromDrag(type, a, b, size) {
  const [x0, y0] = snap(type, a, size);
  const [x1, y1] = snap(type, b, size);
  const box = { x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
  if (type === "rectangle") return { type, x: box.x, y: box.y, width: box.w, height: box.h };
  if (type === "ellipse") {
    return { type, x: box.x + box.w / 2, y: box.y + box.h / 2, radius_x: box.w / 2, radius_y: box.h / 2 };
  }
  if (type === "line") return { type, x1: x0, y1: y0, x2: x1, y2: y1 };
  return { type: "point", x: x1, y: y1 };
}

/** Whether a drawn shape has no extent (a click with a box or line tool). */
export function isEmpty(s) {
  return (
    (s.type === "rectangle" && (s.width === 0 || s.height === 0)) ||
    (s.type === "ellipse" && (s.radius_x === 0 || s.radius_y === 0)) ||
    (s.type === "line" && s.x1 === s.x2 && s.y1 === s.y2)
  );
}

/** The handles of a shape: [x, y] points a user can drag to reshape it. */
export function handles(s) {
  switch (s.type) {
    case "rectangle":
      return [
        [s.x, s.y],
        [s.x + s.width, s.y],
        [s.x + s.width, s.y + s.height],
        [s.x, s.y + s.height],
      ];
    case "ellipse":
      return [
        [s.x - s.radius_x, s.y - s.radius_y],
        [s.x + s.radius_x, s.y - s.radius_y],
        [s.x + s.radius_x, s.y + s.radius_y],
        [s.x - s.radius_x, s.y + s.radius_y],
      ];
    case "line":
      return [
        [s.x1, s.y1],
        [s.x2, s.y2],
      ];
    case "point":
      return [[s.x, s.y]];
    default:
      return s.points.map((p) => [p[0], p[1]]);
  }
}

/** `s` with handle `i` moved to `p` (the opposite corner stays for boxes). */
export function reshape(s, i, p, size) {
  const q = snap(s.type, p, size);
  if (s.type === "rectangle" || s.type === "ellipse") {
    const opposite = handles(s)[(i + 2) % 4];
    return { ...s, ...shapeFromDrag(s.type, opposite, q, size) };
  }
  if (s.type === "line") return i === 0 ? { ...s, x1: q[0], y1: q[1] } : { ...s, x2: q[0], y2: q[1] };
  if (s.type === "point") return { ...s, x: q[0], y: q[1] };
  return { ...s, points: s.points.map((pt, j) => (j === i ? q : pt)) };
}

/** `s` moved by whole pixels (dx, dy). */
export function translate(s, dx, dy) {
  switch (s.type) {
    case "line":
      return { ...s, x1: s.x1 + dx, y1: s.y1 + dy, x2: s.x2 + dx, y2: s.y2 + dy };
    case "polygon":
    case "polyline":
      return { ...s, points: s.points.map(([x, y]) => [x + dx, y + dy]) };
    default:
      return { ...s, x: s.x + dx, y: s.y + dy };
  }
}

/** A shape of `type` around pixel {x, y}, a tenth of the plane wide (keyboard drawing). */
export function shapeAround(type, { x, y }, size) {
  const hw = Math.max(1, Math.round(size.x / 20));
  const hh = Math.max(1, Math.round(size.y / 20));
  if (type === "polygon" || type === "polyline") {
    const pts = [
      [x - hw, y + hh],
      [x, y - hh],
      [x + hw, y + hh],
    ].map((p) => snap(type, p, size));
    return { type, points: pts };
  }
  if (type === "point") return shapeFromDrag(type, [x, y], [x, y], size);
  return shapeFromDrag(type, [x - hw, y - hh], [x + hw + 1, y + hh + 1], size);
}
