"""Decisions as records, and their replay from the stored inputs: an auditor recomputes every
value, and an input that was altered after the decision is reported as tampered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.control.decisions import Decision, Firing, replay
from node.control.observations import (
    IncomingLot,
    Inspection,
    Measurement,
    observations_from_records,
)
from node.control.rules import RuleEngine, RuleSet, commit_firings, load_rules
from node.errors import ControlError, RecordError
from node.offchain.records import RecordInput, StoredRecord, canonical_json, content_hash
from node.offchain.store import Store
from node.runtime import open_store
from node.settings import load_settings

EXAMPLE = Path(__file__).parent / "data" / "rules-example.yaml"
US = 1_000_000
NOV_1 = 1_793_491_200 * US  # 2026-11-01T00:00:00Z
OCT_1 = NOV_1 - 31 * 86400 * US
HIGH = (98.0, 102.0, 100.0, 99.0, 101.0)
SIGNER = "0x00000000000000000000000000000000000000aa"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "qnode.toml"
    path.write_text('[member]\nname = "Aster Motors"\nrole = "manufacturer"\n')
    return path


@pytest.fixture
def store(config: Path) -> Iterator[Store]:
    opened = open_store(load_settings(config))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def rules() -> RuleSet:
    return load_rules(EXAMPLE)


def measurement(device: str, quantity: str, value: float, unit: str, at: int) -> RecordInput:
    fields = {"device": device, "seq": at, "points": [{"q": quantity, "v": value, "u": unit}]}
    return RecordInput("measurement", fields, at)


def lot(supplier: str, value: float, at: int) -> RecordInput:
    fields = {
        "supplier": supplier, "part": "P-100", "characteristic": "diameter", "lot": f"L{at}",
        "value": value, "unit": "MMT", "lsl": 9.95, "usl": 10.05, "inspector_id": "emp-7",
    }  # fmt: skip
    return RecordInput("incoming_lot", fields, at)


def inspection(process: str, verdict: str, at: int) -> RecordInput:
    fields = {
        "part_id": f"part-{at}", "characteristic": process, "value": 1.0, "unit": "MMT",
        "verdict": verdict, "inspector_id": "emp-9",
    }  # fmt: skip
    return RecordInput("inspection", fields, at)


def stored_stream(store: Store) -> list[StoredRecord]:
    """Records that make every rule of the example file fire once."""
    start = NOV_1 + 86400 * US
    inputs = [
        measurement("coater-1/gauge-1", "thickness", v, "4H", start + i * US)
        for i, v in enumerate(HIGH * 3)
    ]
    inputs += [lot("0xsupplier", 10.1, start + (100 + i) * US) for i in range(5)]
    inputs += [
        inspection("process-b", "fail" if i % 10 == 0 else "pass", OCT_1 + i * US)
        for i in range(100)
    ]
    inputs += [
        inspection("process-b", "fail" if i % 4 == 0 else "pass", start + (200 + i) * US)
        for i in range(60)
    ]
    inputs += [
        measurement(
            "press-a/1",
            "diameter",
            10.0 + (0.015 if i % 2 else -0.015),
            "MMT",
            start + (300 + i) * US,
        )
        for i in range(50)
    ]
    inputs.append(measurement("cold-store-f", "temperature", 0.0, "FAH", start + 400 * US))
    return store.add_records(inputs)


def fire_and_commit(store: Store, rules: RuleSet) -> list[Firing]:
    engine = RuleEngine(rules, signer=SIGNER)
    records = stored_stream(store)
    firings = engine.observe(observations_from_records(records))
    commit_firings(store, engine, firings)
    return firings


def records_of(store: Store, decision: Decision) -> dict[str, StoredRecord]:
    found = store.records([record_id for record_id, _ in decision.inputs])
    return {record.record_id: record for record in found}


def stored_decision(store: Store, firing: Firing) -> Decision:
    return Decision.from_record(store.record(firing.decision.record_id))


# -- observations from records ----------------------------------------------------------------


def test_observations_from_records(store: Store) -> None:
    genealogy = RecordInput("genealogy", {"output": "lot-1", "inputs": ["lot-0"]}, NOV_1)
    written = store.add_records(
        [measurement("g", "thickness", 85, "4H", NOV_1), lot("acme", 10.1, NOV_1),
         inspection("coating", " FAIL ", NOV_1), genealogy]
    )  # fmt: skip
    by_id = {record.record_id: record for record in store.records([r.record_id for r in written])}
    read_back = [by_id[record.record_id] for record in written]  # fields parsed from JSON
    for records in (written, read_back):
        found = observations_from_records(records)
        assert [type(o) for o in found] == [Measurement, IncomingLot, Inspection]
        measured, incoming, inspected = found
        assert isinstance(measured, Measurement) and measured.points == (("thickness", 85.0, "4H"),)
        assert isinstance(measured.points[0][1], float)
        assert measured.record_id == written[0].record_id
        assert measured.content_hash == written[0].content_hash
        assert isinstance(incoming, IncomingLot)
        assert (incoming.supplier, incoming.value, incoming.usl) == ("acme", 10.1, 10.05)
        assert isinstance(inspected, Inspection)
        assert (inspected.process, inspected.verdict) == ("coating", "fail")
    with pytest.raises(RecordError, match="is a 'genealogy' record, not 'measurement'"):
        Measurement.from_record(written[3])


# -- decisions as records ---------------------------------------------------------------------


def test_a_decision_is_a_record_whose_id_is_its_hash(store: Store, rules: RuleSet) -> None:
    firings = fire_and_commit(store, rules)
    assert {f.rule_id for f in firings} == {
        "coating-cv", "incoming-usl", "supplier-corrective-task", "capability-and-defects",
        "cold-chain",
    }  # fmt: skip
    for firing in firings:
        decision = firing.decision
        record = store.record(decision.record_id)
        assert record.record_type == "decision" and record.observed_at_us == decision.fired_at_us
        assert record.content_hash == decision.record_content_hash
        assert set(record.public) == {
            "rule_id", "rule_hash", "inputs", "thresholds", "computed", "action", "signer",
        }  # fmt: skip
        read = Decision.from_record(record)
        assert read.decision_hash == decision.decision_hash == record.record_id
        assert read.signer == SIGNER and read.rule_hash == rules.digest
        assert decision.to_record_input().observed_at_us == decision.fired_at_us


def test_the_decision_hash_covers_every_field() -> None:
    decision = Decision(
        rule_id="r",
        rule_hash="0x" + "1" * 64,
        fired_at_us=5,
        inputs=(("0x" + "2" * 64, "0x" + "3" * 64),),
        thresholds={"condition": {}},
        computed={"conditions": {}},
        action={"kind": "emit", "signal": "s"},
    )
    assert decision.decision_hash == replace(decision).decision_hash
    variants = [
        replace(decision, rule_id="q"),
        replace(decision, fired_at_us=6),
        replace(decision, signer="0xabc"),
        replace(decision, action={"kind": "emit", "signal": "t"}),
        replace(decision, inputs=()),
        replace(decision, computed={"conditions": {"x": 1}}),
    ]
    assert len({v.decision_hash for v in variants} | {decision.decision_hash}) == 7


# -- replay -----------------------------------------------------------------------------------


def test_every_decision_replays_from_its_stored_inputs(store: Store, rules: RuleSet) -> None:
    for firing in fire_and_commit(store, rules):
        decision = stored_decision(store, firing)
        result = replay(decision, records_of(store, decision), decision.record_id)
        assert result.confirmed, (firing.rule_id, result.verdict, result.differences)
        assert result.verdict == "CONFIRMED: same inputs, same values, the rule fires"
        assert all(check.status == "ok" for check in result.inputs)
        assert result.recomputed is not None
        assert result.recomputed.keys() == decision.computed["conditions"].keys()


def test_a_tampered_input_is_reported(store: Store, rules: RuleSet) -> None:
    firing = next(f for f in fire_and_commit(store, rules) if f.rule_id == "coating-cv")
    decision = stored_decision(store, firing)
    victim = decision.inputs[7][0]
    # Someone edits a stored thickness and, to cover it, the stored content hash as well.
    record = store.record(victim)
    edited = {**record.public, "points": [{"q": "thickness", "v": 120.0, "u": "4H"}]}
    forged = replace(record, public=edited)
    with store.transaction() as connection:
        connection.exec_driver_sql(
            "UPDATE records SET public_json = ?, content_hash = ? WHERE record_id = ?",
            (canonical_json(edited), content_hash(forged.canonical()), victim),
        )
    result = replay(decision, records_of(store, decision), decision.record_id)
    assert result.tampered == (victim,)
    assert not result.confirmed and result.fires is None
    assert result.verdict.startswith("TAMPERED: 1 input record(s)")


def test_a_missing_input_is_reported(store: Store, rules: RuleSet) -> None:
    firing = next(f for f in fire_and_commit(store, rules) if f.rule_id == "cold-chain")
    decision = stored_decision(store, firing)
    result = replay(decision, {}, decision.record_id)
    assert result.missing == (decision.inputs[0][0],)
    assert result.verdict.startswith("INCOMPLETE")


def test_a_decision_that_the_inputs_do_not_support_is_not_reproduced(
    store: Store, rules: RuleSet
) -> None:
    firing = next(f for f in fire_and_commit(store, rules) if f.rule_id == "coating-cv")
    decision = stored_decision(store, firing)
    records = records_of(store, decision)
    # A decision claiming other computed values.
    computed = json.loads(json.dumps(decision.computed))
    computed["conditions"]["when"]["subgroups"][0]["cv"] = 0.02
    claimed = replace(decision, computed=computed)
    result = replay(claimed, records)
    assert result.differences == ("when",) and not result.confirmed
    assert result.fires is True
    # A decision claiming a threshold under which the inputs do not fire the rule.
    thresholds = json.loads(json.dumps(decision.thresholds))
    thresholds["condition"]["threshold"]["value"] = 2.0  # CV above 2 %: 1.58 % is not
    result = replay(replace(decision, thresholds=thresholds), records)
    assert result.fires is False and not result.differences
    assert result.verdict == "NOT REPRODUCED: the condition does not hold on these inputs"
    # A decision pointing at a value the rule does not read.
    computed = json.loads(json.dumps(decision.computed))
    computed["conditions"]["when"]["subgroups"][0]["points"][0] = [0, 5]
    result = replay(replace(decision, computed=computed), records)
    assert result.problem == f"record {decision.inputs[0][0]} has no point 5"
    # The stored decision replayed under another id: the decision record was altered.
    result = replay(decision, records, "0x" + "0" * 64)
    assert result.decision_altered and result.verdict.startswith("TAMPERED: the decision record")


# -- qnode rules replay -----------------------------------------------------------------------

runner = CliRunner()


def replay_command(config: Path, decision_id: str, *args: str) -> tuple[str, BaseException | None]:
    result = runner.invoke(app, ["rules", "replay", decision_id, "-c", str(config), *args])
    return result.output, result.exception


def test_rules_replay_prints_the_decision_path(config: Path, store: Store, rules: RuleSet) -> None:
    firing = next(f for f in fire_and_commit(store, rules) if f.rule_id == "capability-and-defects")
    decision_id = firing.decision.record_id
    output, error = replay_command(config, decision_id)
    assert error is None, output
    assert f"decision {decision_id}" in output
    assert "rule     capability-and-defects" in output and rules.digest in output
    assert "inputs" in output and "... and 190 more input(s), 0 of them not ok" in output
    assert "when.all[0]" in output and '"metric": "cpk"' in output
    assert "when.all[1]" in output and "2026-11" in output
    assert output.rstrip().endswith("verdict: CONFIRMED: same inputs, same values, the rule fires")


def test_rules_replay_of_a_tampered_decision_fails(
    config: Path, store: Store, rules: RuleSet
) -> None:
    firing = next(f for f in fire_and_commit(store, rules) if f.rule_id == "cold-chain")
    decision = firing.decision
    with store.transaction() as connection:
        connection.exec_driver_sql(
            "UPDATE records SET public_json = ? WHERE record_id = ?",
            (json.dumps({"device": "cold-store-f", "points": [{"q": "temperature", "v": -30.0,
                         "u": "FAH"}]}), decision.inputs[0][0]),
        )  # fmt: skip
    output, error = replay_command(config, decision.record_id)
    assert isinstance(error, ControlError)
    assert "tampered" in output and "verdict: TAMPERED" in output
    assert str(error) == (
        f"decision {decision.record_id} is not reproduced: TAMPERED: 1 input record(s) differ "
        "from the decision's hash"
    )
