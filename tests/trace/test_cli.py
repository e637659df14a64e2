"""``qnode trace``: the tree with anomalies, the candidates and the time taken; JSON for programs;
an SVG picture; the tokens file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import node.cli
from node.errors import ConfigError
from node.keys import hardhat_dev_key
from node.runtime import Node
from tests.trace.world import CRYSTALLIZER, ITEM_1, SECRETS, World


@pytest.fixture
def tokens_file(world: World, tmp_path: Path) -> Path:
    file = tmp_path / "tokens.toml"
    file.write_text(
        "".join(f'"{member}" = "{token}"\n' for member, token in world.tokens.items()),
        encoding="utf-8",
    )
    return file


@pytest.fixture(autouse=True)
def cygnus(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``qnode trace`` opens Cygnus' node on the test world's embedded chain."""
    monkeypatch.setattr(
        node.cli,
        "_open",
        lambda _config: Node(world.settings["cygnus"], world.chain, hardhat_dev_key(0)),
    )


def test_json_for_programs(tokens_file: Path, world: World) -> None:
    result = CliRunner().invoke(
        node.cli.app, ["trace", ITEM_1, "--json", "--tokens", str(tokens_file)]
    )
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["format"] == "qnode-trace/1"
    assert trace["elapsedMs"] > 0
    top = next(a for a in trace["anomalies"] if a["uid"] == trace["candidates"][0]["anomaly"])
    assert top["kind"] == "parameter_drift"
    assert top["details"]["equipment"] == CRYSTALLIZER
    assert top["atMs"] == world.drift_onset_us // 1000
    assert top["verification"]["status"] == "verified"
    for secret in SECRETS:
        assert secret not in result.stdout


def test_the_tree_the_candidates_and_the_time_for_people(tokens_file: Path, tmp_path: Path) -> None:
    picture = tmp_path / "trace.svg"
    result = CliRunner().invoke(
        node.cli.app, ["trace", ITEM_1, "--tokens", str(tokens_file), "--svg", str(picture)]
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "genealogy" in text and "lot CATH-7 (material lot, Sierra Cathodes" in text
    assert "root-cause candidates" in text
    assert "#1 [" in text and "process parameter drift of pid_kp on asset 4098765CRYST-3" in text
    assert "Delta Separators: unavailable" in text
    assert "trace time:" in text
    assert "<svg" in picture.read_text(encoding="utf-8")


def test_without_tokens_the_suppliers_parts_are_refused_and_said_so() -> None:
    result = CliRunner().invoke(node.cli.app, ["trace", ITEM_1, "--json"])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    sierra = next(m for m in trace["members"] if m["name"] == "Sierra Cathodes")
    assert sierra["status"] == "failed"
    assert "answered 401" in sierra["detail"] and "holds no token" in sierra["detail"]


def test_a_bad_tokens_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.toml"
    bad.write_text('"not-an-address" = "x"\n', encoding="utf-8")
    result = CliRunner().invoke(node.cli.app, ["trace", ITEM_1, "--tokens", str(bad)])
    assert isinstance(result.exception, ConfigError)


def test_a_uri_that_is_not_a_product_is_an_identifier_error() -> None:
    from node.errors import IdentifierError

    result = CliRunner().invoke(node.cli.app, ["trace", "https://id.gs1.org/8004/950600X-1"])
    assert isinstance(result.exception, IdentifierError)
