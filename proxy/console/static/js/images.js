// Images: each streaming image on the map (tiles + AOIs), its metadata, "convert to images",
// and the resolution guard's refusal with its fix as one action.
import { ROOT, api } from "./api.js";
import { clearOverlays, fitTo, showShapes, showTiles } from "./map.js";
import { act, count, errorNotice, field, h, show } from "./ui.js";

export async function imagesScreen() {
  await clearOverlays();
  const { images } = await api("GET", "/images");
  show(h("h2", {}, "Streaming images"), images.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Size (px)", "m/px", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, images.map((i) => h("tr", {},
        h("td", {}, h("a", { href: `#image/${i.id}` }, i.name)),
        h("td", { class: "num" }, `${count(i.width)} × ${count(i.height)}`),
        h("td", { class: "num" }, i.resolution), h("td", {}, i.created_at.slice(0, 19))))))
    : h("p", { class: "empty" }, "No image yet: import one from a server (Servers › Import)."));
}

// The guard's refusal, and its fix as one action: duplicate the server at the detector's
// resolution, then import the same AOIs again from the copy.
export function guardFix(err, image) {
  const res = err.detail.detector_resolution;
  const fix = h("button", { type: "button", id: "guard-fix" },
    `Duplicate the server at ${res} m/px and import again`);
  const out = h("div");
  fix.addEventListener("click", () => act(fix, out, async () => {
    const server = await api("GET", `/servers/${image.server_id}`);
    const copy = await api("POST", `/servers/${image.server_id}/duplicate`,
      { resolution: res, name: `${server.name} @ ${res} m/px` });
    const made = await api("POST", "/imports", { server_id: copy.id, name: `${image.name} @ ${res} m`,
      aois: image.aois, resolution: res });
    location.hash = `#image/${made.id}`;
  }));
  return errorNotice(err, h("div", { class: "actions" }, fix), out);
}

const guarded = (err, image) => (err.code === "resolution_too_high" && err.detail?.detector_resolution
  ? guardFix(err, image) : errorNotice(err));

export async function imageScreen(id) {
  await clearOverlays();
  const image = await api("GET", `/images/${id}`);
  const meta = [["id", image.id], ["server", h("a", { href: `#server/${image.server_id}` }, image.server_id)],
    ["CRS", image.crs], ["size", `${count(image.width)} × ${count(image.height)} px, ${image.bands} bands ${image.dtype}`],
    ["resolution", `${image.resolution} m/px`], ["bounds (lon/lat)", image.bounds_lonlat.map((v) => v.toFixed(5)).join(", ")],
    ["created", image.created_at]];
  const detector = h("input", { type: "number", step: "any", min: "0" });
  const compression = h("select", {}, ["deflate", "jpeg", "webp", "lzw", "zstd"].map((c) => h("option", { value: c }, c)));
  const out = h("div");
  const convert = h("button", { type: "button" }, "Convert to images");
  const check = h("button", { type: "button", class: "secondary" }, "Check a full-resolution read");
  const detectorRes = () => (detector.value ? Number(detector.value) : undefined);
  convert.addEventListener("click", () => act(convert, out, async () => {
    try {
      const job = await api("POST", `/images/${id}/materialize`,
        { compression: compression.value, detector_resolution: detectorRes() });
      location.hash = `#job/${job.id}`;
    } catch (err) { out.replaceChildren(guarded(err, image)); }
  }));
  check.addEventListener("click", () => act(check, out, async () => {
    const q = detectorRes() ? `?detector_resolution=${detectorRes()}` : "";
    const w = Math.min(256, image.width), hgt = Math.min(256, image.height);
    try {
      await api("GET", `/images/${id}/window/0,0,${w},${hgt}.png${q}`, undefined, { raw: true });
      out.replaceChildren(h("div", { class: "notice ok", role: "status" }, "A full-resolution read is allowed."));
    } catch (err) { out.replaceChildren(guarded(err, image)); }
  }));
  show(h("h2", {}, image.name),
    h("dl", { class: "meta" }, meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h3", {}, "Convert to images"),
    h("div", { class: "row" }, field("img-detector", "Detector resolution (m/px, optional)", detector,
      "A read much finer than the detector's resolution is refused (the resolution guard)."),
    field("img-compression", "Compression", compression)),
    h("div", { class: "actions" }, convert, check), out);
  const token = await api("POST", `/servers/${image.server_id}/tile-tokens`, { ttl: 3600 }).catch((err) => {
    out.append(errorNotice(err)); return null;
  });
  if (token) {
    const tiles = `${ROOT.href}images/${id}/tiles/{z}/{x}/{y}.png?token=${encodeURIComponent(token.token)}`;
    await showTiles("image-tiles", tiles, image.bounds_lonlat, image.max_zoom);
  }
  await showShapes("aois", image.aois, { color: "#7b2cbf" });
  await fitTo(image.bounds_lonlat);
}
