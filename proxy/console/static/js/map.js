// The one map of the console: a blank background (no base map: the service may be offline),
// the service's own tiles as raster sources, GeoJSON overlays and terra-draw polygons.
import * as maplibregl from "maplibre-gl";
import { TerraDraw, TerraDrawPolygonMode, TerraDrawSelectMode } from "terra-draw";
import { TerraDrawMapLibreGLAdapter } from "terra-draw-maplibre-gl-adapter";

let map = null;
let ready = null;
let clickHandler = null;
let draw = null;
const overlays = new Set();

const status = (text) => { document.getElementById("map-status").textContent = text; };

export function initMap() {
  try {
    map = new maplibregl.Map({
      container: "map",
      style: { version: 8, sources: {}, layers: [
        { id: "background", type: "background", paint: { "background-color": "#f3f5f8" } }] },
      center: [0, 20], zoom: 1, attributionControl: false,
      canvasContextAttributes: { preserveDrawingBuffer: true },
    });
  } catch (err) {
    status(`The map is unavailable in this browser (${err.message}); every form still works.`);
    ready = Promise.resolve(false);
    return ready;
  }
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.getCanvas().setAttribute("aria-label", "Map: click to pick a point");
  map.on("click", (e) => { if (clickHandler) clickHandler(e.lngLat); });
  map.on("error", (e) => status(e.error?.message || "a map resource failed"));
  ready = new Promise((resolve) => map.once("load", () => resolve(true)));
  window.consoleMap = map; // for the end-to-end tests
  return ready;
}

export const mapReady = () => ready;
export const theMap = () => map;

export function onMapClick(fn) { clickHandler = fn; }

export async function clearOverlays() {
  if (!(await ready)) return;
  stopDraw();
  clickHandler = null;
  for (const id of overlays) {
    for (const layer of [`${id}-fill`, `${id}-line`, id]) if (map.getLayer(layer)) map.removeLayer(layer);
    if (map.getSource(id)) map.removeSource(id);
  }
  overlays.clear();
  status("");
}

export async function showTiles(id, tilesUrl, bounds, maxzoom = 22) {
  if (!(await ready)) return;
  map.addSource(id, { type: "raster", tiles: [tilesUrl], tileSize: 256, bounds, maxzoom });
  map.addLayer({ id, type: "raster", source: id });
  overlays.add(id);
}

// Polygons coloured by a property: colours maps a property value to a colour.
export async function showShapes(id, data, { color = "#16324f", by = null, colours = {} } = {}) {
  if (!(await ready)) return;
  const fill = by ? ["match", ["get", by], ...Object.entries(colours).flat(), color] : color;
  map.addSource(id, { type: "geojson", data });
  map.addLayer({ id: `${id}-fill`, type: "fill", source: id,
    paint: { "fill-color": fill, "fill-opacity": by ? 0.55 : 0.15 } });
  map.addLayer({ id: `${id}-line`, type: "line", source: id,
    paint: { "line-color": by ? "#333" : color, "line-width": 1.5 } });
  overlays.add(id);
}

export async function updateShapes(id, data) {
  if (!(await ready)) return;
  map.getSource(id)?.setData(data);
}

export async function fitTo(bounds) {
  if (!(await ready) || !bounds) return;
  map.fitBounds([[bounds[0], bounds[1]], [bounds[2], bounds[3]]], { padding: 30, animate: false });
}

export async function marker(lngLat) {
  if (!(await ready)) return;
  const data = { type: "Feature", geometry: { type: "Point", coordinates: [lngLat.lng, lngLat.lat] } };
  if (map.getSource("pick")) { map.getSource("pick").setData(data); return; }
  map.addSource("pick", { type: "geojson", data });
  map.addLayer({ id: "pick", type: "circle", source: "pick",
    paint: { "circle-radius": 6, "circle-color": "#f4a261", "circle-stroke-width": 2 } });
  overlays.add("pick");
}

// Polygon drawing by clicks (terra-draw): click the corners, click the first one to close.
export async function startDraw() {
  if (!(await ready)) return false;
  draw = new TerraDraw({
    adapter: new TerraDrawMapLibreGLAdapter({ map }),
    modes: [new TerraDrawPolygonMode(), new TerraDrawSelectMode({
      flags: { polygon: { feature: { draggable: true, coordinates: { midpoints: true, draggable: true, deletable: true } } } },
    })],
  });
  draw.start();
  draw.setMode("polygon");
  return true;
}

export function drawnPolygons() {
  if (!draw) return [];
  return draw.getSnapshot().filter((f) => f.geometry.type === "Polygon")
    .map((f) => ({ type: "Feature", properties: {}, geometry: f.geometry }));
}

export function clearDrawing() { draw?.clear(); }

export function stopDraw() {
  if (draw) { draw.stop(); draw = null; }
}
