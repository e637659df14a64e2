"""The ingest pipeline on SQLite and PostgreSQL: records, quarantine, high-water marks, acks after
commit, the async run loop, a failing store, and SIGKILL at any moment."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from node.anchoring.batcher import Batcher, BatchPolicy
from node.errors import SourceError, StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import OUTBOX, RECORDS, Store, create_store_engine
from node.oracles.ingest import Ingestor
from node.oracles.messages import encode_message
from node.oracles.metrics import IngestMetrics
from node.oracles.quarantine import Quarantine
from node.oracles.source import Reading, SourceStatus
from node.oracles.validation import Validator
from tests.oracles.test_validation import (
    DEVICE_KEY,
    NOW_US,
    OTHER_KEY,
    message,
    oracle_settings,
    reading,
    timestamp,
)

REPO = Path(__file__).resolve().parents[2]
MEMBER = "0x" + "ab" * 20


def open_store(url: str, blobs: Path) -> Store:
    return Store.open(url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(blobs))


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url, tmp_path / "blobs")
    try:
        yield opened
    finally:
        opened.close()


def make_ingestor(store: Store, **options: float) -> Ingestor:
    validator = Validator(oracle_settings(max_payload_bytes=4096), clock=lambda: NOW_US)
    return Ingestor(store, validator, IngestMetrics(), **options)  # type: ignore[arg-type]


class Acks:
    """Ack callbacks that record which readings were acknowledged."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def reading(self, index: int, item: Reading) -> Reading:
        def ack() -> None:
            self.acked.append(index)

        return Reading(
            item.source, item.payload, item.received_at_us, item.device_id, item.status, "", ack
        )


def stored_measurements(store: Store) -> list[dict[str, object]]:
    with store.transaction() as connection:
        rows = connection.execute(
            select(RECORDS.c.public_json).where(RECORDS.c.record_type == "measurement")
        ).all()
    return [json.loads(row.public_json) for row in rows]


def test_valid_readings_become_measurement_records_on_their_way_to_anchoring(
    store: Store,
) -> None:
    ingestor = make_ingestor(store)
    points = [{"q": "thickness", "v": 85.2, "u": "4H"}, {"q": "temperature", "v": 212, "u": "FAH"}]
    acks = Acks()
    batch = [acks.reading(i, reading(message(i + 1, points=points))) for i in range(12)]
    result = ingestor.ingest(batch)
    assert result.accepted == 12 and result.points == 24 and result.rejected_count == 0
    assert acks.acked == list(range(12))
    record = store.record(result.record_ids[0])
    assert record.record_type == "measurement" and record.observed_at_us == NOW_US
    assert dict(record.public) == {
        "device": "gauge-01",
        "seq": 1,
        "sent_at": timestamp(),
        "source": "mqtt://127.0.0.1:1883/qnode/devices/x/data",
        "quality": "good",
        "points": [
            {"q": "thickness", "v": 0.0852, "u": "MMT"},
            {"q": "temperature", "v": 100.0, "u": "CEL"},
        ],
    }
    with store.transaction() as connection:
        assert connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 12
    batcher = Batcher(store, MEMBER, BatchPolicy(max_leaves=5, max_age_s=60))
    closed = batcher.close_batches(force=True)
    assert sum(b.leaf_count for b in closed) == 12 and batcher.queued() == 0
    snapshot = ingestor.metrics.snapshot()
    assert (snapshot.messages_accepted, snapshot.points_accepted, snapshot.batches) == (12, 24, 1)
    assert snapshot.last_batch_latency_s is not None


