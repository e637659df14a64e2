"""The CBV 2.0 event hash against GS1's examples and GS1's reference implementation."""

from __future__ import annotations

import copy
import json
import random
import warnings
from pathlib import Path
from typing import Any

import pytest

from node.oracles.event_hash import (
    canonical_number,
    canonical_timestamp,
    document_hashes,
    event_hash,
    normalise_gs1_uri,
    pre_hash_string,
)

DATA = Path(__file__).with_name("data")
VECTORS = json.loads((DATA / "event_hash_vectors.json").read_text())["vectors"]


def reference_hashes(document: dict[str, Any]) -> list[str]:
    """GS1's reference implementation (epcis-event-hash-generator 1.9.3) on ``document``.

    It uses a deprecated importlib API and logs, so its warnings are silenced here; it loads the
    EPCIS 2.0 JSON-LD context from a copy it ships (no network). It keeps the CURIE prefixes of
    every document it has read in a module global; they are cleared so each document stands alone.
    """
    generator = pytest.importorskip("epcis_event_hash_generator.hash_generator")
    reader = pytest.importorskip("epcis_event_hash_generator.json_to_py")
    reader._namespaces.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = reader.event_list_from_epcis_document_json(copy.deepcopy(document))
        prehashes = generator.derive_prehashes_from_events(events)
        return list(generator.calculate_hashes_from_pre_hashes(prehashes))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["file"] for v in VECTORS])
def test_gs1_examples_hash_as_expected(vector: dict[str, Any]) -> None:
    document = json.loads((DATA / vector["file"]).read_text())
    assert document_hashes(document) == [e["hash"] for e in vector["events"]]


def test_most_of_the_examples_also_match_gs1s_published_expectations() -> None:
    agreeing = [e for v in VECTORS for e in v["events"] if e["gs1_expected_agrees"]]
    assert len(agreeing) == 11


@pytest.mark.parametrize("vector", VECTORS, ids=[v["file"] for v in VECTORS])
def test_the_vectors_are_what_the_reference_implementation_computes(
    vector: dict[str, Any],
) -> None:
    document = json.loads((DATA / vector["file"]).read_text())
    assert reference_hashes(document) == [e["hash"] for e in vector["events"]]


def test_the_pre_hash_string_of_a_sensor_event() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T10:15:30.1235+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": ["urn:epc:id:sgtin:4012345.011111.9876"],
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "readPoint": {"id": "https://id.qnode.example/414/9506000164908"},
        "sensorElementList": [
            {
                "sensorMetadata": {"deviceID": "urn:epc:id:giai:4000001.111"},
                "sensorReport": [
                    {"type": "gs1:Temperature", "value": 21.50, "uom": "CEL", "qnode:q": "t"},
                    {"type": "gs1:Length", "value": 85.0, "uom": "4H"},
                ],
            }
        ],
        "qnode:recordId": "0x01",
    }
    text = pre_hash_string(event, {"gs1": "https://gs1.org/voc/", "qnode": "https://q.example/"})
    assert text == (
        "eventType=ObjectEventeventTime=2026-11-25T09:15:30.124ZeventTimeZoneOffset=+01:00"
        "epcListepc=https://id.gs1.org/01/04012345111118/21/9876action=OBSERVE"
        "bizStep=https://ref.gs1.org/cbv/BizStep-sensor_reporting"
        "readPointid=https://id.gs1.org/414/9506000164908"
        "sensorElementListsensorElementsensorMetadatadeviceID=https://id.gs1.org/8004/4000001111"
        "sensorReporttype=https://gs1.org/voc/Lengthvalue=85uom=4H"
        "sensorReporttype=https://gs1.org/voc/Temperaturevalue=21.5uom=CEL{https://q.example/}q=t"
        "{https://q.example/}recordId=0x01"
    )


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2026-11-25T10:15:30+01:00", "2026-11-25T09:15:30.000Z"),
        ("2026-11-25T09:15:30.0015Z", "2026-11-25T09:15:30.002Z"),
        ("2026-11-25T09:15:30.0025Z", "2026-11-25T09:15:30.002Z"),  # half to even, as reference
        ("2026-11-25T23:59:59.9996-00:30", "2026-11-26T00:30:00.000Z"),
    ],
)
def test_timestamps_become_utc_milliseconds(text: str, canonical: str) -> None:
    assert canonical_timestamp(text) == canonical


@pytest.mark.parametrize(
    ("text", "canonical"), [("1.0", "1"), ("+0.3434000", "0.3434"), ("600", "600"), ("x1", "x1")]
)
def test_numbers_lose_trailing_zeros(text: str, canonical: str) -> None:
    assert canonical_number(text) == canonical


