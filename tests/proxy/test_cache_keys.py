"""Server fingerprints: what changes pixels changes the key; credentials enter only keyed."""

from __future__ import annotations

import os
import stat

import pytest

from proxy.cache.keys import Fingerprints
from proxy.services import load_fingerprint_key
from proxy.upstream.arcgis import open_arcgis
from proxy.upstream.registry import parse_config
from tests.upstreams.arcgis import PASSWORD, STATE, USER, arcgis_app

KEYS = Fingerprints(b"installation-secret")
BASE = {
    "xyz": {"type": "xyz", "name": "a", "url": "http://h/{z}/{x}/{y}.png"},
    "wms": {"type": "wms", "name": "a", "url": "http://h/wms"},
    "wmts": {"type": "wmts", "name": "a", "url": "http://h/wmts"},
    "arcgis": {"type": "arcgis", "name": "a", "url": "http://h/arcgis/rest/services/O/MapServer"},
}


def fingerprint(kind: str, **changes) -> str:
    return KEYS.config(parse_config({**BASE[kind], **changes}))


PIXEL_CHANGES = [
    ("xyz", {"url": "http://h/b/{z}/{x}/{y}.png"}),
    ("xyz", {"url": "http://{s}.h/{z}/{x}/{y}.png", "subdomains": ["a", "b"]}),
    ("xyz", {"tile_size": 512}),
    ("xyz", {"min_zoom": 3}),
    ("xyz", {"max_zoom": 12}),
    ("xyz", {"headers": {"X-Key": "k"}}),
    ("xyz", {"params": {"key": "k"}}),
    ("wms", {"layers": ["roads"]}),
    ("wms", {"styles": ["dark"]}),
    ("wms", {"format": "image/jpeg"}),
    ("wms", {"crs": "EPSG:4326"}),
    ("wms", {"version": "1.1.1"}),
    ("wmts", {"layer": "ortho"}),
    ("wmts", {"style": "default"}),
    ("wmts", {"tile_matrix_set": "swiss"}),
    ("wmts", {"format": "image/png"}),
    ("wmts", {"max_zoom": 9}),
    ("arcgis", {"format": "jpg"}),
    ("arcgis", {"credentials": "alice:pw"}),
]


@pytest.mark.parametrize(("kind", "changes"), PIXEL_CHANGES)
def test_a_pixel_field_changes_the_fingerprint(kind, changes):
    assert fingerprint(kind, **changes) != fingerprint(kind)


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "other"},
        {"resolution": 0.5},
        {"preview": {"lat": 46.5, "lon": 6.6}},
        {"max_concurrency": 2},
        {"rate_limit": 3.0},
        {"cache_ttl": 60},
        {"skip_ssl": True},
    ],
)
@pytest.mark.parametrize("kind", sorted(BASE))
def test_other_fields_keep_the_fingerprint(kind, changes):
    assert fingerprint(kind, **changes) == fingerprint(kind)


def test_the_fingerprint_is_stable_and_ignores_key_order():
    config = {**BASE["xyz"], "headers": {"A": "1", "B": "2"}, "params": {"x": "1", "y": "2"}}
    swapped = {**BASE["xyz"], "params": {"y": "2", "x": "1"}, "headers": {"B": "2", "A": "1"}}
    again = Fingerprints(b"installation-secret")
    assert again.config(parse_config(swapped)) == KEYS.config(parse_config(config))


def test_header_and_param_names_and_values_count():
    one = fingerprint("xyz", headers={"X-Key": "v"})
    assert one != fingerprint("xyz", headers={"X-Other": "v"})
    assert one != fingerprint("xyz", headers={"X-Key": "w"})
    assert fingerprint("xyz", params={"a": "1"}) != fingerprint("xyz", params={"a": "2"})


def test_two_passwords_give_two_keys():
    one = fingerprint("arcgis", credentials="alice:first-password")
    two = fingerprint("arcgis", credentials="alice:second-password")
    assert one != two


def test_credentials_enter_only_through_the_installation_key():
    config = parse_config({**BASE["arcgis"], "credentials": "alice:pw", "headers": {"K": "v"}})
    other_installation = Fingerprints(b"another-secret")
    # Same config, other secret: another key, so the key is no hash of the password alone.
    assert other_installation.config(config) != KEYS.config(config)
    # Without credentials the key does not depend on the installation.
    plain = parse_config(BASE["wms"])
    assert other_installation.config(plain) == KEYS.config(plain)


def test_access_fingerprint_ignores_the_layer_but_not_the_credentials():
    wms = parse_config(BASE["wms"])
    assert KEYS.access(wms) == KEYS.access(parse_config({**BASE["wms"], "layers": ["roads"]}))
    assert KEYS.access(wms) != KEYS.access(parse_config({**BASE["wms"], "params": {"k": "v"}}))


async def test_arcgis_info_and_token_are_cached_apart_under_keys_without_secrets(
    serve, renderer, upstream_ctx
):
    app = arcgis_app(renderer)
    services = await serve(app) + "/arcgis/rest/services/"
    config = parse_config(
        {
            "type": "arcgis",
            "name": "t",
            "url": services + "Secure/Ortho/MapServer",
            "credentials": f"{USER}:{PASSWORD}",
        }
    )
    await open_arcgis(config, upstream_ctx)
    await open_arcgis(config, upstream_ctx)
    assert app[STATE].generated() == 1
    assert len(upstream_ctx.service_info) == 1 and len(upstream_ctx.tokens) == 1
    assert len(upstream_ctx.capabilities) == 0
    keys = [*upstream_ctx.service_info, *upstream_ctx.tokens]
    assert not any(PASSWORD in key or USER in key for key in keys)


def test_the_installation_key_is_made_once_and_private(settings):
    settings.data_dir.mkdir(parents=True)
    first = load_fingerprint_key(settings)
    assert len(first) == 32 and load_fingerprint_key(settings) == first
    mode = os.stat(settings.data_dir / "fingerprint-key").st_mode
    assert stat.S_IMODE(mode) == 0o600
