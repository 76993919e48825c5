"""Browser fixtures: one Chromium (Debian's, never a downloaded one) per module, one live service.

Skipped with a reason when Chromium or Playwright is absent here; ``.ci/run`` installs both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.live import API_KEY
from tests.live_servers import LiveServers

CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # WebGL for MapLibre without a GPU: ANGLE on SwiftShader (software)
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, renderer: Any) -> Iterator[LiveServers]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    with LiveServers(data_dir, renderer, API_KEY, upstream_timeout=5.0) as servers:
        yield servers


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of each screen go (printed, to look at them after a run)."""
    folder = tmp_path_factory.mktemp("console-screens")
    print(f"console screenshots: {folder}")
    return folder


class Session:
    """A page with the API key entered, recording every request it makes."""

    def __init__(self, page: Any, live: LiveServers) -> None:
        self.page = page
        self.live = live
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, screen: str = "servers") -> None:
        self.page.goto(f"{self.live.api}/console/#{screen}")
        name = screen.split("/")[0]
        self.page.wait_for_selector(f"#panel[data-screen={name!r}], #key-dialog[open]")
        if self.page.is_visible("#key-dialog"):  # asked once per tab
            self.page.fill("#key-input", API_KEY)
            self.page.click("#key-form button")
        self.wait_screen(name)
        self.page.wait_for_function("() => window.consoleMap && window.consoleMap.loaded()")

    def go(self, screen: str) -> None:
        self.page.evaluate(f"location.hash = {('#' + screen)!r}")
        self.wait_screen(screen.split("/")[0])

    def wait_screen(self, name: str) -> None:
        self.page.wait_for_selector(f"#panel[data-screen={name!r}]")

    def wait_tiles(self, source: str) -> None:
        """Wait until the map shows the tiles of ``source``."""
        self.page.wait_for_function(
            f"() => consoleMap.getSource({source!r}) && consoleMap.areTilesLoaded()"
        )

    def map_point(self, lon: float, lat: float) -> tuple[float, float]:
        """Page coordinates of lon/lat on the map."""
        box = self.page.locator("#map").bounding_box()
        xy = self.page.evaluate(
            f"(() => {{ const p = consoleMap.project([{lon}, {lat}]); return [p.x, p.y]; }})()"
        )
        return box["x"] + xy[0], box["y"] + xy[1]

    def click_map(self, lon: float, lat: float) -> None:
        x, y = self.map_point(lon, lat)
        self.page.mouse.move(x, y)
        self.page.mouse.click(x, y)

    def foreign_requests(self) -> list[str]:
        """Requests that left the page's origin (data: and blob: stay in the page)."""
        return [
            u for u in self.requests if not u.startswith((self.live.api + "/", "data:", "blob:"))
        ]

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical axe-core violations of the page as it is now."""
        # the vendored file, by URL: the page's CSP refuses inline scripts
        self.page.add_script_tag(url=f"{self.live.api}/console/vendor/axe-core/axe.min.js")
        found = self.page.evaluate("async () => (await axe.run()).violations")
        return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.fixture(scope="module")
def session(browser: Any, live: LiveServers) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield Session(page, live)
    context.close()