def test_a_signed_message_keeps_its_signature_checkable(store: Store) -> None:
    ingestor = make_ingestor(store)
    result = ingestor.ingest(
        [
            reading(message(1, "signed-01"), key=DEVICE_KEY),
            reading(message(2, "signed-01"), key=OTHER_KEY),
            reading(message(3, "signed-01")),
            reading(message(1, "keyed-01"), status=SourceStatus.UNCERTAIN),
        ]
    )
    assert result.accepted == 2
    assert dict(result.rejected) == {"bad_signature": 1, "missing_signature": 1}
    signed, unsigned = (store.record(record_id).public for record_id in result.record_ids)
    DEVICE_KEY.verify_key.verify(
        str(signed["signed_message"]).encode(), bytes.fromhex(str(signed["signature"]))
    )
    assert json.loads(str(signed["signed_message"]))["points"] == [
        {"q": "thickness", "v": 85.2, "u": "4H"}
    ]
    assert "signature" not in unsigned and unsigned["quality"] == "uncertain"


def rejection_cases() -> list[tuple[str, Reading]]:
    ts = timestamp()
    payload = encode_message(message(99, points=[{"q": "thickness", "v": 987.25, "u": "MMT"}]))
    return [
        (
            "bad_status",
            Reading(
                "opc.tcp://plc#T",
                encode_message(message(90)),
                NOW_US,
                None,
                SourceStatus.BAD,
                "BadSensorFailure",
            ),
        ),
        ("oversize", reading(b" " * 5000)),
        ("malformed", reading(b'{"v":1,\xff\x00 not json')),
        ("malformed", reading(orjson.dumps(message(ts="2026-11-18T11:06:40")))),
        ("unknown_device", reading(message(1, "ghost-9"))),
        ("device_mismatch", reading(message(91), device_id="gauge-02")),
        ("missing_signature", reading(message(5, "signed-01"))),
        ("bad_signature", reading(message(6, "signed-01"), key=OTHER_KEY)),
        ("unknown_quantity", reading(message(92, points=[{"q": "torque", "v": 1, "u": "NEW"}]))),
        ("non_finite", reading(payload.replace(b"987.25", b"NaN"))),
        ("non_finite", reading(payload.replace(b"987.25", b"-Infinity"))),
        ("non_finite", reading(payload.replace(b"987.25", b"1e400"))),
        ("unknown_unit", reading(message(93, points=[{"q": "thickness", "v": 1, "u": "XYZ"}]))),
        ("unit_mismatch", reading(message(94, points=[{"q": "thickness", "v": 1, "u": "KGM"}]))),
        ("out_of_range", reading(message(95, points=[{"q": "thickness", "v": 11, "u": "MMT"}]))),
        ("future_timestamp", reading(message(96, ts=timestamp(NOW_US + 60_000_000)))),
        ("stale_timestamp", reading(message(97, ts=timestamp(NOW_US - 8 * 86400 * 10**6)))),
        ("duplicate", reading(message(10, ts=ts))),
    ]


def test_every_rejection_is_quarantined_with_its_reason_and_exact_payload(store: Store) -> None:
    ingestor = make_ingestor(store)
    assert ingestor.ingest([reading(message(10))]).accepted == 1
    cases = rejection_cases()
    acks = Acks()
    batch = [acks.reading(i, item) for i, (_, item) in enumerate(cases)]
    batch.append(acks.reading(len(cases), reading(message(11))))
    result = ingestor.ingest(batch)
    assert result.accepted == 1 and result.rejected_count == len(cases)
    assert acks.acked == list(range(len(cases) + 1))  # rejected readings are acked too
    quarantine = Quarantine(store)
    entries = list(reversed(quarantine.entries(limit=1000)))
    assert [e.reason for e in entries] == [reason for reason, _ in cases]
    for entry, (_, item) in zip(entries, cases, strict=True):
        assert entry.payload == item.payload  # byte for byte
        assert entry.source == item.source and entry.received_at_us == item.received_at_us
        assert entry.detail
    assert entries[4].device_id == "ghost-9" and entries[0].device_id is None
    expected: dict[str, int] = {}
    for reason, _ in cases:
        expected[reason] = expected.get(reason, 0) + 1
    assert quarantine.count_by_reason() == expected
    assert dict(ingestor.metrics.snapshot().rejected) == expected
    assert [e.reason for e in quarantine.entries(reason="non_finite")] == ["non_finite"] * 3
    assert [e.device_id for e in quarantine.entries(device="signed-01")] == ["signed-01"] * 2
    assert len(quarantine.entries(limit=2)) == 2
    assert quarantine.entry(entries[1].id or 0).payload == b" " * 5000
    with pytest.raises(StoreError, match="does not exist"):
        quarantine.entry(10**9)


