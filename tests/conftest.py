"""Shared fixtures: the ground-truth raster and its renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.groundtruth import write_ground_truth
from tests.upstreams.render import GroundTruthRenderer


@pytest.fixture(scope="session")
def ground_truth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ground_truth(tmp_path_factory.mktemp("gt") / "ground_truth.tif")


@pytest.fixture(scope="session")
def renderer(ground_truth: Path) -> GroundTruthRenderer:
    return GroundTruthRenderer(ground_truth)
