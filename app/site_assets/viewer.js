// Offline viewer of an `infinitygan export --format site` folder: Leaflet in L.CRS.Simple with the service's world
// coordinates (as on its demo page), over the folder's PMTiles archive read with the pmtiles library.
//
// The archive's metadata (`infinitygan.addressing`, see tiles/export_layout.py) maps each world tile Leaflet asks
// for to its archive tile, the same mapping the exporter used:
//   archive z = world z + zoom_offset
//   archive x = world x - origin_px[0] / tilePx(world z),  archive y = world y - origin_px[1] / tilePx(world z)
// where tilePx(z) is the native world pixels one tile spans at zoom z.
//
// The view lives in the URL hash like the demo page's: #z=<zoom>&x=<world px>&y=<world px> (the map centre, in
// native world pixels), so a view of the export and of the live service share coordinates.
"use strict";

// A pmtiles Source that reads byte ranges when the server honours Range requests (206: nginx, object stores, CDNs)
// and otherwise keeps the whole archive the server sent. Python's `python -m http.server` ignores Range and answers
// 200 with the whole file, on which the library's own FetchSource gives up; here the first answer decides, and a
// whole-file answer is downloaded once and sliced for every later read.
function rangeOrWholeSource(url) {
  let probe = null; // the first request's answer: {partial, data}
  async function fetchRange(offset, length, signal) {
    const response = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` }, signal });
    if (response.status !== 200 && response.status !== 206) throw new Error(`${url}: HTTP ${response.status}`);
    return { partial: response.status === 206, data: await response.arrayBuffer() };
  }
  const part = (answer, offset, length) => (answer.partial ? answer.data : answer.data.slice(offset, offset + length));
  return {
    getKey: () => url,
    async getBytes(offset, length, signal) {
      if (probe === null) {
        // Not tied to one tile's abort signal: every later read waits for this answer.
        probe = fetchRange(offset, length).catch((error) => { probe = null; throw error; });
        const first = await probe;
        window.archiveMode = first.partial ? "range" : "whole";
        return { data: part(first, offset, length) };
      }
      const first = await probe;
      if (!first.partial) return { data: part(first, offset, length) };
      return { data: part(await fetchRange(offset, length, signal), offset, length) };
    },
  };
}

const mapElement = document.getElementById("map");
const archive = new pmtiles.PMTiles(rangeOrWholeSource(mapElement.dataset.archive));
const map = L.map("map", { crs: L.CRS.Simple, attributionControl: false });
window.map = map;
// Read by the browser test: tiles shown, failed, and asked for outside the archive.
window.tileStats = { loaded: 0, errors: 0, missing: 0 };
window.viewer = null;

function tilePx(z, nativeZoom) {
  return z <= nativeZoom ? 256 * 2 ** (nativeZoom - z) : 256 / 2 ** (z - nativeZoom);
}

const ArchiveLayer = L.GridLayer.extend({
  createTile(coords, done) {
    const img = document.createElement("img");
    img.alt = "";
    const { addressing, nativeZoom } = this.options;
    const size = tilePx(coords.z, nativeZoom);
    const z = coords.z + addressing.zoom_offset;
    const x = coords.x - addressing.origin_px[0] / size;
    const y = coords.y - addressing.origin_px[1] / size;
    const missing = () => {
      window.tileStats.missing += 1;
      img.style.visibility = "hidden";
      done(null, img);
    };
    if (x < 0 || y < 0 || x >= 2 ** z || y >= 2 ** z) {
      setTimeout(missing, 0);
      return img;
    }
    archive.getZxy(z, x, y).then((tile) => {
      if (!tile) { missing(); return; }
      const url = URL.createObjectURL(new Blob([tile.data], { type: "image/png" }));
      img.onload = () => { URL.revokeObjectURL(url); done(null, img); };
      img.onerror = () => { URL.revokeObjectURL(url); done(new Error(`archive tile ${z}/${x}/${y} is not an image`), img); };
      img.src = url;
    }).catch((error) => done(error, img));
    return img;
  },
});

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const number = (key) => (params.get(key) && isFinite(params.get(key)) ? Number(params.get(key)) : null);
  return { z: number("z"), x: number("x"), y: number("y") };
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  window.viewerError = message;
}

async function start() {
  const metadata = await archive.getMetadata();
  const info = metadata.infinitygan;
  const nativeZoom = info.native_zoom;
  const [low, high] = info.zooms;
  const [x0, y0, x1, y1] = info.bbox_px;
  // Inset by half a native pixel: tiles that only touch the area's edge are not asked for.
  const bounds = L.latLngBounds(map.unproject([x0 + 0.5, y0 + 0.5], nativeZoom), map.unproject([x1 - 0.5, y1 - 0.5], nativeZoom));
  const maxZoom = high + 2; // Leaflet upscales the deepest exported level beyond it
  map.setMinZoom(low);
  map.setMaxZoom(maxZoom);
  const layer = new ArchiveLayer({
    tileSize: info.tile_size,
    minZoom: low,
    maxZoom,
    minNativeZoom: low,
    maxNativeZoom: high,
    noWrap: true,
    bounds,
    keepBuffer: 2,
    addressing: info.addressing,
    nativeZoom,
  });
  layer.on("tileload", () => { window.tileStats.loaded += 1; });
  layer.on("tileerror", () => { window.tileStats.errors += 1; });
  layer.addTo(map);
  const view = readHash();
  if (view.z !== null && view.x !== null && view.y !== null) {
    map.setView(map.unproject([view.x, view.y], nativeZoom), Math.min(Math.max(view.z, low), maxZoom));
  } else {
    map.fitBounds(bounds);
  }
  const world = info.world;
  document.getElementById("info").textContent =
    `world ${world.id} · seed ${world.seed} · psi ${world.psi} · model ${world.model_hash} · ` +
    `[${x0}, ${x1}) x [${y0}, ${y1}) px · zooms ${low}-${high}`;
  const readout = (latlng) => {
    const p = map.project(latlng || map.getCenter(), nativeZoom);
    document.getElementById("readout").textContent = `x ${Math.floor(p.x)}, y ${Math.floor(p.y)} · zoom ${map.getZoom()}`;
  };
  map.on("mousemove", (event) => readout(event.latlng));
  map.on("moveend zoomend", () => {
    readout(null);
    const centre = map.project(map.getCenter(), nativeZoom);
    const hash = new URLSearchParams({ z: String(map.getZoom()), x: String(Math.round(centre.x)), y: String(Math.round(centre.y)) });
    history.replaceState(null, "", "#" + hash.toString());
  });
  readout(null);
  window.viewer = { metadata, layer };
}

start().catch((error) => showError(`cannot open ${mapElement.dataset.archive}: ${error.message}`));
