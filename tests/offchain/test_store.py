"""The off-chain store on SQLite and PostgreSQL: all-or-nothing batches, classes, blobs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from node.errors import ConfigError, PrivacyError, RecordError, StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput, canonical_json, commit_private, content_hash
from node.offchain.store import MIGRATIONS, OUTBOX, PRIVATE, Store

OBSERVED = 1_795_000_000_000_000


def coating(thickness: float = 12.5, operator: str = "op-17", **extra: object) -> RecordInput:
    fields = {"line": "L1", "station": "S3", "thickness_um": thickness, "operator_id": operator}
    return RecordInput("coating_thickness", {**fields, **extra}, OBSERVED)


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(
        store_url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(tmp_path / "blobs")
    )
    try:
        yield opened
    finally:
        opened.close()


def counts(store: Store) -> tuple[int, int, int]:
    with store.transaction() as connection:
        return (
            store.count_records(),
            int(connection.execute(select(func.count()).select_from(PRIVATE)).scalar_one()),
            int(connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one()),
        )


def test_a_batch_is_stored_with_private_parts_and_outbox_rows(store: Store) -> None:
    stored = store.add_records([coating(12.5 + i / 100) for i in range(10)])
    assert counts(store) == (10, 10, 10)
    again = store.record(stored[3].record_id)
    assert again == stored[3]
    assert "operator_id" not in again.public
    assert content_hash(again.canonical()) == again.content_hash
    private = store.private_part(again.record_id)
    assert private is not None and private.values == {"operator_id": "op-17"}
    assert commit_private(private.salt, canonical_json(private.values)) == again.private_commitment


def test_record_ids_increase_so_inserts_append(store: Store) -> None:
    ids = [r.record_id for r in store.add_records([coating() for _ in range(50)])]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (RecordInput("unknown_type", {"x": 1}, OBSERVED), "unknown record type 'unknown_type'"),
        (coating(colour="red"), "has no field(s) colour"),
        (coating(math.nan), "field 'thickness_um' is nan"),
        (coating(math.inf), "field 'thickness_um' is inf"),
        (coating(operator=object()), "not JSON data"),  # type: ignore[arg-type]
    ],
)
def test_one_bad_record_stores_nothing_of_its_batch(
    store: Store, bad: RecordInput, message: str
) -> None:
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.add_records([coating(), bad, coating()])
    assert counts(store) == (0, 0, 0)


def test_duplicate_ids_are_refused_whole(store: Store) -> None:
    first = store.add_records([coating()])[0]
    twice = RecordInput("coating_thickness", coating().fields, OBSERVED, first.record_id)
    with pytest.raises(StoreError, match="refused the write"):
        store.add_records([coating(), twice])
    assert counts(store) == (1, 1, 1)
    fresh = "0x" + "ab" * 32
    with pytest.raises(RecordError, match="twice"):
        store.add_records(
            [
                RecordInput("environment", {"area": "A"}, OBSERVED, fresh),
                RecordInput("environment", {"area": "B"}, OBSERVED, fresh),
            ]
        )


def test_a_malformed_record_id_is_refused(store: Store) -> None:
    with pytest.raises(RecordError, match="not a 0x-prefixed 32-byte hex string"):
        store.add_records([RecordInput("environment", {"area": "A"}, OBSERVED, "42")])


def _head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_the_schema_is_migrated_once_and_reopening_is_harmless(
    store_url: str, store: Store, tmp_path: Path
) -> None:
    store.add_records([coating()])
    reopened = Store.open(store_url, store.classification, BlobStore(tmp_path / "blobs"))
    try:
        assert reopened.count_records() == 1
        with reopened.transaction() as connection:
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar_one() == _head_revision()
    finally:
        reopened.close()


def test_private_fields_may_not_be_routed_out() -> None:
    inspection = Classification.from_config(DEFAULT_RECORD_TYPES).of("inspection")
    inspection.check_public(["part_id", "verdict"])
    with pytest.raises(PrivacyError, match="biometric_template, inspector_id"):
        inspection.check_public(["verdict", "inspector_id", "biometric_template"])
    assert inspection.critical_fields == ("part_id", "characteristic", "value", "unit", "verdict")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"t": {"a": "secret"}}, "record_types.t: 'secret' is not a valid DataClass"),
        ({"t": {}}, "needs at least one field"),
        ({"Bad Name": {"a": "anchored"}}, "must match"),
        (
            {"weighing": {"grams": "critical", "operator_id": "critical"}},
            "record_types.weighing.operator_id: personal data must be private; "
            "it may not be routed on-chain as 'critical'",
        ),
        ({"t": {"biometric_template": "anchored"}}, "may not be routed on-chain as 'anchored'"),
    ],
)
def test_a_bad_classification_is_a_config_error(
    config: dict[str, dict[str, str]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Classification.from_config(config)


def test_the_config_can_add_personal_fields_but_not_remove_them() -> None:
    config = {"weighing": {"grams": "critical", "badge_no": "anchored"}}
    assert Classification.from_config(config).of("weighing").fields["badge_no"] == "anchored"
    with pytest.raises(ConfigError, match=r"weighing\.badge_no: personal data must be private"):
        Classification.from_config(config, always_private=["badge_no"])
    with pytest.raises(ConfigError, match="operator_id"):
        Classification.from_config({"t": {"operator_id": "anchored"}}, always_private=[])


def test_blobs_are_content_addressed_limited_and_checked(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", max_bytes=1024)
    digest = blobs.put(b"temperature curve, 0.5 s sampling")
    assert blobs.put(b"temperature curve, 0.5 s sampling") == digest
    assert blobs.get(digest) == b"temperature curve, 0.5 s sampling"
    with pytest.raises(StoreError, match="exceeds the 1024-byte limit; nothing stored"):
        blobs.put(b"x" * 1025)
    assert sorted(p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()) == [digest[2:]]
    blobs.path(digest).write_bytes(b"edited")
    with pytest.raises(StoreError, match="altered on disk"):
        blobs.get(digest)
    with pytest.raises(StoreError, match="not in"):
        blobs.get("00" * 32)


def test_canonical_json_keeps_null_and_refuses_non_finite_values_however_deep() -> None:
    assert canonical_json({"b": None, "a": [1.5, None]}) == '{"a":[1.5,null],"b":null}'
    with pytest.raises(RecordError, match="field 'points' is -inf"):
        canonical_json({"note": None, "points": [{"q": "t", "v": -math.inf}]})
    with pytest.raises(RecordError, match="field 'points' is nan"):
        canonical_json({"points": [{"q": "t", "v": math.nan}]})


def test_listeners_hear_of_records_once_their_transaction_committed(store: Store) -> None:
    heard: list[list[str]] = []
    store.add_listener(lambda records: heard.append([r.record_id for r in records]))
    stored = store.add_records([coating(1.0), coating(2.0)])
    assert heard == [[r.record_id for r in stored]]

    with pytest.raises(RuntimeError), store.transaction() as connection:
        store.write_records(connection, [coating(3.0)])
        assert len(heard) == 1  # not before the commit
        raise RuntimeError("rolled back")
    assert len(heard) == 1 and store.count_records() == 2

    def broken(_records: object) -> None:
        raise ValueError("a listener bug")

    store.add_listener(broken)
    store.add_records([coating(4.0)])  # stored all the same, the others still told
    assert store.count_records() == 3 and len(heard) == 2
