// Deep zoom of the XY plane: a plane larger than the view is shown from the server's
// pyramid, by 256 px tiles of the level that matches the current zoom, only those on
// screen. The whole-plane picture underneath is requested at the view's size (never at
// full resolution); tiles cover it as they arrive, so panning never shows a hole.
//
// Levels follow the virtual OME-Zarr (GET /api/images/{id}/zarr/): level n is level 0
// halved n times, sizes rounded up, down to <= 512 px. Tiles: GET .../tile/{level}/{row}/{col}.

import { showImage } from "./api.js";

export const TILE = 256;
export const TOP_LEVEL_PX = 512;
const MAX_TILES = 256; // tiles kept in the page at once (old ones are dropped first)

/** [height, width] of every pyramid level, full size first (as the server makes them). */
export function levelShapes(height, width) {
  const shapes = [[height, width]];
  while (Math.max(...shapes[shapes.length - 1]) > TOP_LEVEL_PX) {
    const [h, w] = shapes[shapes.length - 1];
    shapes.push([Math.ceil(h / 2), Math.ceil(w / 2)]);
  }
  return shapes;
}

/** Whether a plane of `size` needs deep zoom in a view of `view` CSS px (device pixels count). */
export function needsDeepZoom(size, view) {
  const dpr = window.devicePixelRatio || 1;
  return size.x > Math.ceil(view.w * dpr) || size.y > Math.ceil(view.h * dpr);
}

/** The level whose pixels are closest to the screen's at this zoom (log scale). */
export function levelFor(size, view, zoom, levels) {
  const dpr = window.devicePixelRatio || 1;
  const devicePerPixel = (view.w * zoom * dpr) / size.x;
  const level = Math.round(Math.log2(1 / devicePerPixel));
  return Math.min(levels.length - 1, Math.max(0, level));
}

export class DeepZoom {
  /** `layer`: an element in the zoomed stage, positioned over the whole-plane picture. */
  constructor(layer) {
    this.layer = layer;
    this.tiles = new Map(); // key -> <img>
    this.params = "";
  }

  clear() {
    for (const img of this.tiles.values()) img.remove();
    this.tiles.clear();
  }

  /**
   * Show the tiles visible in state `s`: {base, size, view, zoom, pan, params, enabled}.
   * `params` (query string incl. z, t, scene, channels...) names the picture; when it
   * changes every tile is dropped, so no tile of another plane stays on screen.
   */
  update(s) {
    this.state = s;
    if (!s.enabled || s.zoom <= 1.0001) {
      this.clear();
      this.layer.hidden = true;
      return;
    }
    this.layer.hidden = false;
    if (s.params !== this.params) {
      this.clear();
      this.params = s.params;
    }
    const levels = levelShapes(s.size.y, s.size.x);
    const level = levelFor(s.size, s.view, s.zoom, levels);
    const [lh, lw] = levels[level];
    // Visible part of the stage (unzoomed CSS px), then in pixels of this level.
    const sx0 = -s.pan.x / s.zoom;
    const sy0 = -s.pan.y / s.zoom;
    const sx1 = sx0 + s.view.w / s.zoom;
    const sy1 = sy0 + s.view.h / s.zoom;
    const toLevelX = lw / s.view.w;
    const toLevelY = lh / s.view.h;
    const c0 = Math.max(0, Math.floor((sx0 * toLevelX) / TILE));
    const c1 = Math.min(Math.ceil(lw / TILE) - 1, Math.floor((sx1 * toLevelX - 1e-6) / TILE));
    const r0 = Math.max(0, Math.floor((sy0 * toLevelY) / TILE));
    const r1 = Math.min(Math.ceil(lh / TILE) - 1, Math.floor((sy1 * toLevelY - 1e-6) / TILE));
    const wanted = new Set();
    for (let row = r0; row <= r1; row++) {
      for (let col = c0; col <= c1; col++) {
        const key = `${level}/${row}/${col}`;
        wanted.add(key);
        if (this.tiles.has(key)) continue;
        const img = document.createElement("img");
        img.className = "tile";
        img.alt = "";
        img.draggable = false;
        img.dataset.level = String(level);
        const tw = Math.min(TILE, lw - col * TILE);
        const th = Math.min(TILE, lh - row * TILE);
        Object.assign(img.style, {
          left: `${(col * TILE) / toLevelX}px`,
          top: `${(row * TILE) / toLevelY}px`,
          width: `${tw / toLevelX}px`,
          height: `${th / toLevelY}px`,
          zIndex: String(100 - level), // finer levels above coarser ones
        });
        this.tiles.set(key, img);
        this.layer.append(img);
        showImage(img, `${s.base}/tile/${key}?${s.params}`).catch(() => {
          img.remove();
          this.tiles.delete(key);
        });
      }
    }
    // Tiles of other levels go once this level covers the view; extra ones beyond the cap.
    const loaded = [...wanted].every((k) => this.tiles.get(k)?.dataset.src);
    for (const [key, img] of this.tiles) {
      const other = !key.startsWith(`${level}/`);
      if ((other && loaded) || (this.tiles.size > MAX_TILES && !wanted.has(key))) {
        img.remove();
        this.tiles.delete(key);
      }
    }
    if (!loaded) {
      // Drop the coarser tiles when the new ones are all shown.
      const pending = [...wanted].map((k) => this.tiles.get(k)).filter((img) => img && !img.dataset.src);
      let left = pending.length;
      for (const img of pending) {
        img.addEventListener(
          "shown",
          () => {
            left -= 1;
            if (left === 0 && this.state) this.update(this.state);
          },
          { once: true },
        );
      }
    }
  }
}
