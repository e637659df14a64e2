"""Outbox → batches → anchored roots → proofs, on both chain backends and both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import delete, insert, update

from node.anchoring.batcher import ANCHORED, CLOSED, CONFIRMED, Batcher, BatchPolicy, batch_id_for
from node.anchoring.merkle import StandardMerkleTree
from node.anchoring.proofs import build_bundle, load_bundle, verify_bundle, verify_store
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import TransactionSender
from node.errors import ProofError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput, canonical_json
from node.offchain.store import OUTBOX, PRIVATE, RECORDS, Store, now_us

OBSERVED = 1_795_000_000_000_000


@dataclass
class Anchoring:
    chain: ChainConnection
    store: Store
    batcher: Batcher
    registry: AnchorRegistry  # sends as the member's oracle key
    consortium: Consortium
    oracle: LocalAccount
    clock: list[int]


@pytest.fixture
def anchoring(
    chain: ChainConnection, dev_accounts: list[LocalAccount], tmp_path: Path, store_url: str
) -> Iterator[Anchoring]:
    """A one-member consortium with a funded oracle key, a registry and an empty store
    (SQLite, and PostgreSQL when QNODE_TEST_POSTGRES_URL is set)."""
    member = TransactionSender(chain, dev_accounts[0])
    founder = Founder(dev_accounts[0].address, Role.MANUFACTURER, "Aster Motors", "http://a.test")
    consortium, _ = Consortium.deploy(member, [founder], 1, 3600)
    oracle: LocalAccount = Account.create()
    member.transfer(oracle.address, 10**18)
    consortium.register_oracle(oracle.address)
    registry, _ = AnchorRegistry.deploy(member, consortium.address)
    as_oracle = AnchorRegistry.at(TransactionSender(chain, oracle), registry.address)
    store = Store.open(
        store_url,
        Classification.from_config(DEFAULT_RECORD_TYPES),
        BlobStore(tmp_path / "blobs"),
    )
    clock = [now_us()]
    batcher = Batcher(store, dev_accounts[0].address, BatchPolicy(8, 5.0), clock=lambda: clock[0])
    try:
        yield Anchoring(chain, store, batcher, as_oracle, consortium, oracle, clock)
    finally:
        store.close()


def records(count: int, start: int = 0) -> list[RecordInput]:
    return [
        RecordInput(
            "inspection",
            {
                "part_id": f"P-{start + i}",
                "characteristic": "bore",
                "value": 10.01 + i / 1000,
                "unit": "mm",
                "verdict": "pass",
                "inspector_id": "emp-4711",
            },
            OBSERVED + i,
        )
        for i in range(count)
    ]


def test_batches_close_by_size_and_by_age(anchoring: Anchoring) -> None:
    anchoring.store.add_records(records(20))
    full = anchoring.batcher.close_batches()
    assert [b.leaf_count for b in full] == [8, 8]
    assert anchoring.batcher.queued() == 4
    anchoring.clock[0] += 6_000_000  # the oldest queued row is now older than max_age_s
    aged = anchoring.batcher.close_batches()
    assert [b.leaf_count for b in aged] == [4]
    assert anchoring.batcher.queued() == 0
    first = full[0]
    assert first.batch_id == batch_id_for(anchoring.batcher.member, first.seq_from, first.seq_to)
    assert first.status == CLOSED


def test_anchored_records_are_provable_offline_and_on_chain(anchoring: Anchoring) -> None:
    stored = anchoring.store.add_records(records(5))
    anchoring.batcher.close_batches(force=True)
    [batch] = anchoring.batcher.anchor_pending(anchoring.registry)
    assert batch.status == ANCHORED and batch.tx_hash and batch.block_number
    on_chain = anchoring.registry.batch(batch.batch_id)
    assert (on_chain.root, on_chain.leaf_count) == (batch.root, 5)
    assert on_chain.oracle == anchoring.oracle.address
    for record in stored:
        bundle = json.loads(
            json.dumps(build_bundle(anchoring.store, anchoring.batcher, record.record_id))
        )
        assert verify_bundle(bundle).on_chain is False
        assert verify_bundle(bundle, anchoring.registry).on_chain is True
        assert "emp-4711" not in json.dumps(bundle)


def test_a_retry_after_a_crash_between_send_and_receipt_anchors_nothing_twice(
    anchoring: Anchoring,
) -> None:
    anchoring.store.add_records(records(3))
    [batch] = anchoring.batcher.close_batches(force=True)
    # The previous process sent the anchor and died before it recorded the receipt.
    anchoring.registry.anchor(batch.batch_id, batch.root, batch.leaf_count, batch.manifest_hash)
    assert anchoring.batcher.batch(batch.batch_id).status == CLOSED
    [adopted] = anchoring.batcher.anchor_pending(anchoring.registry)
    assert adopted.status == ANCHORED and adopted.tx_hash
    assert anchoring.registry.batch_count() == 1
    assert anchoring.batcher.anchor_pending(anchoring.registry) == []


def test_confirmations_are_tracked(anchoring: Anchoring) -> None:
    anchoring.store.add_records(records(2))
    anchoring.batcher.close_batches(force=True)
    [batch] = anchoring.batcher.anchor_pending(anchoring.registry)
    assert batch.block_number is not None
    assert anchoring.batcher.track_confirmations(batch.block_number + 1, 2) == 0
    assert anchoring.batcher.track_confirmations(batch.block_number + 2, 2) == 1
    assert anchoring.batcher.batch(batch.batch_id).status == CONFIRMED


def test_the_manifest_is_the_standard_dump_of_the_batch_tree(anchoring: Anchoring) -> None:
    stored = anchoring.store.add_records(records(3))
    [batch] = anchoring.batcher.close_batches(force=True)
    tree = anchoring.batcher.manifest(batch)
    dump = tree.dump()
    assert dump["format"] == "standard-v1" and dump["leafEncoding"] == ["bytes32", "bytes32"]
    assert StandardMerkleTree.load(dump).root == batch.root
    assert sorted(v["value"][0] for v in dump["values"]) == sorted(r.record_id for r in stored)


def test_verify_lists_every_record_altered_deleted_or_inserted(anchoring: Anchoring) -> None:
    stored = anchoring.store.add_records(records(6))
    anchoring.batcher.close_batches(force=True)
    [batch] = anchoring.batcher.anchor_pending(anchoring.registry)
    assert verify_store(anchoring.store, anchoring.batcher, anchoring.registry) == []
    altered, deleted, private_edit = stored[0], stored[1], stored[2]
    with anchoring.store.transaction() as connection:
        connection.execute(
            update(RECORDS)
            .where(RECORDS.c.record_id == altered.record_id)
            .values(public_json=canonical_json({**altered.public, "verdict": "fail"}))
        )
        connection.execute(delete(OUTBOX).where(OUTBOX.c.record_id == deleted.record_id))
        connection.execute(delete(RECORDS).where(RECORDS.c.record_id == deleted.record_id))
        connection.execute(
            update(PRIVATE)
            .where(PRIVATE.c.record_id == private_edit.record_id)
            .values(values_json='{"inspector_id":"emp-0001"}')
        )
        sneaked = "0x" + "5e" * 32
        connection.execute(
            insert(RECORDS).values(
                record_id=sneaked,
                record_type="inspection",
                observed_at_us=OBSERVED,
                stored_at_us=OBSERVED,
                public_json="{}",
                private_commitment=None,
                content_hash="0x" + "00" * 32,
            )
        )
        connection.execute(
            insert(OUTBOX).values(
                record_id=sneaked, batch_id=batch.batch_id, created_at_us=OBSERVED
            )
        )
    ticks: list[tuple[int, int]] = []
    findings = verify_store(
        anchoring.store,
        anchoring.batcher,
        anchoring.registry,
        progress=lambda done, total: ticks.append((done, total)),
    )
    reasons = {f.record_id: f.reason for f in findings}
    assert reasons[altered.record_id].startswith("altered after anchoring")
    assert reasons[deleted.record_id] == "deleted after anchoring"
    assert reasons[private_edit.record_id].startswith("private fields altered")
    assert reasons[sneaked] == "inserted after anchoring"
    assert len(findings) == 4 and ticks == [(1, 1)]


def test_a_tampered_bundle_is_refused(anchoring: Anchoring) -> None:
    stored = anchoring.store.add_records(records(4))
    anchoring.store.add_records(records(4, start=100))
    anchoring.batcher.close_batches(force=True)
    batches = anchoring.batcher.anchor_pending(anchoring.registry)
    bundle = build_bundle(anchoring.store, anchoring.batcher, stored[0].record_id)

    edited = json.loads(json.dumps(bundle))
    edited["record"]["fields"]["verdict"] = "fail"
    with pytest.raises(ProofError, match="was altered"):
        verify_bundle(edited)
    wrong_leaf = json.loads(json.dumps(bundle))
    wrong_leaf["proof"] = build_bundle(anchoring.store, anchoring.batcher, stored[1].record_id)[
        "proof"
    ]
    with pytest.raises(ProofError, match="does not lead from the leaf"):
        verify_bundle(wrong_leaf)
    with pytest.raises(ProofError, match="not JSON"):
        load_bundle(json.dumps(bundle)[:-20])
    with pytest.raises(ProofError, match="missing"):
        verify_bundle({k: v for k, v in bundle.items() if k != "proof"})
    other_batch = {**bundle, "batchId": "0x" + "77" * 32}
    with pytest.raises(ProofError, match="is not anchored on chain"):
        verify_bundle(other_batch, anchoring.registry)
    assert len(batches) == 1


def test_a_row_committed_after_a_later_one_was_batched_is_not_skipped(
    anchoring: Anchoring,
) -> None:
    """PostgreSQL hands out seq at insert time: a slow transaction can commit an older seq after
    a newer one was batched. The queue must still find it (SQLite serialises writers)."""
    if anchoring.store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: seq order is commit order")
    store = anchoring.store
    slow = store.engine.connect()
    slow_transaction = slow.begin()
    slow.execute(insert(OUTBOX).values(record_id="0x" + "51" * 32, created_at_us=OBSERVED))
    slow.execute(
        insert(RECORDS).values(
            record_id="0x" + "51" * 32,
            record_type="environment",
            observed_at_us=OBSERVED,
            stored_at_us=OBSERVED,
            public_json="{}",
            private_commitment=None,
            content_hash="0x" + "00" * 32,
        )
    )
    store.add_records(records(3))  # commits seqs after the slow one's
    first = anchoring.batcher.close_batches(force=True)
    slow_transaction.commit()
    slow.close()
    second = anchoring.batcher.close_batches(force=True)
    assert [b.leaf_count for b in first] == [3]
    assert [b.leaf_count for b in second] == [1]
    assert second[0].seq_from < first[0].seq_from
