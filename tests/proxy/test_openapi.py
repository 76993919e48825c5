"""The OpenAPI document: every route in it and nothing else, built from the validating models."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter

from proxy.api_models import ProbeAsk, ServerConfigBody
from proxy.app import create_app
from proxy.console import CONSOLE_PREFIX
from proxy.openapi import REF
from proxy.routes import ROUTES
from proxy.schemas import ArcGISConfig, WMSConfig, WMTSConfig, XYZConfig
from proxy.upstream.registry import SOURCE_TYPES

METHODS = {"get", "post", "patch", "put", "delete", "head", "options"}


async def document(aiohttp_client, settings) -> dict[str, Any]:
    client = await aiohttp_client(create_app(settings))  # no API key: the document is public
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_every_router_route_is_documented_and_nothing_else(aiohttp_client, settings):
    app = create_app(settings)
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and not r.resource.canonical.startswith(CONSOLE_PREFIX)
    }
    doc = await document(aiohttp_client, settings)
    documented = {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}
    assert served == documented
    assert len(documented) == len(ROUTES)
    op_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(op_ids) == len(set(op_ids))


async def test_document_shape_security_and_refs(aiohttp_client, settings):
    doc = await document(aiohttp_client, settings)
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert doc["security"] == [{"ApiKey": []}, {"Bearer": []}]
    for ref in refs(doc):
        name = re.fullmatch(REF.format(model="(.+)"), ref)
        assert name and name.group(1) in doc["components"]["schemas"], ref
    paths = doc["paths"].items()
    public = {p for p, item in paths for op in item.values() if op.get("security") == []}
    assert public == {"/health", "/ready", "/openapi.json", "/docs"}


async def test_every_error_answer_is_the_spec_error_body(aiohttp_client, settings):
    doc = await document(aiohttp_client, settings)
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message", "hint"} <= set(detail["properties"])
    for path, item in doc["paths"].items():
        for op in item.values():
            statuses = [s for s in op["responses"] if s == "default" or int(s) >= 400]
            assert "default" in statuses, path
            if op.get("security") != []:
                assert "401" in statuses, path
            if "{id}" in path:
                assert "404" in statuses, path
            for status in statuses:
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": REF.format(model="ErrorBody")}


async def test_schemas_are_the_validating_models(aiohttp_client, settings):
    """The document's schemas are those pydantic validates with, not a hand-written copy."""
    doc = await document(aiohttp_client, settings)
    schemas = doc["components"]["schemas"]
    for model in (XYZConfig, WMSConfig, WMTSConfig, ArcGISConfig, ProbeAsk, ServerConfigBody):
        schema = TypeAdapter(model).json_schema(ref_template=REF)
        for name, sub in schema.pop("$defs", {}).items():
            assert schemas[name] == sub
        assert schemas[schema["title"]] == schema
    # every registered server type is one branch of the documented union
    mapping = schemas["ServerConfig"]["discriminator"]["mapping"]
    assert set(mapping) == set(SOURCE_TYPES)
    body = doc["paths"]["/servers"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": REF.format(model="ServerConfig")}


async def test_a_field_constraint_in_the_model_is_in_the_document(aiohttp_client, settings):
    doc = await document(aiohttp_client, settings)
    size = doc["components"]["schemas"]["ProbeAsk"]["properties"]["size"]["anyOf"][0]
    assert (size["minimum"], size["maximum"]) == (16, 2048)
    xyz = doc["components"]["schemas"]["XYZConfig"]
    assert xyz["additionalProperties"] is False and "name" in xyz["required"]


async def test_docs_page_is_public_self_contained_and_lists_every_route(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    for route in ROUTES:
        assert f'<span class="path">{route.path}</span>' in page
        assert route.summary in page
    # nothing is fetched from elsewhere: no script, no remote stylesheet or image
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert '<a href="#schema-ServerConfig">ServerConfig</a>' in page


async def test_other_routes_still_need_a_key(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/servers")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [
        {"size": "inf"},
        {"size": "nan"},
        {"size": 1e308},
        {"lat": "nan", "lon": 0},
        {"lat": 1e308, "lon": 0},
        {"resolution": "-inf"},
        {"resolution": 0},
        {"size": True, "extra": 1},
        [],
    ],
)
async def test_probe_request_is_validated_at_the_edge(api, body):
    created = await api.post(
        "/servers", json={"type": "xyz", "name": "n", "url": "http://127.0.0.1:9/{z}/{x}/{y}"}
    )
    server_id = (await created.json())["id"]
    resp = await api.post(f"/servers/{server_id}/test", json=body)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_input" and error["errors"]


@pytest.mark.parametrize("server", [None, "xyz", ["a"], 3])
async def test_unsaved_probe_needs_a_config_object(api, server):
    resp = await api.post("/servers/test", json={"server": server, "lat": 0, "lon": 0})
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    "headers",
    [{"X-A\r\nB": "v"}, {"X-A": "a\r\nInjected: 1"}, {"X-A": "nul\x00"}, {"é": "v"}, {"": "v"}],
)
async def test_unsendable_headers_are_refused_not_a_500(api, headers):
    """Found by the fuzzer: such headers made the HTTP client raise mid-request (500)."""
    config = {"type": "wmts", "name": "n", "url": "http://127.0.0.1:9/wmts", "headers": headers}
    for path in ("/servers", "/capabilities", "/servers/from-wmts"):
        resp = await api.post(path, json=config)
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["code"] == "invalid_input"
