"""``qnode resilience -c CONFIG [--json]`` on the world's member (its chain connection reused:
the world's chain lives in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node import cli
from node.api.pages_resilience import ResilienceModel
from node.runtime import Node
from node.settings import load_settings
from tests.control.plant import PASSWORD
from tests.resilience.world import ResilienceWorld


@pytest.fixture
def config(world: ResilienceWorld, monkeypatch: pytest.MonkeyPatch) -> Path:
    connection = world.aster.connection

    def opened(path: Path) -> Node:
        return Node.open(load_settings(path), PASSWORD, connection)

    monkeypatch.setattr(cli, "_open", opened)
    return world.plant.config_file("aster")


def test_the_command_prints_every_metric(config: Path) -> None:
    result = CliRunner().invoke(cli.app, ["resilience", "-c", str(config), "--definitions"])
    assert result.exit_code == 0, result.output
    for text in (
        "Quality-disturbance recovery cycle",
        "line: coater",
        "line: packing",
        "supplier: Borealis Cells",
        "High-risk suppliers",
        "100 % of 1 supplier(s) high-risk",
        "Task handling time",
        "Contingency-plan freshness",
        "cathode-shortage",
        "STALE",
        "Supplier capability radar",
        "Change management",
        "PPM trend",
        "median and p90",  # a definition
    ):
        assert text in result.output, text


def test_the_command_prints_the_json_the_api_serves(config: Path) -> None:
    result = CliRunner().invoke(cli.app, ["resilience", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    ResilienceModel.model_validate(document)
    assert len(document["qrrc"]["disturbances"]) == 4
