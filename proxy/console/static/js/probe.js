// Test connection: click a point, set resolution and size; the preview beside the map, each
// upstream request and the findings with their hints.
import { api } from "./api.js";
import { clearOverlays, marker, onMapClick } from "./map.js";
import { showServerTiles } from "./servers.js";
import { act, errorNotice, field, h, show } from "./ui.js";

function findingsList(findings) {
  if (!findings?.length) return h("p", { class: "empty" }, "No findings.");
  return h("ul", {}, findings.map((f) => h("li", { class: "finding" },
    h("b", {}, f.severity), " ", h("code", {}, f.code), ": ", f.message,
    f.hint ? h("div", { class: "help" }, "Hint: ", f.hint) : null)));
}

function requestsTable(diagnostics) {
  const requests = diagnostics?.requests || [];
  if (!requests.length) return h("p", { class: "empty" }, "No upstream request was made.");
  return h("table", {}, h("caption", { class: "help" }, `${requests.length} upstream request(s)`),
    h("thead", {}, h("tr", {}, ["Status", "URL (secrets redacted)", "ms", "Bytes", "Type"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, requests.map((r) => h("tr", {},
      h("td", {}, r.status ?? r.error ?? "—"), h("td", { class: "url" }, r.url),
      h("td", { class: "num" }, Math.round(r.latency_ms)), h("td", { class: "num" }, r.bytes),
      h("td", {}, r.content_type ?? "")))));
}

function result(answer) {
  return h("div", { id: "probe-result" },
    h("h3", {}, answer.ok ? "Preview" : "Preview (with problems)"),
    h("p", { class: "help" }, `lat ${answer.lat.toFixed(5)}, lon ${answer.lon.toFixed(5)}, `
      + `${answer.resolution} m/px${answer.zoom === null ? "" : `, zoom ${answer.zoom}`}`),
    h("img", { class: "preview", id: "preview", alt: `Preview of the server at the picked point`,
      src: `data:${answer.preview.media_type};base64,${answer.preview.base64}` }),
    h("h3", {}, "Findings"), findingsList(answer.findings),
    h("h3", {}, "Upstream requests"), requestsTable(answer.diagnostics));
}

// The form; `send(body)` makes the call (saved or unsaved config).
async function testForm(title, defaults, send) {
  const lat = h("input", { type: "number", step: "any", min: "-85.05", max: "85.05" });
  const lon = h("input", { type: "number", step: "any", min: "-180", max: "180" });
  const resolution = h("input", { type: "number", step: "any", min: "0" });
  const size = h("input", { type: "number", min: "16", max: "2048", value: "256" });
  lat.value = defaults.preview?.lat ?? "";
  lon.value = defaults.preview?.lon ?? "";
  resolution.value = defaults.resolution ?? "";
  const out = h("div");
  const run = h("button", { type: "submit" }, "Test connection");
  onMapClick((p) => {
    lat.value = p.lat.toFixed(6);
    lon.value = p.lng.toFixed(6);
    marker(p);
  });
  const num = (input) => (input.value === "" ? undefined : Number(input.value));
  const form = h("form", { onsubmit: (e) => {
    e.preventDefault();
    act(run, out, async () => {
      try {
        const answer = await send({ lat: num(lat), lon: num(lon), resolution: num(resolution),
          size: num(size) });
        out.replaceChildren(result(answer));
      } catch (err) {
        out.replaceChildren(errorNotice(err), findingsList(err.detail?.findings),
          requestsTable(err.detail?.diagnostics));
      }
    });
  } },
  h("p", { class: "help" }, "Click the map to pick the point (or type it), then test."),
  h("div", { class: "row" }, field("probe-lat", "Latitude", lat), field("probe-lon", "Longitude", lon)),
  h("div", { class: "row" }, field("probe-resolution", "Resolution (m/px)", resolution),
    field("probe-size", "Preview size (px)", size)),
  h("div", { class: "actions" }, run), out);
  show(h("h2", {}, title), form);
  return out;
}

export async function testScreen(id) {
  await clearOverlays();
  const server = await api("GET", `/servers/${id}`);
  const out = await testForm(`Test connection: ${server.name}`, server,
    (body) => api("POST", `/servers/${id}/test`, body));
  out.before(h("p", {}, h("a", { href: `#server/${id}` }, "Edit this server"), " · ",
    h("a", { href: `#import/${id}` }, "Import from it")));
  await showServerTiles(server, out);
}

export async function testScreenUnsaved(config) {
  await clearOverlays();
  await testForm(`Test connection: ${config.name || "unsaved server"}`, config,
    (body) => api("POST", "/servers/test", { server: config, ...body }));
}
