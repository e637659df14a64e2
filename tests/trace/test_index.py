"""The trace index: what each record answers to, caught up incrementally and idempotently."""

from __future__ import annotations

from pathlib import Path

from node.control.decisions import Decision
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store
from node.oracles.digital_link import asset, product
from node.oracles.quarantine import Quarantine, QuarantineEntry
from node.trace import keys
from node.trace.index import TraceIndex

LOT = product("09506000134352", "L-1").uri()  # on the default (non-canonical) domain
OVEN = asset("950600OVEN-1").canonical_uri()


def _store(url: str, tmp_path: Path) -> Store:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    return Store.open(url, classification, BlobStore(tmp_path))


def test_records_are_indexed_under_their_keys_once(store_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL (QNODE_TEST_POSTGRES_URL)."""
    store = _store(store_url, tmp_path)
    decision = Decision(
        rule_id="oven-cv",
        rule_hash="0x" + "00" * 32,
        fired_at_us=50,
        inputs=(),
        thresholds={},
        computed={"conditions": {"when": {"scope": '{"device":"950600OVEN-1/t","quantity":"t"}'}}},
        action={"kind": "compensate", "line": "oven"},
    )
    store.add_records(
        [
            RecordInput(
                "measurement",
                {"device": "950600OVEN-1/t", "seq": 1, "points": [{"q": "t", "v": 1, "u": "CEL"}]},
                10,
            ),
            RecordInput(
                "setpoint",
                {"equipment": OVEN, "parameter": "t", "value": 1, "unit": "CEL"},
                20,
            ),
            RecordInput(
                "inspection",
                {"part_id": LOT, "characteristic": "c", "value": 1, "unit": "P1", "verdict": "NOK"},
                30,
            ),
            RecordInput(
                "inspection",
                {
                    "part_id": LOT,
                    "characteristic": "c",
                    "value": 1,
                    "unit": "P1",
                    "verdict": "pass",
                },
                31,
            ),
            RecordInput(
                "incoming_lot",
                {"supplier": "0xAb", "lot": LOT, "value": 2, "lsl": 0, "usl": 1},
                40,
            ),
            RecordInput("genealogy", {"output": LOT, "inputs": []}, 45),
            decision.to_record_input(),
        ]
    )
    Quarantine(store).add([QuarantineEntry(60, "mqtt", "950600OVEN-1/t", "nan", "NaN", b"")])
    index = TraceIndex(store, {"oven": OVEN})
    assert index.catch_up() > 0
    assert index.catch_up() == 0
    with store.transaction() as connection:
        oven = index.rows(connection, keys.key(keys.EQUIPMENT, "950600OVEN-1"))
        assert [r.kind for r in oven] == ["measurement", "setpoint", "decision", "quarantine"]
        assert [r.observed_at_us for r in oven] == [10, 20, 50, 60]
        assert [r.observed_at_us for r in index.rows(connection, oven[0].key, 15, 55)] == [20, 50]
        judged = index.rows(connection, keys.key(keys.SUBJECT, keys.canonical(LOT)))
        assert [r.observed_at_us for r in judged] == [30, 40]  # not the passing inspection
        made = index.keyed(connection, [keys.key(keys.OUTPUT, keys.canonical(LOT))])
        assert len(made) == 1
    store.add_records(
        [RecordInput("setpoint", {"equipment": OVEN, "parameter": "t", "value": 2}, 70)]
    )
    assert index.catch_up() >= 1
    TraceIndex(store).catch_up()  # another process' index object: nothing twice
    with store.transaction() as connection:
        assert len(index.rows(connection, keys.key(keys.EQUIPMENT, "950600OVEN-1"))) == 5
    store.close()


def test_devices_and_equipment_meet_by_key() -> None:
    assert keys.device_equipment("4098765CRYST-3/pid") == "4098765CRYST-3"
    assert keys.device_equipment("https://id.gs1.org/8004/4098765CRYST-3") == "4098765CRYST-3"
    assert keys.equipment_key("https://example.com/8004/4098765CRYST-3") == "4098765CRYST-3"
    assert keys.equipment_key("crystallizer-3") == "crystallizer-3"
    assert keys.canonical(LOT) == product("09506000134352", "L-1").canonical_uri()
    assert keys.lot_of(product("09506000134352", "L-1", "S1").uri()) == keys.canonical(LOT)
    assert keys.lot_of(LOT) is None
