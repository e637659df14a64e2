"""Ingest pipeline throughput: validation alone, and validation + store (quarantine, high-water
marks, outbox) through ``Ingestor.ingest``, for 23-point and 100-point messages, unsigned and
ed25519-signed.

Figures, in one run, in messages/s and points/s (median of --rounds):
* the validator alone (parsing, signature, units, ranges, timestamps, sequence numbers);
* the ingestor into a SQLite file, and PostgreSQL when QNODE_TEST_POSTGRES_URL or --postgres is
  given, in batches of --batch readings;
* baseline, same run: bare ``Store.add_records`` of the same measurement records (built
  beforehand), and the ratio ingestor/baseline.
Targets for the whole node (broker to store) on 2 cores: >= 10,000 messages/s and >= 230,000
points/s; this path should be well above. As ``Ingestor.run`` does, the heap loaded at start-up
is frozen out of the garbage collector first.
Run: ``.venv/bin/python bench/ingest_pipeline.py``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from nacl.signing import SigningKey
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store, now_us
from node.oracles.ingest import Ingestor, measurement_record
from node.oracles.messages import encode_message
from node.oracles.source import Reading
from node.oracles.validation import Accepted, Validator
from node.settings import DeviceSpec, OracleSettings, QuantitySpec

TARGET_MESSAGES = 10_000
TARGET_POINTS = 230_000
DEVICES = 20
KEY = SigningKey(bytes(range(32)))
UNITS = ("4H", "MMT", "CEL", "FAH", "BAR", "KPA", "P1")


def oracle_settings(points: int) -> OracleSettings:
    quantities = {}
    for i in range(points):
        unit = ("MMT", "MMT", "CEL", "CEL", "BAR", "BAR", "P1")[i % len(UNITS)]
        quantities[f"q{i:03d}"] = QuantitySpec(unit=unit, min=-1e6, max=1e6)
    public = KEY.verify_key.encode().hex()
    devices = {f"dev-{d:02d}": DeviceSpec(public_key=public) for d in range(DEVICES)}
    return OracleSettings(quantities=quantities, devices=devices)


def payloads(count: int, points: int, signed: bool) -> list[bytes]:
    ts = datetime.now(UTC).isoformat()
    key = KEY if signed else None
    return [
        encode_message(
            {
                "v": 1,
                "device": f"dev-{i % DEVICES:02d}",
                "seq": i // DEVICES,
                "ts": ts,
                "points": [
                    {"q": f"q{j:03d}", "v": 20.0 + (i * 7 + j) % 997 / 10, "u": UNITS[j % 7]}
                    for j in range(points)
                ],
            },
            key,
        )
        for i in range(count)
    ]


def readings(batch: list[bytes]) -> list[Reading]:
    received = now_us()
    return [Reading("mqtt://127.0.0.1:1883/qnode/devices/x/data", p, received) for p in batch]


def open_store(url: str, directory: Path) -> Store:
    return Store.open(url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(directory))


def validator_rate(data: list[bytes], points: int, batch: int) -> float:
    validator = Validator(oracle_settings(points))
    started = time.perf_counter()
    for offset in range(0, len(data), batch):
        outcomes, _ = validator.validate_batch(readings(data[offset : offset + batch]), {})
        assert type(outcomes[0]) is Accepted, outcomes[0]
    return len(data) / (time.perf_counter() - started)


def ingest_rate(store: Store, data: list[bytes], points: int, batch: int) -> float:
    ingestor = Ingestor(store, Validator(oracle_settings(points)))
    started = time.perf_counter()
    for offset in range(0, len(data), batch):
        result = ingestor.ingest(readings(data[offset : offset + batch]))
        assert result.rejected_count == 0, dict(result.rejected)
    return len(data) / (time.perf_counter() - started)


def baseline_rate(store: Store, records: list[RecordInput], batch: int) -> float:
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        store.add_records(records[offset : offset + batch])
    return len(records) / (time.perf_counter() - started)


def equivalent_records(data: list[bytes], points: int) -> list[RecordInput]:
    validator = Validator(oracle_settings(points))
    items = readings(data)
    outcomes, _ = validator.validate_batch(items, {})
    return [
        measurement_record(item, outcome)
        for item, outcome in zip(items, outcomes, strict=True)
        if isinstance(outcome, Accepted)
    ]


def fresh_store(
    kind: str, directory: Path, postgres: str | None
) -> tuple[Store, Callable[[], None]]:
    if kind == "sqlite":
        path = directory / f"{uuid.uuid4().hex}.db"
        store = open_store(f"sqlite:///{path}", directory / "blobs")
        return store, store.close
    assert postgres is not None
    schema = f"qnode_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres else "?"
    store = open_store(f"{postgres}{separator}options=-csearch_path%3D{schema}", directory / "b")

    def drop() -> None:
        store.close()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    return store, drop


def paired_rates(
    rounds: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[float, float]:
    """Medians of ``first`` and ``second``, measured alternately (load on the machine shifts
    both alike, so their ratio holds even when the absolute figures move)."""
    pairs = [(first(), second()) for _ in range(rounds)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def on_fresh_store(
    kind: str, directory: Path, postgres: str | None, measure: Callable[[Store], float]
) -> float:
    store, close = fresh_store(kind, directory, postgres)
    try:
        return measure(store)
    finally:
        close()


def line(label: str, rate: float, points: int) -> str:
    return f"  {label:<40} {rate:>10,.0f} msg/s {rate * points:>12,.0f} points/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="23-point messages a round")
    parser.add_argument("--messages-100", type=int, default=5_000, help="100-point messages")
    parser.add_argument("--batch", type=int, default=1000, help="readings per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("QNODE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; batches of {args.batch}")
    gc.collect()
    gc.freeze()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for points, count in ((23, args.messages), (100, args.messages_100)):
            for signed in (False, True):
                size = count if not signed else max(count // 3, args.batch)
                data = payloads(size, points, signed)
                title = f"{points}-point messages, {'signed' if signed else 'unsigned'}"
                print(f"\n{title} ({size} a round, {len(data[0])} bytes each)")
                alone = partial(validator_rate, data, points, args.batch)
                rate = statistics.median(alone() for _ in range(args.rounds))
                print(line("validator alone", rate, points))
                records = equivalent_records(data, points)
                for kind in kinds:
                    ingested = partial(
                        on_fresh_store,
                        kind,
                        directory,
                        args.postgres,
                        partial(ingest_rate, data=data, points=points, batch=args.batch),
                    )
                    baseline = partial(
                        on_fresh_store,
                        kind,
                        directory,
                        args.postgres,
                        partial(baseline_rate, records=records, batch=args.batch),
                    )
                    node, base = paired_rates(args.rounds, ingested, baseline)
                    print(line(f"ingestor -> {kind}", node, points))
                    print(line(f"baseline: Store.add_records -> {kind}", base, points))
                    print(f"  ratio ingestor/baseline: {node / base:.2f}")
    print(
        f"\ntargets for the whole node on 2 cores: >= {TARGET_MESSAGES:,} msg/s, "
        f">= {TARGET_POINTS:,} points/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
