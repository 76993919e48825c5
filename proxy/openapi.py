"""The OpenAPI 3.1 document, built from the route table and the validating pydantic models.

Each :class:`proxy.routes.route.Route` names its request body and answer models; this module
turns them into JSON Schema (2020-12, which OpenAPI 3.1 uses as is) and lays the routes
out as operations. Nothing here is written by hand per route, so a route added to the
table is documented, and a field added to a model shows up, without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from proxy.api_models import ErrorBody

if TYPE_CHECKING:
    from proxy.routes.route import Route

API_DOC = web.AppKey("api_doc", dict)

REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"\{(\w+)\}")
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"},
}
ERROR_REASONS = {
    400: "malformed request: not JSON, or a body too large",
    401: "no valid API key",
    403: "the upstream address is refused by the outbound address policy",
    404: "no such resource",
    409: "the asked resolution is finer than a read allows",
    410: "the resource's server was deleted",
    413: "the read is past its pixel or upstream-request budget",
    422: "well-formed but invalid input, or an upstream answer that cannot be used",
    502: "the upstream answered with an error",
    503: "the upstream or the catalog is unavailable",
    504: "the upstream did not answer in time",
}
DESCRIPTION = """\
Tile proxy and imagery-streaming service for remote XYZ, WMS, WMTS and ArcGIS servers.

Every request but the public ones (`/health`, `/ready`, `/openapi.json`, `/docs`) needs an
API key, in the `X-API-Key` header or as `Authorization: Bearer <key>`. Every error answer
is `{"error": {"code", "message", "hint"}}` (schema `ErrorBody`); the `code` is stable.
Secrets in server configs (headers, query parameters, credentials) are write-only: views
show `***`, and sending `***` back keeps the stored value.
"""


class Schemas:
    """The ``components/schemas`` being built: every model once, under one name."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def ref(self, model: Any) -> dict[str, Any]:
        """A reference to ``model``'s schema (inline when it has no title to name it by)."""
        schema = TypeAdapter(model).json_schema(ref_template=REF, mode="validation")
        for name, sub in schema.pop("$defs", {}).items():
            self._add(name, sub)
        name = model.__name__ if _is_model(model) else schema.get("title")
        if not isinstance(name, str):
            return schema
        self._add(name, schema)
        return {"$ref": REF.format(model=name)}

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        if self.named.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both named {name!r}")


def _is_model(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, BaseModel)


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    schemas = Schemas()
    error = {"application/json": {"schema": schemas.ref(ErrorBody)}}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas, error)
    return {
        "openapi": "3.1.0",
        "info": {"title": "imagery-proxy", "version": _version(), "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": schemas.named, "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }


def _operation(route: Route, schemas: Schemas, error: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
    }
    doc = (route.handler.__doc__ or "").strip()
    if doc:
        op["description"] = doc
    params = [_path_param(name) for name in PATH_PARAM.findall(route.path)]
    params += [dict(p) for p in route.query]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": schemas.ref(route.body)}},
        }
    if route.public:
        op["security"] = []
    op["responses"] = {str(route.ok): _success(route, schemas)}
    for status, model in route.other_ok:
        op["responses"][str(status)] = {
            "description": route.summary,
            "content": {"application/json": {"schema": schemas.ref(model)}},
        }
    for status in error_statuses(route):
        op["responses"][str(status)] = {"description": ERROR_REASONS[status], "content": error}
    op["responses"]["default"] = {"description": "any other error", "content": error}
    return op


def error_statuses(route: Route) -> list[int]:
    """The error statuses a route can answer: its own, and those implied by its shape."""
    statuses = set(route.errors)
    if not route.public:
        statuses.add(401)
    if route.body is not None:
        statuses.update((400, 422))
    if PATH_PARAM.search(route.path):
        statuses.add(404)
    return sorted(statuses)


def _success(route: Route, schemas: Schemas) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": route.summary}
    if route.answer is None:
        return answer
    if isinstance(route.answer, str):  # a media type that is not JSON, e.g. the docs page
        answer["content"] = {
            media: {"schema": {"type": "string"}} for media in (route.answer, *route.also)
        }
        return answer
    answer["content"] = {"application/json": {"schema": schemas.ref(route.answer)}}
    for media in route.also:
        answer["content"][media] = {"schema": {"type": "string", "contentMediaType": media}}
    return answer


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _version() -> str:
    try:
        return metadata.version("imagery-proxy")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0.0.0"
