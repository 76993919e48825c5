"""Fuzz every operation of the OpenAPI document with schemathesis (SPEC §7).

The service runs for real on 127.0.0.1 in a background thread, next to a fake XYZ
upstream; schemathesis sends generated requests (valid and invalid) over HTTP and checks
each answer: no 500, the status, media type and body documented, every error in the
SPEC §7 shape, and no stored secret in any answer. Upstream URLs the fuzzer makes up
either point at loopback (allowed) or elsewhere (refused by the address policy, or a
name that does not resolve): nothing leaves the machine, and the upstream timeouts are
short so nothing waits. Examples are bounded so the whole run takes well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from proxy.openapi import build_document
from proxy.routes import ROUTES
from tests.live_servers import LiveServers

pytestmark = pytest.mark.fuzz

API_KEY = "fuzz-key"
SECRET = "Fuzz-Secret-7f3a91"  # in a stored header, query parameter and password
PASSWORD = "Pw-6c0e2d"
AUTH = {"X-API-Key": API_KEY}
EXAMPLES = 20  # per operation and mode: about 600 requests in all


@pytest.fixture(scope="module")
def live(tmp_path_factory, renderer) -> Iterator[LiveServers]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    with LiveServers(
        data_dir,
        renderer,
        API_KEY,
        preview_size=64,
        upstream_timeout=2.0,
        upstream_connect_timeout=1.0,
        breaker_cooldown=0.5,
    ) as servers:
        yield servers


@pytest.fixture(scope="module")
def stored(live) -> dict[str, str]:
    """Servers holding the known secrets, for the fuzzer's ``{id}`` paths to hit."""
    configs = {
        "xyz": {
            "type": "xyz",
            "name": "fuzz xyz",
            "url": live.upstream + "/a/tiles/{z}/{x}/{y}.png",
            "headers": {"X-Secret": SECRET},
            "params": {"token": SECRET},
            "preview": {"lat": 45.0, "lon": 6.0},
            "resolution": 100.0,
        },
        "arcgis": {
            "type": "arcgis",
            "name": "fuzz arcgis",
            "url": live.upstream + "/arcgis/rest/services/x/MapServer",
            "credentials": f"user:{PASSWORD}",
        },
    }
    ids = {}
    for kind, config in configs.items():
        resp = requests.post(live.api + "/servers", json=config, headers=AUTH, timeout=10)
        assert resp.status_code == 201, resp.text
        ids[kind] = resp.json()["id"]
    return ids


UPSTREAM_PATHS = {
    "xyz": "/a/tiles/{z}/{x}/{y}.png",
    "wms": "/wms",
    "wmts": "/wmts",
    "arcgis": "/arcgis/rest/services/x/MapServer",
}


def aim_at_loopback(body: Any, upstream: str) -> None:
    """Point most generated server configs at the fake upstream, so requests reach it.

    Generated URLs are almost never valid, so without this the upstream-touching code
    would only ever see validation errors. Some keep their URL, to fuzz validation too.
    """
    if isinstance(body, dict) and isinstance(body.get("server"), dict):
        body = body["server"]
    if not isinstance(body, dict) or body.get("type") not in UPSTREAM_PATHS:
        return
    if len(str(body.get("name", ""))) % 3 != 0:
        body["url"] = upstream + UPSTREAM_PATHS[body["type"]]


def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500: 5xx only for an upstream's failure (502, 503, 504), which fuzzing provokes."""
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text
    return None


def spec_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is ``{"error": {"code", "message", ...}}`` with strings (SPEC §7)."""
    if response.status_code < 400:
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"error body not in the SPEC §7 shape: {body!r}"
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str), body
    assert error.get("code") != "internal", body
    return None


def no_secret(ctx: Any, response: Any, case: Any) -> bool | None:
    """No stored secret, in any answer, ever."""
    text = response.content.decode("utf-8", "replace")
    for secret in (SECRET, PASSWORD):
        assert secret not in text, f"a stored secret is in the answer: {text[:500]}"
        assert secret not in str(response.headers), "a stored secret is in the headers"
    return None


CHECKS = [
    no_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    spec_error_shape,
    no_secret,
]

# The document as the service builds it; schemathesis' pytest plugin is not used (it does
# not support this pytest), hypothesis drives each operation's strategy directly.
SCHEMA = schemathesis.openapi.from_dict(build_document(ROUTES))
# Invalid requests only exist for operations that take some input.
CASES = [
    (r.path, r.method, mode)
    for r in ROUTES
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or r.body is not None or r.query or "{" in r.path
]


@pytest.mark.parametrize(
    ("path", "method", "mode"), CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES]
)
def test_api_fuzz(live, stored, path, method, mode) -> None:
    strategy = SCHEMA[path][method].as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: a failure is reported as found (shrinking one took 6 min).
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # Half the ``{id}`` paths name a stored server, so its views and tests are fuzzed
        # too (never for DELETE: the secrets must stay stored for the whole run).
        if "id" in (case.path_parameters or {}) and method != "DELETE":
            if len(str(case.path_parameters["id"])) % 2 == 0:
                case.path_parameters["id"] = stored["xyz"]
        if mode == GenerationMode.POSITIVE:  # aiming could repair what a negative case broke
            aim_at_loopback(case.body, live.upstream)
        case.call_and_validate(base_url=live.api, headers=AUTH, checks=CHECKS, timeout=30)

    run()