def test_duplicates_within_and_across_batches(store: Store) -> None:
    ingestor = make_ingestor(store)
    first = ingestor.ingest([reading(message(s)) for s in (1, 2, 2, 3)])
    assert first.accepted == 3 and dict(first.rejected) == {"duplicate": 1}
    second = ingestor.ingest([reading(message(s)) for s in (3, 1, 4)])
    assert second.accepted == 1 and dict(second.rejected) == {"duplicate": 2}
    assert sorted(m["seq"] for m in stored_measurements(store)) == [1, 2, 3, 4]  # type: ignore[type-var]
    assert ingestor.high_water() == {"gauge-01": 4}


def test_the_high_water_mark_survives_reopening_the_store(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path / "blobs")
    make_ingestor(store).ingest([reading(message(41)), reading(message(7, "gauge-02"))])
    store.close()
    reopened = open_store(store_url, tmp_path / "blobs")
    try:
        ingestor = make_ingestor(reopened)
        assert ingestor.high_water() == {"gauge-01": 41, "gauge-02": 7}
        result = ingestor.ingest([reading(message(41)), reading(message(42))])
        assert result.accepted == 1 and dict(result.rejected) == {"duplicate": 1}
    finally:
        reopened.close()


def test_a_failing_store_is_retried_then_raised_and_nothing_is_acked(
    store: Store, tmp_path: Path
) -> None:
    ingestor = make_ingestor(store, retries=2, retry_backoff_s=0.01)
    healthy = store.engine
    store.engine = create_store_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    acks = Acks()
    batch = [acks.reading(i, reading(message(i + 1))) for i in range(3)]
    with pytest.raises(StoreError, match="after 3 attempts; none was acknowledged"):
        ingestor.ingest(batch)
    assert acks.acked == []
    # back: a transient failure is ridden out by the retries, and nothing is doubled
    timer = threading.Timer(0.05, lambda: setattr(store, "engine", healthy))
    slow = make_ingestor(store, retries=5, retry_backoff_s=0.2)
    timer.start()
    result = slow.ingest(batch)
    timer.join()
    assert result.accepted == 3 and acks.acked == [0, 1, 2]
    assert len(stored_measurements(store)) == 3


async def source(items: list[Reading], pause_after: int | None = None) -> AsyncIterator[Reading]:
    """An in-memory source: a plain async generator, pausing once to let a batch time out."""
    for index, item in enumerate(items):
        if index == pause_after:
            await asyncio.sleep(0.3)
        yield item


def test_run_batches_by_size_and_delay_and_acks_only_after_commit(store: Store) -> None:
    ingestor = make_ingestor(store, max_batch=10, max_delay_s=0.05)
    committed_at_ack: list[bool] = []

    def acked(seq: int) -> None:
        committed_at_ack.append(seq in {m["seq"] for m in stored_measurements(store)})

    items = [
        Reading(
            "mqtt://x",
            encode_message(message(seq)),
            NOW_US,
            "gauge-01",
            ack=lambda seq=seq: acked(seq),  # type: ignore[misc]
        )
        for seq in range(1, 36)
    ]
    asyncio.run(ingestor.run(source(items, pause_after=23)))
    assert committed_at_ack == [True] * 35
    assert sorted(m["seq"] for m in stored_measurements(store)) == list(range(1, 36))  # type: ignore[type-var]
    snapshot = ingestor.metrics.snapshot()
    assert snapshot.messages_accepted == 35
    assert snapshot.batches >= 4  # 10, 10, then the rest split at the pause


