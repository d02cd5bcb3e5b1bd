// Demo viewer: Leaflet CRS.Simple over the tile service. Every URL is relative to the page, so the service also
// works under a path prefix behind a proxy (INFINITYGAN_ROOT_PATH). State lives in the URL hash:
// #world=<id>&z=<zoom>&x=<world px>&y=<world px>, with x/y the map centre in native world pixels.
"use strict";

const map = L.map("map", { crs: L.CRS.Simple, zoomControl: true, attributionControl: false });
let layer = null;
let tilejson = null;
// Read by the browser test: how many tiles have loaded and failed since the page opened.
window.tileStats = { loaded: 0, errors: 0 };

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const number = (key) => (params.has(key) && params.get(key) !== "" && isFinite(params.get(key)) ? Number(params.get(key)) : null);
  return { world: params.get("world"), z: number("z"), x: number("x"), y: number("y") };
}

function writeHash() {
  if (!tilejson) return;
  const centre = map.project(map.getCenter(), tilejson.nativeZoom);
  const params = new URLSearchParams({
    world: tilejson.world.id, z: String(map.getZoom()), x: String(Math.round(centre.x)), y: String(Math.round(centre.y)),
  });
  history.replaceState(null, "", "#" + params.toString());
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}

async function fetchJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || response.statusText);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

async function openWorld(worldId, view) {
  tilejson = await fetchJSON(worldId ? `worlds/${encodeURIComponent(worldId)}/tilejson.json` : "tilejson.json");
  if (layer) map.removeLayer(layer);
  map.setMinZoom(tilejson.minzoom);
  map.setMaxZoom(tilejson.maxDisplayZoom);
  layer = L.tileLayer(tilejson.tiles[0], {
    tileSize: tilejson.tileSize,
    minZoom: tilejson.minzoom,
    maxZoom: tilejson.maxDisplayZoom,
    minNativeZoom: tilejson.minzoom,
    maxNativeZoom: tilejson.maxzoom, // the server upscales above native zoom, from each tile's neighbourhood
    noWrap: true,
    crossOrigin: true,
    keepBuffer: 2,
  });
  layer.on("tileload", () => { window.tileStats.loaded += 1; });
  layer.on("tileerror", () => { window.tileStats.errors += 1; });
  layer.addTo(map);
  const zoom = view && view.z !== null ? Math.min(Math.max(view.z, tilejson.minzoom), tilejson.maxDisplayZoom)
    : tilejson.nativeZoom - 1;
  const x = view && view.x !== null ? view.x : 0;
  const y = view && view.y !== null ? view.y : 0;
  map.setView(map.unproject([x, y], tilejson.nativeZoom), zoom);
  document.getElementById("seed").value = String(tilejson.world.seed);
  document.getElementById("psi").value = String(tilejson.world.psi);
  document.getElementById("psi-local").value = String(tilejson.world.psi_local);
  const biomes = tilejson.world.biomes;
  document.getElementById("biomes").checked = Boolean(biomes);
  if (biomes) document.getElementById("region").value = String(biomes.region_px);
  const blend = tilejson.world.blend;
  document.getElementById("blend-partner").value = blend && blend.partner ? blend.partner : "";
  if (blend) document.getElementById("swap-level").value = String(blend.swap_level);
  document.getElementById("world-info").textContent = `world ${tilejson.world.id} · model ${tilejson.world.model_hash}`;
  showError("");
  writeHash();
}

document.getElementById("world-picker").addEventListener("submit", async (event) => {
  event.preventDefault();
  const seed = document.getElementById("seed").value.trim();
  const psi = Number(document.getElementById("psi").value);
  const psiLocal = Number(document.getElementById("psi-local").value);
  if (!/^[0-9]+$/.test(seed)) { showError("seed must be a non-negative integer"); return; }
  let biomes = ', "biomes": null'; // unticked: one look (omitted, the server gives a world its served biomes)
  if (document.getElementById("biomes").checked) {
    const region = Math.round(Number(document.getElementById("region").value));
    // Biomes: regions about `region` px wide, blended over a quarter of that, as the served default (the world id,
    // and so the permalink, covers them).
    biomes = `, "biomes": {"region_px": ${region}, "transition_px": ${Math.max(1, Math.floor(region / 4))}}`;
  }
  let blend = "";
  const partner = document.getElementById("blend-partner").value;
  if (partner) {
    // Layer swapping: the served model's layers up to the level, the partner's above it (part of the world id).
    const level = Number(document.getElementById("swap-level").value);
    blend = `, "blend": ${JSON.stringify({ partner, swap_level: level })}`;
  }
  try {
    // The seed goes into the JSON as typed: seeds beyond 2**53 would lose digits as a JS number.
    const world = await fetchJSON("worlds", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: `{"seed": ${seed}, "psi": ${psi}, "psi_local": ${psiLocal}${biomes}${blend}}`,
    });
    const centre = tilejson ? map.project(map.getCenter(), tilejson.nativeZoom) : { x: 0, y: 0 };
    await openWorld(world.id, { z: map.getZoom(), x: Math.round(centre.x), y: Math.round(centre.y) });
  } catch (error) {
    showError(error.message);
  }
});

