"""The source registry: one table of server types for validation, the CLI and dispatch."""

from __future__ import annotations

from typing import get_args

import pytest

from proxy.cli import build_parser
from proxy.errors import InvalidInput
from proxy.schemas import ServerConfig
from proxy.upstream.registry import SERVER_TYPES, SOURCE_TYPES, describe, parse_config


def test_the_static_config_type_is_the_table():
    assert set(get_args(ServerConfig)) == {t.schema for t in SOURCE_TYPES.values()}
    for name, kind in SOURCE_TYPES.items():
        assert get_args(kind.schema.model_fields["type"].annotation) == (name,)


def test_cli_type_choices_come_from_the_table(capsys):
    parser = build_parser()
    for name in SERVER_TYPES:
        assert parser.parse_args(["servers", "add", "--type", name]).type == name
    with pytest.raises(SystemExit):
        parser.parse_args(["servers", "add", "--type", "tms"])
    assert "invalid choice: 'tms'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", [None, "tms", ["xyz"], {"x": 1}])
def test_unknown_types_are_refused_with_the_list(kind):
    with pytest.raises(InvalidInput, match="unknown server type") as info:
        parse_config({"type": kind, "name": "a", "url": "http://h/{z}/{x}/{y}"})
    assert info.value.hint == "type must be one of xyz, wms, wmts, arcgis"


def test_field_errors_name_the_field_without_the_type_tag():
    with pytest.raises(InvalidInput) as info:
        parse_config({"type": "xyz", "name": "a", "url": "http://h/{z}/{x}/{y}", "min_zoom": -1})
    assert info.value.extra["errors"][0]["field"] == "min_zoom"


async def test_describe_dispatches_on_the_type(upstream_ctx):
    config = parse_config({"type": "xyz", "name": "a", "url": "http://h/{z}/{x}/{y}"})
    described = await describe(config, upstream_ctx)
    assert described["type"] == "xyz" and described["max_zoom"] == 19
