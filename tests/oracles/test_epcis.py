"""Records to EPCIS 2.0 events and back, with eventIDs checked against GS1's reference."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.errors import EpcisError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy, upstream
from node.offchain.records import RecordInput
from node.offchain.store import Store
from node.oracles.digital_link import asset, logistic_unit, product
from node.oracles.epcis import EpcisProfile, export, import_document, validate_document
from tests.oracles.test_event_hash import DATA, reference_hashes

GLN = "9506000164908"
PROFILE = EpcisProfile.of_glns(
    GLN, "0614141000012", devices={"gauge-07": asset("4000001111-g7").uri()}
)
CELL = product("09506000134352", serial="CELL-0001").uri()
CATHODE = product("09506000134352", lot="CATH-7").uri()
PRECURSOR = product("04006381333931", lot="NCM811-22").uri()
T0 = 1_764_062_130_123_456  # 2025-11-25T09:15:30.123456Z


def open_store(url: str, blobs: Path) -> Store:
    return Store.open(url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(blobs))


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path / "blobs")
    yield opened
    opened.close()


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other-blobs")
    yield opened
    opened.close()


def measurement(seq: int = 42, observed: int = T0) -> RecordInput:
    fields = {
        "device": "gauge-07",
        "seq": seq,
        "sent_at": "2025-11-25T10:15:30.123456+01:00",
        "source": "mqtt",
        "quality": "good",
        "points": [
            {"q": "thickness", "v": 85.2, "u": "4H"},
            {"q": "bake_temperature", "v": 180.0, "u": "CEL"},
            {"q": "line_speed_index", "v": 3, "u": "P1"},
        ],
    }
    return RecordInput("measurement", fields, observed)


def sample_records(store: Store, private: bool = True) -> None:
    operator = {"operator_id": "op-17"} if private else {}
    store.add_records(
        [
            measurement(),
            measurement(43, T0 + 500_000),
            RecordInput(
                "inspection",
                {
                    "part_id": CELL,
                    "characteristic": "thickness",
                    "value": 85.1,
                    "unit": "4H",
                    "verdict": "pass",
                    **({"inspector_id": "insp-3"} if private else {}),
                },
                T0 + 1_000_000,
            ),
            RecordInput(
                "packing",
                {
                    "parent": logistic_unit("106141412345678908").uri(),
                    "children": [CELL, CATHODE],
                    "action": "ADD",
                    **operator,
                },
                T0 + 2_000_000,
            ),
            RecordInput(
                "environment",
                {"area": "dry-room", "temperature_c": 21.5, "humidity_pct": 0.9},
                T0 + 3_000_000,
            ),
        ]
    )
    record_genealogy(
        store,
        [
            Genealogy(
                CELL,
                (
                    GenealogyInput(CATHODE, InputKind.PARENT_LOT),
                    GenealogyInput(PRECURSOR, InputKind.MATERIAL_LOT),
                ),
                T0 + 4_000_000,
                process_step="cell_assembly",
                equipment=asset("4000001111-coater-3").uri(),
                **operator,  # type: ignore[arg-type]
            )
        ],
    )


def events_by_type(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in document["epcisBody"]["eventList"]:
        found.setdefault(event["qnode:recordType"], []).append(event)
    return found


def test_a_measurement_becomes_an_object_event_with_sensor_reports(store: Store) -> None:
    sample_records(store)
    document = export(store, types=["measurement"], profile=PROFILE)
    assert document["type"] == "EPCISDocument" and document["schemaVersion"] == "2.0"
    assert (
        document["@context"][0] == "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    )
    first, second = document["epcisBody"]["eventList"]
    assert first["type"] == "ObjectEvent" and first["action"] == "OBSERVE"
    assert first["bizStep"] == "sensor_reporting"
    assert first["eventTime"] == "2025-11-25T09:15:30.123456Z"
    assert first["eventTimeZoneOffset"] == "+01:00"
    assert first["readPoint"] == {"id": f"https://id.qnode.example/414/{GLN}"}
    assert first["bizLocation"] == {"id": "https://id.qnode.example/414/0614141000012"}
    (element,) = first["sensorElementList"]
    assert element["sensorMetadata"] == {
        "time": "2025-11-25T10:15:30.123456+01:00",
        "deviceID": "https://id.qnode.example/8004/4000001111-g7",
    }
    assert element["sensorReport"] == [
        {"type": "gs1:Length", "value": 85.2, "uom": "4H", "qnode:quantity": "thickness"},
        {
            "type": "gs1:Temperature",
            "value": 180.0,
            "uom": "CEL",
            "qnode:quantity": "bake_temperature",
        },
        {"value": 3, "uom": "P1", "qnode:quantity": "line_speed_index"},
    ]
    assert first["eventID"].startswith("ni:///sha-256;") and first["eventID"] != second["eventID"]
    record = store.record(first["qnode:recordId"])
    assert first["qnode:contentHash"] == record.content_hash
    assert json.loads(first["qnode:fields"]) == dict(record.public)


def test_genealogy_and_packing_become_transformation_and_aggregation_events(store: Store) -> None:
    sample_records(store)
    found = events_by_type(export(store, profile=PROFILE))
    (transformation,) = found["genealogy"]
    assert transformation["type"] == "TransformationEvent"
    assert transformation["inputQuantityList"] == [{"epcClass": PRECURSOR}, {"epcClass": CATHODE}]
    assert transformation["outputEPCList"] == [CELL]
    assert "action" not in transformation
    (aggregation,) = found["packing"]
    assert aggregation["type"] == "AggregationEvent" and aggregation["action"] == "ADD"
    assert aggregation["parentID"] == "https://id.qnode.example/00/106141412345678908"
    assert aggregation["childEPCs"] == [CELL]
    assert aggregation["childQuantityList"] == [{"epcClass": CATHODE}]
    assert aggregation["bizStep"] == "packing"
    (inspection,) = found["inspection"]
    assert inspection["epcList"] == [CELL] and inspection["disposition"] == "conformant"
    (environment,) = found["environment"]
    assert environment["type"] == "ObjectEvent" and "sensorElementList" not in environment


def test_every_event_id_is_what_gs1s_reference_computes(store: Store) -> None:
    sample_records(store)
    document = export(store, profile=PROFILE)
    exported = json.loads(json.dumps(document))  # as a partner reads the file
    assert reference_hashes(exported) == [e["eventID"] for e in exported["epcisBody"]["eventList"]]


def test_private_fields_never_appear_in_an_export(store: Store) -> None:
    sample_records(store)
    text = json.dumps(export(store, profile=PROFILE))
    for secret in ("op-17", "insp-3", "operator_id", "inspector_id"):
        assert secret not in text
    assert "qnode:privateCommitment" in text  # the salted commitment is what stands for them


def test_export_filters_by_time_and_type(store: Store) -> None:
    sample_records(store)
    events = export(store, since=T0 + 1, until=T0 + 3_000_000)["epcisBody"]["eventList"]
    assert [e["qnode:recordType"] for e in events] == ["measurement", "inspection", "packing"]
    assert export(store, types=["packing", "genealogy"])["epcisBody"]["eventList"][0]["type"] == (
        "AggregationEvent"
    )


def test_export_import_export_gives_the_same_events(store: Store, empty: Store) -> None:
    sample_records(store, private=False)
    first = export(store, profile=PROFILE)
    result = import_document(empty, json.loads(json.dumps(first)))
    assert result.total == 6 and result.already_present == 0
    second = export(empty, profile=PROFILE)
    assert second["epcisBody"] == first["epcisBody"]
    assert upstream(empty, CELL).ids() == upstream(store, CELL).ids()
    again = import_document(empty, first)
    assert again.total == 0 and again.already_present == 6


def test_an_imported_record_with_private_fields_keeps_its_id_not_its_secrets(
    store: Store, empty: Store
) -> None:
    sample_records(store)
    import_document(empty, export(store, types=["packing"]))
    (event,) = export(empty, types=["packing"])["epcisBody"]["eventList"]
    record = empty.record(event["qnode:recordId"])
    assert record.private_commitment is None and empty.private_part(record.record_id) is None


def test_gs1_example_events_are_imported_as_records(empty: Store) -> None:
    various = json.loads((DATA / "epcisDocWithVariousEventTypes.jsonld").read_text())
    result = import_document(empty, various)
    assert result.stored == {"packing": 4, "genealogy": 9}  # a record per output
    assert result.skipped == {"ObjectEvent": 4, "TransactionEvent": 2}
    lots = upstream(empty, "https://id.gs1.org/01/04012345778892/21/25").ids()
    assert "https://id.gs1.org/01/04000001654321/21/99886655" in lots
    sensors = json.loads((DATA / "epcisDocWithSensorDataObjectEvent.jsonld").read_text())
    assert import_document(empty, sensors).stored == {"measurement": 1}
    (event,) = export(empty, types=["measurement"])["epcisBody"]["eventList"]
    points = json.loads(event["qnode:fields"])["points"]
    assert points[:2] == [
        {"q": "temperature", "v": 26, "u": "CEL"},
        {"q": "absolutehumidity", "v": 12.1, "u": "A93"},
    ]


def good_document() -> dict[str, Any]:
    return copy.deepcopy(
        json.loads((DATA / "epcisDocWithSensorDataObjectEvent.jsonld").read_text())
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(type="Nope"), "document field 'type'"),
        (lambda d: d.update(schemaVersion="1.2"), "document field 'schemaVersion'"),
        (lambda d: d["epcisBody"].update(eventList={}), "epcisBody.eventList"),
        (lambda d: d["epcisBody"]["eventList"].append("x"), "event 1: must be a JSON object"),
        (
            lambda d: d["epcisBody"]["eventList"][0].update(eventTimeZoneOffset="1 hour"),
            "event 0 (ObjectEvent): field 'eventTimeZoneOffset'",
        ),
        (
            lambda d: d["epcisBody"]["eventList"][0].update(eventTime="2022-02-16T15:00:00"),
            "event 0 (ObjectEvent): field 'eventTime': '2022-02-16T15:00:00' has no UTC offset",
        ),
        (
            lambda d: d["epcisBody"]["eventList"][0].update(action="LOOK"),
            "event 0 (ObjectEvent): field 'action'",
        ),
        (
            lambda d: d["epcisBody"]["eventList"][0].update(epcList=["not a uri"]),
            "field 'epcList[0]'",
        ),
        (
            lambda d: d["epcisBody"]["eventList"][0]["sensorElementList"][1]["sensorReport"][
                2
            ].update(value="fast"),
            "field 'sensorElementList[1].sensorReport[2].value': 'fast' is not a number",
        ),
        (
            lambda d: d["epcisBody"]["eventList"][0].update(eventID="ni:///sha-256;00?ver=CBV2.0"),
            "field 'eventID': ni:///sha-256;00?ver=CBV2.0 does not match",
        ),
    ],
)
def test_a_malformed_document_names_the_event_and_field(
    empty: Store, change: Any, message: str
) -> None:
    document = good_document()
    change(document)
    with pytest.raises(EpcisError, match=re.escape(message)):
        import_document(empty, document)
    assert empty.count_records() == 0


def test_a_tampered_event_is_refused(store: Store, empty: Store) -> None:
    sample_records(store, private=False)
    document = export(store, types=["measurement"])
    event = document["epcisBody"]["eventList"][0]
    event["sensorElementList"][0]["sensorReport"][0]["value"] = 85.3
    with pytest.raises(EpcisError, match="event 0 \\(ObjectEvent\\): field 'eventID'"):
        validate_document(document)
    fields = json.loads(event["qnode:fields"])
    fields["seq"] = 7
    event["qnode:fields"] = json.dumps(fields)
    del event["eventID"]
    with pytest.raises(EpcisError, match=r"qnode:contentHash .* does not match its fields"):
        import_document(empty, document)


def test_the_cli_exports_and_imports(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    for directory in (source, target):
        (directory / "data").mkdir(parents=True)
        (directory / "qnode.toml").write_text('[member]\nname = "M"\nrole = "manufacturer"\n')
    seeded = open_store(f"sqlite:///{source / 'data' / 'store.db'}", source / "data" / "blobs")
    seeded.add_records([measurement(), measurement(43, T0 + 1)])
    seeded.close()

    def qnode(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1"}
        return subprocess.run(
            [sys.executable, "-m", "node", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    out = tmp_path / "out.json"
    exported = qnode(
        "epcis",
        "export",
        "-c",
        str(source / "qnode.toml"),
        "--type",
        "measurement",
        "--read-point",
        GLN,
        "-o",
        str(out),
    )
    assert exported.returncode == 0, exported.stderr
    assert "wrote 2 event(s)" in exported.stdout
    imported = qnode("epcis", "import", str(out), "-c", str(target / "qnode.toml"))
    assert imported.returncode == 0, imported.stderr
    assert "stored 2 record(s) (2 measurement)" in imported.stdout
    document = json.loads(out.read_text())
    document["epcisBody"]["eventList"][1]["eventTimeZoneOffset"] = "Z"
    out.write_text(json.dumps(document))
    refused = qnode("epcis", "import", str(out), "-c", str(target / "qnode.toml"))
    assert refused.returncode == 12
    assert refused.stderr.strip().splitlines() == [
        "qnode: error: event 1 (ObjectEvent): field 'eventTimeZoneOffset': expected ±hh:mm, not 'Z'"
    ]