def test_run_stores_what_arrived_before_a_source_error(store: Store) -> None:
    ingestor = make_ingestor(store, max_batch=100, max_delay_s=0.05)
    acks = Acks()

    async def failing() -> AsyncIterator[Reading]:
        for i in range(5):
            yield acks.reading(i, reading(message(i + 1)))
        raise SourceError("broker went away")

    with pytest.raises(SourceError, match="broker went away"):
        asyncio.run(ingestor.run(failing()))
    assert acks.acked == [0, 1, 2, 3, 4]
    assert len(stored_measurements(store)) == 5


def test_sigkill_at_any_moment_loses_no_acked_message_and_stores_each_once(
    store_url: str, tmp_path: Path
) -> None:
    target = 4000
    ack_log = tmp_path / "acks.log"
    args = [sys.executable, "-m", "tests.oracles.ingest_crash_worker", store_url, str(ack_log)]
    args.append(str(target))
    rng = random.Random(20261125)
    kills = 0
    for _attempt in range(4):
        before = len(ack_log.read_text().split()) if ack_log.exists() else 0
        worker = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while worker.poll() is None and time.monotonic() < deadline:
            acked = len(ack_log.read_text().split()) if ack_log.exists() else 0
            if acked >= before + 100:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.communicate(timeout=30)
    final = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0 and "done" in final.stdout, final.stderr
    assert kills >= 2
    store = open_store(store_url, tmp_path / "blobs")
    try:
        seqs = [m["seq"] for m in stored_measurements(store)]
        assert sorted(seqs) == list(range(target))  # every message exactly once
        acked = {int(line) for line in ack_log.read_text().split()}
        assert acked == set(range(target))  # and every one was acknowledged after its commit
        reasons = Quarantine(store).count_by_reason()
        assert set(reasons) == {"duplicate"}  # the redeliveries after each restart, caught
        assert Ingestor(store, Validator(oracle_settings())).high_water() == {
            "gauge-01": target - 1
        }
    finally:
        store.close()
    assert os.path.getsize(ack_log) > 0


def test_quarantine_cli_lists_and_shows_entries_with_the_payload_escaped(tmp_path: Path) -> None:
    from node.provisioning import MemberSpec, init_member

    password = "correct horse"
    spec = MemberSpec("Aster Motors", "manufacturer", "http://127.0.0.1:8600", "embedded", 4717)
    settings = init_member(tmp_path, spec, password, kdf_iterations=16)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url, settings.blob_path)
    nan = encode_message(message(3)).replace(b"85.2", b"NaN")
    make_ingestor(store).ingest(
        [reading(message(1, "ghost-9")), reading(nan + b"\n\\\xff"), reading(message(2))]
    )
    store.close()

    def qnode(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "QNODE_KEYSTORE_PASSWORD": password, "NO_COLOR": "1"}
        command = [sys.executable, "-m", "node", *args, "-c", str(tmp_path / "qnode.toml")]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    listed = qnode("quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert "unknown_device" in listed.stdout and "ghost-9" in listed.stdout
    assert "2 reading(s) in quarantine: malformed 1, unknown_device 1" in listed.stdout
    only = qnode("quarantine", "list", "--reason", "malformed")
    assert "ghost-9" not in only.stdout and "malformed" in only.stdout
    shown = qnode("quarantine", "show", "2")
    assert shown.returncode == 0, shown.stderr
    assert "reason:   malformed" in shown.stdout
    assert shown.stdout.rstrip().endswith('"v":1}\\x0a\\x5c\\xff')
    wrong = qnode("quarantine", "list", "--reason", "bogus")
    assert wrong.returncode == 2 and wrong.stderr.startswith("qnode: error: unknown reason")
    missing = qnode("quarantine", "show", "99")
    assert missing.returncode == 8 and "does not exist" in missing.stderr