// Outpainting: upload a photo into the current seed/psi, follow the job, then fly to the photo in its new world.
const JOB_POLL_MS = 500;
window.lastJob = null; // read by the browser test, with landedOn (the world whose photo the view has reached)
window.landedOn = null;

function showJob(job) {
  const bar = document.getElementById("job-progress");
  bar.hidden = false;
  bar.value = job.progress;
  const attempt = job.attempts > 1 ? ` (attempt ${job.attempts})` : "";
  document.getElementById("job-status").textContent = `job ${job.id}: ${job.status} ${job.progress}%${attempt}`;
  window.lastJob = job;
}

async function followJob(job) {
  showJob(job);
  while (job.status === "queued" || job.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    job = await fetchJSON(`jobs/${encodeURIComponent(job.id)}`);
    showJob(job);
  }
  if (job.status !== "succeeded") throw new Error(`outpainting failed: ${job.error || job.status}`);
  return job;
}

async function flyToPhoto(result) {
  await openWorld(result.world_id, null);
  const fp = result.footprint;
  const nz = tilejson.nativeZoom;
  const bounds = L.latLngBounds(map.unproject([fp.x, fp.y], nz), map.unproject([fp.x + fp.width, fp.y + fp.height], nz));
  // Padding leaves room for the generated surroundings; no deeper than native, where tiles are 1:1.
  const landed = new Promise((resolve) => map.once("moveend", resolve));
  map.flyToBounds(bounds, { padding: [80, 80], maxZoom: nz, duration: 1.0 });
  await landed;
  window.landedOn = result.world_id;
}

document.getElementById("outpaint").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("photo").files[0];
  if (!file) { showError("choose a photo first"); return; }
  const seed = document.getElementById("seed").value.trim() || "0";
  if (!/^[0-9]+$/.test(seed)) { showError("seed must be a non-negative integer"); return; }
  const form = new FormData();
  form.append("image", file);
  form.append("seed", seed);
  form.append("psi", document.getElementById("psi").value || "0.8");
  if (document.getElementById("psi-local").value) form.append("psi_local", document.getElementById("psi-local").value);
  form.append("quality", document.getElementById("quality").value);
  const button = event.target.querySelector("button");
  button.disabled = true;
  showError("");
  try {
    const job = await followJob(await fetchJSON("outpaint", { method: "POST", body: form }));
    await flyToPhoto(job.result);
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});

map.on("moveend zoomend", writeHash);
let pointer = null;
function showReadout() {
  if (!tilejson) return;
  const p = map.project(pointer || map.getCenter(), tilejson.nativeZoom);
  document.getElementById("readout").textContent = `x ${Math.floor(p.x)}, y ${Math.floor(p.y)} · zoom ${map.getZoom()}`;
}
map.on("mousemove", (event) => { pointer = event.latlng; showReadout(); });
map.on("mouseout", () => { pointer = null; showReadout(); });
map.on("moveend zoomend", showReadout);
window.addEventListener("hashchange", () => {
  const view = readHash();
  if (tilejson && view.world && view.world !== tilejson.world.id) openWorld(view.world, view).catch((e) => showError(e.message));
});

// The partner models a world may blend with (GET /models); the picker shows only when there are some.
async function loadModels() {
  const models = await fetchJSON("models");
  const select = document.getElementById("blend-partner");
  for (const partner of models.partners) select.add(new Option(partner.name, partner.name));
  document.getElementById("swap-level").max = String(models.levels - 1);
  document.getElementById("blend").hidden = models.partners.length === 0;
}

const initial = readHash();
loadModels()
  .catch((error) => showError(error.message))
  .then(() => openWorld(initial.world, initial))
  .catch((error) => {
    showError(error.message);
    if (initial.world) openWorld(null, null).catch((e) => showError(e.message)); // unknown world: fall back
  });