NORMALISED = {
    "urn:epc:id:sscc:4012345.0000000111": "https://id.gs1.org/00/040123450000001112",
    "urn:epc:id:sgln:4012345.00011.987": "https://id.gs1.org/414/4012345000115/254/987",
    "urn:epc:id:pgln:4012345.00000": "https://id.gs1.org/417/4012345000009",
    "urn:epc:id:giai:4000001.111": "https://id.gs1.org/8004/4000001111",
    "urn:epc:id:grai:4012345.00001.A1": "https://id.gs1.org/8003/04012345000016A1",
    "urn:epc:id:gdti:4012345.55555.1234": "https://id.gs1.org/253/40123455555541234",
    "urn:epc:class:lgtin:4012345.011111.4444": "https://id.gs1.org/01/04012345111118/10/4444",
    "urn:epc:idpat:sgtin:4012345.066666.*": "https://id.gs1.org/01/04012345666663",
    # our domain -> GS1's, GTIN-13 padded, a serial drops the lot, no query string
    "https://id.qnode.example/01/9506000134352/10/L1/21/S1?x=1": (
        "https://id.gs1.org/01/09506000134352/21/S1"
    ),
    "https://example.com/dl/gtin/09506000134352/lot/L1": (
        "https://id.gs1.org/01/09506000134352/10/L1"
    ),
    "https://id.qnode.example/01/09506000134352/22/2A/10/L1": (
        "https://id.gs1.org/01/09506000134352/10/L1"
    ),
    # percent-encoded values are left alone by the reference, and so by us
    "https://id.qnode.example/01/09506000134352/10/A%2F1": None,
    "https://gs1.org/voc/Temperature": None,
}


@pytest.mark.parametrize(("uri", "canonical"), NORMALISED.items())
def test_gs1_identifiers_become_constrained_canonical_digital_links(
    uri: str, canonical: str | None
) -> None:
    assert normalise_gs1_uri(uri) == canonical
    reference = pytest.importorskip("epcis_event_hash_generator.dl_normaliser")
    assert reference.normaliser(uri) == canonical


def test_fields_the_hash_ignores_and_the_order_of_lists() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-01-01T00:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [
            "https://id.gs1.org/01/09506000134352/21/2",
            "https://id.gs1.org/01/09506000134352/21/1",
        ],
        "action": "OBSERVE",
    }
    other = {**event, "eventID": "ni:///x", "recordTime": "2027-01-01T00:00:00Z"}
    other["epcList"] = list(reversed(event["epcList"]))
    assert event_hash(event) == event_hash(other)
    assert event_hash(event) != event_hash({**event, "action": "ADD"})
    assert event_hash(event).startswith("ni:///sha-256;") and event_hash(event).endswith(
        "?ver=CBV2.0"
    )


def _random_event(rng: random.Random) -> dict[str, Any]:
    gtin = "09506000134352"
    reports = [
        {
            "type": rng.choice(["gs1:Temperature", "gs1:Length", "gs1:Pressure", "gs1:Mass"]),
            "value": rng.choice([rng.uniform(-50, 500), rng.randint(0, 1000), 12.0, 0.1]),
            "uom": rng.choice(["CEL", "4H", "BAR", "KGM"]),
            "qnode:quantity": rng.choice(["bake_temp", "thickness", "weight"]),
        }
        for _ in range(rng.randint(1, 6))
    ]
    event: dict[str, Any] = {
        "type": rng.choice(["ObjectEvent", "TransformationEvent", "AggregationEvent"]),
        "eventTime": f"2026-11-{rng.randint(10, 28)}T{rng.randint(10, 23)}:15:30."
        f"{rng.randint(0, 999999):06d}+0{rng.randint(0, 9)}:00",
        "eventTimeZoneOffset": "+01:00",
        "action": rng.choice(["ADD", "OBSERVE", "DELETE"]),
        "bizStep": rng.choice(["sensor_reporting", "inspecting", "commissioning", "packing"]),
        "readPoint": {"id": "https://id.qnode.example/414/9506000164908"},
        "qnode:recordId": f"0x{rng.getrandbits(256):064x}",
        "qnode:fields": json.dumps({"v": rng.random()}),
    }
    if event["type"] == "ObjectEvent":
        event["epcList"] = [
            f"https://id.qnode.example/01/{gtin}/21/{n}" for n in range(rng.randint(0, 3))
        ]
        event["sensorElementList"] = [
            {
                "sensorMetadata": {"time": event["eventTime"], "deviceID": "urn:qnode:device:g-7"},
                "sensorReport": reports,
            }
        ]
    elif event["type"] == "TransformationEvent":
        event["inputQuantityList"] = [
            {"epcClass": f"https://id.qnode.example/01/{gtin}/10/LOT-{n}"} for n in range(3)
        ]
        event["outputEPCList"] = [
            f"https://id.qnode.example/01/{gtin}/21/CELL-{rng.randint(0, 99)}"
        ]
        event["qnode:inputs"] = [{"qnode:id": "x", "qnode:kind": "equipment"}]
    else:
        event["parentID"] = "https://id.qnode.example/00/106141412345678908"
        event["childEPCs"] = [f"https://id.qnode.example/01/{gtin}/21/{n}" for n in range(4)]
    return event


def test_generated_events_hash_as_the_reference_does() -> None:
    rng = random.Random(20261125)
    prefixes = {"gs1": "https://gs1.org/voc/", "qnode": "https://ns.qnode.example/epcis/"}
    events = [_random_event(rng) for _ in range(60)]
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", prefixes],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T00:00:00Z",
        "epcisBody": {"eventList": events},
    }
    expected = reference_hashes(document)
    assert [event_hash(e, prefixes) for e in events] == expected
    assert document_hashes(document) == expected
