// The console's entry: the API key, the screens by URL hash, errors shown in place.
import { apiKey, onKeyNeeded } from "./api.js";
import { initMap } from "./map.js";
import { errorNotice, h, show } from "./ui.js";

function askForKey(reason) {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").textContent = reason || "";
  input.value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (input.value.trim()) apiKey.set(input.value.trim());
      resolve();
    }, { once: true });
  });
}
onKeyNeeded(askForKey);

const SCREENS = [
  [/^#?(servers)?$/, async () => (await import("./servers.js")).serversScreen()],
  [/^#new$/, async () => (await import("./servers.js")).newServerScreen()],
  [/^#server\/(.+)$/, async (id) => (await import("./servers.js")).serverScreen(id)],
  [/^#test\/(.+)$/, async (id) => (await import("./probe.js")).testScreen(id)],
  [/^#import\/(.+)$/, async (id) => (await import("./imports.js")).importScreen(id)],
  [/^#images$/, async () => (await import("./images.js")).imagesScreen()],
  [/^#image\/(.+)$/, async (id) => (await import("./images.js")).imageScreen(id)],
  [/^#jobs$/, async () => (await import("./jobs.js")).jobsScreen()],
  [/^#job\/(.+)$/, async (id) => (await import("./jobs.js")).jobScreen(id)],
];

async function route() {
  const hash = location.hash;
  (await import("./jobs.js")).stopLive();
  document.getElementById("panel").dataset.screen = "loading";
  for (const [pattern, screen] of SCREENS) {
    const match = hash.match(pattern);
    if (!match) continue;
    try {
      await screen(match[1] && decodeURIComponent(match[1]));
    } catch (err) {
      show(h("h2", {}, "Something went wrong"), errorNotice(err),
        h("p", {}, h("a", { href: "#servers" }, "Back to the servers")));
    }
    document.getElementById("panel").dataset.screen = hash.split("/")[0].slice(1) || "servers";
    return;
  }
  show(h("h2", {}, "Not found"), h("p", {}, "No such screen. ", h("a", { href: "#servers" }, "Servers")));
  document.getElementById("panel").dataset.screen = "unknown";
}

document.getElementById("forget-key").addEventListener("click", () => {
  apiKey.forget();
  route();
});
window.addEventListener("hashchange", route);
initMap();
route();
