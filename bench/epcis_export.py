"""EPCIS export of 100,000 measurement records: events/s, and our CBV 2.0 hash against GS1's.

In one run:
* store N "measurement" records (4 points each) in a fresh SQLite store (not timed);
* time ``export`` of all of them (read, map to ObjectEvents, hash every event) and ``json.dumps``;
* time our event hash alone on 2,000 of the exported events;
* baseline: GS1's reference implementation (epcis-event-hash-generator 1.9.3) on the same 2,000
  events, checked to give the same hashes; the ratio is our hashes/s over the reference's.

Run: ``.venv/bin/python bench/epcis_export.py [--records N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store
from node.oracles.epcis import PREFIXES, EpcisProfile, document, export
from node.oracles.event_hash import event_hash

SAMPLE = 2000


def records(count: int) -> list[RecordInput]:
    start = 1_764_062_130_000_000
    return [
        RecordInput(
            "measurement",
            {
                "device": f"gauge-{n % 50:02d}",
                "seq": n,
                "sent_at": "2025-11-25T10:15:30.123456+01:00",
                "source": "mqtt",
                "quality": "good",
                "points": [
                    {"q": "thickness", "v": 85.2 + n % 7 / 10, "u": "4H"},
                    {"q": "bake_temperature", "v": 180.5, "u": "CEL"},
                    {"q": "pressure", "v": 2.25, "u": "BAR"},
                    {"q": "humidity", "v": 0.9, "u": "P1"},
                ],
            },
            start + n * 500_000,
        )
        for n in range(count)
    ]


def reference_hashes(events: list[dict[str, object]]) -> list[str]:
    from epcis_event_hash_generator import hash_generator, json_to_py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = json_to_py.event_list_from_epcis_document_json(
            json.loads(json.dumps(document(events)))
        )
        return list(
            hash_generator.calculate_hashes_from_pre_hashes(
                hash_generator.derive_prehashes_from_events(tree)
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(
            f"sqlite:///{directory}/store.db",
            Classification.from_config(DEFAULT_RECORD_TYPES),
            BlobStore(Path(directory) / "blobs"),
        )
        inputs = records(args.records)
        for start in range(0, len(inputs), 10_000):
            store.add_records(inputs[start : start + 10_000])
        profile = EpcisProfile.of_glns("9506000164908")
        began = time.perf_counter()
        exported = export(store, profile=profile)
        mapped = time.perf_counter() - began
        text = json.dumps(exported)
        total = time.perf_counter() - began
        store.close()
    events = exported["epcisBody"]["eventList"]
    print(
        f"export of {len(events):,} events: {mapped:.2f} s ({len(events) / mapped:,.0f} events/s)"
    )
    print(f"  with json.dumps ({len(text) / 1e6:.1f} MB): {total:.2f} s")

    sample = [{k: v for k, v in e.items() if k != "eventID"} for e in events[:SAMPLE]]
    began = time.perf_counter()
    ours = [event_hash(e, PREFIXES) for e in sample]
    our_rate = SAMPLE / (time.perf_counter() - began)
    began = time.perf_counter()
    theirs = reference_hashes(sample)
    their_rate = SAMPLE / (time.perf_counter() - began)
    assert ours == theirs, "our hashes differ from the reference implementation's"
    print(f"event hash, ours: {our_rate:,.0f} events/s; GS1 reference 1.9.3: {their_rate:,.0f}/s")
    print(f"ratio ours/reference: {our_rate / their_rate:.1f}x (same {SAMPLE:,} hashes)")


if __name__ == "__main__":
    main()
