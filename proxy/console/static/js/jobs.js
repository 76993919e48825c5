// Jobs: the cell grid coloured by state, updating live over SSE (read with fetch, so the key
// stays in a header), counts, rate, ETA, cancel, retry, links to the outputs.
import { api, streamEvents } from "./api.js";
import { clearOverlays, fitTo, showShapes, updateShapes } from "./map.js";
import { act, bytes, count, errorNotice, h, notice, seconds, show } from "./ui.js";

export const COLOURS = { pending: "#adb5bd", running: "#1f6feb", done: "#2b9348", failed: "#d00000" };
let live = null; // the AbortController of the open event stream

export function stopLive() { live?.abort(); live = null; }

export async function jobsScreen() {
  stopLive();
  await clearOverlays();
  const { jobs } = await api("GET", "/jobs?limit=100");
  show(h("h2", {}, "Jobs"), jobs.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Kind", "State", "Cells done", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, jobs.map((j) => h("tr", {},
        h("td", {}, h("a", { href: `#job/${j.id}` }, j.name)), h("td", {}, j.kind), h("td", {}, j.state),
        h("td", { class: "num" }, `${j.cells.done} / ${j.cells_total}`), h("td", {}, j.created_at.slice(0, 19))))))
    : h("p", { class: "empty" }, "No job yet: import with method download, or convert an image."));
}

function bboxOfCells(fc) {
  let box = null;
  for (const f of fc.features) for (const ring of f.geometry.coordinates) for (const [x, y] of ring)
    box = box ? [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)] : [x, y, x, y];
  return box;
}

function summary(job) {
  const done = job.cells.done, total = job.cells_total || 1;
  const stats = [["State", job.state], ["Cells", `${count(job.cells.done)} done, ${count(job.cells.running)} running, `
    + `${count(job.cells.pending)} pending, ${count(job.cells.failed)} failed of ${count(job.cells_total)}`],
  ["Rate", `${job.rate.cells_per_s.toFixed(2)} cells/s, ${bytes(job.rate.bytes_per_s)}/s`],
  ["ETA", seconds(job.eta_seconds)], ["Written", bytes(job.bytes_written)],
  ["Upstream requests", count(job.upstream_requests)]];
  return h("div", { id: "job-summary" },
    h("div", { class: "bar", role: "progressbar", "aria-label": "Cells done", "aria-valuemin": "0",
      "aria-valuemax": String(job.cells_total), "aria-valuenow": String(done) },
    h("div", { style: `width: ${(100 * done) / total}%` })),
    h("dl", { class: "meta" }, stats.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-stat": k }, v)])),
    job.paused ? notice(`Paused: ${job.paused.message} (until ${job.paused.until})`) : null,
    job.outputs ? h("p", {}, "Outputs: ", h("code", {}, job.outputs.folder),
      job.outputs.stac ? [" · STAC: ", h("code", {}, job.outputs.stac)] : null) : null);
}

export async function jobScreen(id) {
  stopLive();
  await clearOverlays();
  let job = await api("GET", `/jobs/${id}`);
  const cells = await api("GET", `/jobs/${id}/cells.geojson`);
  const byIndex = new Map(cells.features.map((f) => [f.properties.index, f]));
  const summarySlot = h("div");
  const out = h("div");
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel");
  const retry = h("button", { type: "button", class: "secondary" }, "Retry failed cells");
  const failures = h("ul", { id: "failures" });
  const render = () => {
    summarySlot.replaceChildren(summary(job));
    const finished = ["done", "failed", "cancelled"].includes(job.state);
    cancel.disabled = finished;
    retry.disabled = job.cells.failed === 0;
    document.getElementById("panel").dataset.jobState = job.state;
    failures.replaceChildren(...cells.features.filter((f) => f.properties.state === "failed")
      .map((f) => h("li", {}, `cell ${f.properties.index}: ${f.properties.error || "failed"}`)));
  };
  let pending = false;
  const redraw = () => { // at most one map update per frame
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; updateShapes("cells", cells); });
  };
  const follow = async () => {
    stopLive();
    const ctrl = live = new AbortController();
    try {
      await streamEvents(`/jobs/${id}/events`, (name, data) => {
        if (name === "job") { job = data; render(); }
        if (name === "cell") {
          const f = byIndex.get(data.index);
          if (f) { f.properties.state = data.state; f.properties.error = data.error; redraw(); render(); }
        }
      }, ctrl.signal);
    } catch (err) {
      if (err.name !== "AbortError") out.replaceChildren(errorNotice(err));
    }
  };
  cancel.addEventListener("click", () => act(cancel, out, async () => {
    job = await api("POST", `/jobs/${id}/cancel`); render();
  }));
  retry.addEventListener("click", () => act(retry, out, async () => {
    job = await api("POST", `/jobs/${id}/retry`);
    const fresh = await api("GET", `/jobs/${id}/cells.geojson`);
    for (const f of fresh.features) byIndex.get(f.properties.index).properties = f.properties;
    render(); redraw(); follow();
  }));
  show(h("h2", {}, `Job: ${job.name}`),
    h("p", {}, `${job.kind} of `, h("a", { href: `#server/${job.server_id}` }, "its server"),
      job.image_id ? [" · ", h("a", { href: `#image/${job.image_id}` }, "its image")] : null),
    h("div", { class: "legend", "aria-label": "Cell colours" },
      Object.entries(COLOURS).map(([k, c]) => h("span", { style: `--c: ${c}` }, k))),
    summarySlot, h("div", { class: "actions" }, cancel, retry), out,
    h("h3", {}, "Failed cells"), failures);
  render();
  await showShapes("cells", cells, { by: "state", colours: COLOURS });
  await fitTo(bboxOfCells(cells));
  follow();
}
