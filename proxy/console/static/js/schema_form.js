// A server form built from the OpenAPI document's schema of each type, so it follows the API;
// the field help comes from the reference user guide.
import { api, apiUrl } from "./api.js";
import { field, h } from "./ui.js";

const GUIDE = {
  url: {
    xyz: "A XYZ URL in the form https://server.com/layer/{z}/{x}/{y} ({s}, {-y}, {q}, {switch:a,b} work too). "
      + "Check for wrongly encoded characters: {z} pasted as %7Bz%7D is decoded and reported.",
    wms: "The GetCapabilities URL of the WMS (when browsed it shows an XML WMS_Capabilities document); "
      + "a pasted GetMap URL works too.",
    wmts: "The GetCapabilities URL. A WMTS with a GoogleMapsCompatible (EPSG:3857) set can be used as XYZ: "
      + "see \"Use WMTS as XYZ\" below.",
    arcgis: "The layer's URL from its details page, ending with /ImageServer or /MapServer.",
  },
  name: "How this server is listed.",
  resolution: "m/px on the ground (default: the finest zoom). If the preview shows no imagery the resolution "
    + "may not be supported by the server: start with a lower resolution first.",
  skip_ssl: "If the server uses HTTPS and the test connection fails on its certificate, try this.",
  credentials: "Your credentials in the form username:password (write-only: shown as ***).",
  headers: "JSON object of HTTP headers, e.g. {\"Authorization\": \"…\"}; values are write-only (***).",
  params: "JSON object of query parameters added to every request (API keys); values are write-only.",
  keys: "JSON object of credential placeholders of the URL, e.g. {\"apikey\": \"…\"} (write-only).",
  preview: "JSON {\"lat\": …, \"lon\": …}: the default test-connection point (click the map in Test).",
  layers: "Comma-separated WMS layer names (the capabilities list them).",
  subdomains: "JSON list of the values of {s}, e.g. [\"a\", \"b\", \"c\"].",
  zoom_offset: "Ask the upstream for level z + offset (MapProxy-style TMS levels: -1).",
};
const MAIN = new Set(["name", "url", "resolution", "skip_ssl", "credentials", "layers", "layer"]);

let documentPromise = null;
export async function serverSchemas() {
  documentPromise ||= fetch(apiUrl("/openapi.json")).then((r) => r.json());
  const doc = await documentPromise;
  const schemas = doc.components.schemas;
  const mapping = schemas.ServerConfig.discriminator.mapping;
  return Object.fromEntries(Object.entries(mapping).map(([type, ref]) =>
    [type, schemas[ref.split("/").pop()]]));
}

function kindOf(prop) {
  const options = prop.anyOf ? prop.anyOf.filter((p) => p.type !== "null") : [prop];
  const first = options[0] || {};
  if (first.enum) return { kind: "enum", values: first.enum, numeric: first.type === "integer" };
  if (first.type === "boolean") return { kind: "bool" };
  if (first.type === "integer" || first.type === "number") return { kind: "number" };
  if (first.type === "string") return { kind: "text" };
  return { kind: "json" };
}

function helpFor(name, type, prop) {
  const guide = GUIDE[name];
  return (typeof guide === "object" ? guide[type] : guide) || prop.description || "";
}

// Fields of `type`, filled from `values`; returns {node, read()} where read() gives the config.
export async function serverForm(type, values = {}, prefix = "srv") {
  const schema = (await serverSchemas())[type];
  const main = h("div");
  const more = h("details", {}, h("summary", {}, "More fields"));
  const readers = [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    if (name === "type") continue;
    const { kind, values: options, numeric } = kindOf(prop);
    const id = `${prefix}-${name}`;
    const label = prop.title || name;
    const value = values[name];
    let input;
    if (kind === "bool") {
      input = h("input", { type: "checkbox" });
      input.checked = Boolean(value ?? prop.default);
    } else if (kind === "enum") {
      input = h("select", {}, h("option", { value: "" }, "(default)"),
        options.map((o) => h("option", { value: String(o) }, String(o))));
      input.value = value === undefined || value === null ? "" : String(value);
    } else if (kind === "json") {
      input = h("textarea", { rows: 2, spellcheck: "false" });
      input.value = value === undefined || value === null ? "" : JSON.stringify(value);
    } else {
      input = h("input", { type: kind === "number" ? "number" : "text", step: "any",
        placeholder: prop.default !== undefined && prop.default !== null ? String(prop.default) : "" });
      input.value = value === undefined || value === null ? "" : String(value);
    }
    if ((schema.required || []).includes(name)) input.required = true;
    (MAIN.has(name) ? main : more).append(field(id, label, input, helpFor(name, type, prop)));
    readers.push([name, () => {
      if (kind === "bool") return input.checked;
      const text = input.value.trim();
      if (text === "") return undefined;
      if (kind === "number" || (kind === "enum" && numeric)) return Number(text);
      if (kind === "json") {
        try { return JSON.parse(text); } catch { throw new Error(`${label}: not valid JSON`); }
      }
      return text;
    }]);
  }
  const node = h("div", {}, main, more);
  const read = () => {
    const config = { type };
    for (const [name, get] of readers) {
      const v = get();
      if (v !== undefined && !(v === false && values[name] === undefined)) config[name] = v;
    }
    return config;
  };
  return { node, read };
}

// Fields that differ from the stored view (a PATCH body).
export function changes(original, config) {
  const out = {};
  for (const [k, v] of Object.entries(config))
    if (JSON.stringify(original[k]) !== JSON.stringify(v)) out[k] = v;
  return out;
}

export const listServers = async () => (await api("GET", "/servers")).servers;
