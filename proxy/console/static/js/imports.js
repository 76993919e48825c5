// Import: draw polygons by clicks or upload a GeoJSON file; name, method, resolution, CRS;
// "confirm import" shows POST /imports/plan's answer before anything starts.
import { api } from "./api.js";
import { clearDrawing, clearOverlays, drawnPolygons, fitTo, showShapes, startDraw } from "./map.js";
import { showServerTiles } from "./servers.js";
import { act, bytes, count, errorNotice, field, h, notice, show } from "./ui.js";

function bboxOf(geojson) {
  const box = [180, 90, -180, -90];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      box[0] = Math.min(box[0], c[0]); box[1] = Math.min(box[1], c[1]);
      box[2] = Math.max(box[2], c[0]); box[3] = Math.max(box[3], c[1]);
    } else c.forEach(walk);
  };
  const geoms = geojson.type === "FeatureCollection" ? geojson.features.map((f) => f.geometry)
    : geojson.type === "Feature" ? [geojson.geometry] : [geojson];
  geoms.forEach((g) => walk(g.coordinates));
  return box;
}

function planTable(plan) {
  const rows = [
    ["Grid", `${count(plan.width)} × ${count(plan.height)} px in ${plan.crs}`],
    ["Pixels", count(plan.pixels)],
    ["Resolution", `${plan.resolution} m/px${plan.zoom === null ? "" : ` (zoom ${plan.zoom})`}`],
    ["Upstream requests", count(plan.requests)],
    ["Upstream bytes (estimate)", bytes(plan.bytes)],
    ["Cells (images of a download)", `${count(plan.cells.count)} of at most `
      + `${count(plan.cells.max_cell_pixels)} px`],
  ];
  return h("table", { id: "plan" }, h("caption", { class: "help" }, "What this import makes"),
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))));
}

export async function importScreen(serverId, prefill = {}) {
  await clearOverlays();
  const server = await api("GET", `/servers/${serverId}`);
  const name = h("input", { type: "text", required: true, value: prefill.name || "" });
  const method = h("select", {}, h("option", { value: "streaming" }, "streaming (read on demand)"),
    h("option", { value: "download" }, "download (GeoTIFF cells)"));
  const resolution = h("input", { type: "number", step: "any", min: "0",
    placeholder: String(server.resolution ?? "") });
  const crs = h("input", { type: "text", placeholder: "EPSG:3857 (or utm, any EPSG code or WKT)" });
  const upload = h("input", { type: "file", accept: ".geojson,.json,application/geo+json,application/json" });
  const out = h("div");
  const planOut = h("div", { "aria-live": "polite" });
  let uploaded = prefill.aois || null;

  upload.addEventListener("change", async () => {
    out.replaceChildren();
    try {
      uploaded = JSON.parse(await upload.files[0].text());
      await showShapes("upload", uploaded, { color: "#7b2cbf" });
      await fitTo(bboxOf(uploaded));
      out.replaceChildren(notice("The file's polygons are the AOIs.", "ok"));
    } catch (err) {
      uploaded = null;
      out.replaceChildren(errorNotice({ code: "invalid_file", message: `not a GeoJSON file: ${err.message}`,
        hint: "upload a GeoJSON geometry, Feature or FeatureCollection of polygons in lon/lat" }));
    }
  });
  const aois = () => {
    const drawn = drawnPolygons();
    if (drawn.length) return { type: "FeatureCollection", features: drawn };
    if (uploaded) return uploaded;
    throw Object.assign(new Error("no AOI yet"), { code: "no_aoi",
      hint: "draw a polygon on the map (click each corner, click the first to close) or upload a file" });
  };
  const ask = () => {
    const body = { server_id: serverId, name: name.value.trim(), aois: aois(), method: method.value };
    if (resolution.value) body.resolution = Number(resolution.value);
    if (crs.value.trim()) body.crs = crs.value.trim();
    return body;
  };
  const planBtn = h("button", { type: "submit" }, "Plan the import");
  const clear = h("button", { type: "button", class: "secondary", onclick: () => clearDrawing() },
    "Clear drawing");
  const form = h("form", { onsubmit: (e) => {
    e.preventDefault();
    act(planBtn, out, async () => {
      const body = ask();
      const plan = await api("POST", "/imports/plan", body);
      const confirmBtn = h("button", { type: "button", id: "confirm-import" }, "Confirm import");
      const confirmOut = h("div");
      confirmBtn.addEventListener("click", () => act(confirmBtn, confirmOut, async () => {
        const made = await api("POST", "/imports", body);
        location.hash = made.job ? `#job/${made.job.id}` : `#image/${made.id}`;
      }));
      planOut.replaceChildren(h("h3", {}, "Confirm import"), planTable(plan),
        h("p", {}, "Nothing has started yet."), h("div", { class: "actions" }, confirmBtn), confirmOut);
      confirmBtn.focus();
    });
  } },
  h("p", { class: "help" }, "Draw: click each corner of a polygon on the map, click the first corner to "
    + "close it (several polygons are fine). Or upload a GeoJSON file."),
  field("imp-file", "GeoJSON file of AOIs", upload),
  field("imp-name", "Name", name, "Each cell of a download becomes an image named <name>_<n>."),
  field("imp-method", "Method", method),
  h("div", { class: "row" },
    field("imp-resolution", "Resolution (m/px)", resolution, "Default: the server's."),
    field("imp-crs", "CRS", crs)),
  h("div", { class: "actions" }, planBtn, clear), out, planOut);
  method.value = prefill.method || "streaming";
  if (prefill.resolution) resolution.value = prefill.resolution;
  show(h("h2", {}, `Import from ${server.name}`), form);
  await showServerTiles(server, out);
  if (!(await startDraw())) out.append(notice("The map is unavailable: upload a GeoJSON file instead."));
  if (prefill.aois) {
    await showShapes("upload", prefill.aois, { color: "#7b2cbf" });
    await fitTo(bboxOf(prefill.aois));
  }
}
