"""docker-compose.yml stays consistent with the program: every service of ours runs a
command of our CLI with options it accepts, every IMAGERY_PROXY_* variable is a setting
(or one docs/deploy.md marks in progress), and the outputs point at the S3 store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import build_parser
from proxy.config import FIELDS, load_settings

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "IMAGERY_PROXY_"
IN_PROGRESS: set[str] = set()  # issue 16: every backend setting is built


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("entrypoint") == ["imagery-proxy"]
    }


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_replicas_serve_and_workers_work(compose):
    services = ours(compose)
    commands = sorted(service["command"][0] for service in services.values())
    assert commands == ["serve", "serve", "worker", "worker"]
    parser = build_parser()
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for name, service in services.items():
        command = service["command"]
        assert command[0] in subcommands(parser), name
        args = parser.parse_args(command)  # exits (SystemExit) on an unknown option
        if command[0] == "worker":
            assert args.run.__name__ == "cmd_worker", name
            assert "| job worker | `imagery-proxy worker" in deploy
            continue
        assert args.run.__name__ == "cmd_serve" and args.port == 8080, name


def test_every_variable_is_a_setting_and_outputs_go_to_s3(compose):
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for name, service in ours(compose).items():
        env = {k: str(v) for k, v in service["environment"].items() if k.startswith(PREFIX)}
        names = {k[len(PREFIX) :].lower() for k in env}
        assert names - IN_PROGRESS <= FIELDS, f"{name}: not settings: {names - FIELDS}"
        for pending in (names & IN_PROGRESS) - FIELDS:
            assert f"`{pending}`" in deploy and "in progress" in deploy
        known = {k[len(PREFIX) :].lower(): v for k, v in env.items()}
        known = {k: v for k, v in known.items() if k in FIELDS and "${" not in v}
        settings = load_settings(env={}, **known)  # every value converts and validates
        assert settings.output_url.startswith("s3://") and settings.s3_endpoint_url
        assert settings.cache_url.startswith("redis://")
        serving = service["command"][0] == "serve"
        assert (settings.job_workers == 0) == serving, name
        assert "AWS_SECRET_ACCESS_KEY" in service["environment"], name
