// Servers: the list, add and edit per type, duplicate with a new resolution, delete, tiles.
import { api } from "./api.js";
import { clearOverlays, fitTo, showTiles } from "./map.js";
import { changes, listServers, serverForm, serverSchemas } from "./schema_form.js";
import { act, errorNotice, field, h, notice, show } from "./ui.js";

export async function serversScreen() {
  await clearOverlays();
  const servers = await listServers();
  const rows = servers.map((s) => h("tr", {},
    h("td", {}, h("a", { href: `#server/${s.id}` }, s.name)),
    h("td", {}, s.type),
    h("td", { class: "num" }, s.resolution ?? "—"),
    h("td", {}, h("a", { href: `#test/${s.id}` }, "Test"), " · ",
      h("a", { href: `#import/${s.id}` }, "Import"))));
  show(
    h("h2", {}, "Imagery servers"),
    h("div", { class: "actions" }, h("a", { class: "button", href: "#new" }, "Add a server")),
    servers.length
      ? h("table", {}, h("caption", { class: "help" }, `${servers.length} server(s)`),
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"),
          h("th", {}, "Resolution (m/px)"), h("th", {}, "Actions"))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No server yet: add one to test its connection and import from it."),
  );
}

// The new-server screen: pick a type, fill its fields, test before saving.
export async function newServerScreen() {
  await clearOverlays();
  const types = Object.keys(await serverSchemas());
  const select = h("select", {}, types.map((t) => h("option", { value: t }, t)));
  const slot = h("div");
  const out = h("div");
  let form = null;
  const render = async () => { form = await serverForm(select.value); slot.replaceChildren(form.node); };
  select.addEventListener("change", render);
  await render();
  const save = h("button", { type: "submit" }, "Save server");
  const test = h("button", { type: "button", class: "secondary" }, "Test connection (unsaved)");
  const wmts = h("button", { type: "button", class: "secondary" }, "Use WMTS as XYZ");
  test.addEventListener("click", () => act(test, out, async () => {
    const { testScreenUnsaved } = await import("./probe.js");
    await testScreenUnsaved(form.read());
  }));
  wmts.addEventListener("click", () => act(wmts, out, async () => {
    const xyz = await api("POST", "/servers/from-wmts", form.read());
    select.value = "xyz";
    form = await serverForm("xyz", xyz);
    slot.replaceChildren(form.node);
    out.replaceChildren(notice("The WMTS became this XYZ config: check it, test it, save it.", "ok"));
  }));
  const el = h("form", { onsubmit: (e) => {
    e.preventDefault();
    act(save, out, async () => {
      const saved = await api("POST", "/servers", form.read());
      location.hash = `#server/${saved.id}`;
    });
  } }, field("srv-type", "Server type", select, "The fields below depend on the server type."),
  slot, h("div", { class: "actions" }, save, test, wmts), out);
  show(h("h2", {}, "Add an imagery server"), el);
}

// One server: edit, duplicate with a new resolution, delete, its tiles on the map.
export async function serverScreen(id) {
  await clearOverlays();
  const server = await api("GET", `/servers/${id}`);
  const form = await serverForm(server.type, server, "edit");
  const out = h("div");
  const save = h("button", { type: "submit" }, "Save changes");
  const resolution = h("input", { type: "number", step: "any", min: "0" });
  const dup = h("button", { type: "button", class: "secondary" }, "Duplicate");
  const del = h("button", { type: "button", class: "danger" }, "Delete");
  dup.addEventListener("click", () => act(dup, out, async () => {
    const body = resolution.value ? { resolution: Number(resolution.value),
      name: `${server.name} @ ${resolution.value} m/px` } : {};
    const copy = await api("POST", `/servers/${id}/duplicate`, body);
    location.hash = `#server/${copy.id}`;
  }));
  del.addEventListener("click", () => act(del, out, async () => {
    if (!confirm(`Delete the server ${server.name}?`)) return;
    await api("DELETE", `/servers/${id}`);
    location.hash = "#servers";
  }));
  const el = h("form", { onsubmit: (e) => {
    e.preventDefault();
    act(save, out, async () => {
      const body = changes(server, form.read());
      if (!Object.keys(body).length) { out.replaceChildren(notice("Nothing changed.")); return; }
      await api("PATCH", `/servers/${id}`, body);
      out.replaceChildren(notice("Saved.", "ok"));
    });
  } }, form.node, h("div", { class: "actions" }, save), out);
  show(
    h("h2", {}, server.name),
    h("p", {}, `${server.type} · id ${server.id} · `,
      h("a", { href: `#test/${id}` }, "Test connection"), " · ", h("a", { href: `#import/${id}` }, "Import")),
    el,
    h("h3", {}, "Duplicate with a new resolution"),
    h("div", { class: "row" }, field("dup-resolution", "Resolution of the copy (m/px)", resolution), dup),
    h("h3", {}, "Delete"), h("div", { class: "actions" }, del),
  );
  await showServerTiles(server, out);
}

// The server's tiles through a tile token (the API key never goes into a URL).
export async function showServerTiles(server, out) {
  try {
    const token = await api("POST", `/servers/${server.id}/tile-tokens`, { ttl: 3600 });
    const tilejson = await fetch(token.tilejson).then(async (r) => {
      const body = await r.json();
      if (!r.ok) throw Object.assign(new Error(body.error.message), body.error);
      return body;
    });
    await showTiles("server-tiles", token.tiles, tilejson.bounds, tilejson.maxzoom);
    await fitTo(tilejson.bounds);
    return token;
  } catch (err) {
    out.append(errorNotice(err));
    return null;
  }
}
