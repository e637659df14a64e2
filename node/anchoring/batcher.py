"""Closing outbox rows into Merkle batches, and anchoring their roots on-chain exactly once.

A batch is closed in one database transaction: its outbox rows get its id, its tree dump (the
manifest) is written to the blob store, and the batch row records root and manifest hash. The batch
id is keccak256(abi.encode(member, first seq, last seq)): a retry after any crash sends the same
id, and AnchorRegistry refuses a second anchor of an id, so no record is ever anchored twice.
While the chain is down, closed batches wait; ``anchor_pending`` sends them when it is back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from sqlalchemy import Connection, func, select, update

from node.anchoring.merkle import StandardMerkleTree
from node.chain.anchor_registry import AnchorRegistry
from node.chain.contract_errors import BatchAlreadyAnchored
from node.errors import StoreError
from node.hashing import keccak_hex
from node.offchain.records import LEAF_ENCODING, StoredRecord
from node.offchain.store import BATCHES, OUTBOX, RECORDS, Store, now_us, stored_record

CLOSED = "closed"  # tree built, manifest stored, root not yet on-chain
ANCHORED = "anchored"  # receipt checked: the root is on-chain
CONFIRMED = "confirmed"  # and deep enough under the chain head


@dataclass(frozen=True)
class BatchPolicy:
    max_leaves: int = 4096
    max_age_s: float = 5.0


@dataclass(frozen=True)
class Batch:
    batch_id: str
    seq_from: int
    seq_to: int
    leaf_count: int
    root: str
    manifest_hash: str
    manifest_blob: str
    status: str
    closed_at_us: int
    tx_hash: str | None
    block_number: int | None
    chain_id: int | None
    contract: str | None
    oracle: str | None
    anchored_at_us: int | None


def batch_id_for(member: str, seq_from: int, seq_to: int) -> str:
    return keccak_hex(encode(["address", "uint256", "uint256"], [member, seq_from, seq_to]))


def manifest_bytes(tree: StandardMerkleTree) -> bytes:
    """The batch manifest: the tree's standard-v1 dump as canonical JSON."""
    return json.dumps(tree.dump(), sort_keys=True, separators=(",", ":")).encode()


class Batcher:
    """The outbox side of anchoring: close batches, send them, track their confirmations."""

    def __init__(
        self,
        store: Store,
        member: str,
        policy: BatchPolicy | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.store = store
        self.member = member
        self.policy = policy or BatchPolicy()
        self.clock = clock

    # -- closing -----------------------------------------------------------------------------

    def close_batches(self, force: bool = False) -> list[Batch]:
        """Close every full batch, and a partial one once its oldest row is ``max_age_s`` old
        (or at once with ``force``)."""
        closed: list[Batch] = []
        while (batch := self._close_one(force)) is not None:
            closed.append(batch)
        return closed

    def _close_one(self, force: bool) -> Batch | None:
        with self.store.transaction() as connection:
            queue = connection.execute(
                select(OUTBOX.c.seq, OUTBOX.c.record_id, OUTBOX.c.created_at_us)
                .where(OUTBOX.c.batch_id.is_(None))
                .where(OUTBOX.c.seq > self._queue_floor(connection))
                .order_by(OUTBOX.c.seq)
                .limit(self.policy.max_leaves)
            ).all()
            if not queue:
                return None
            age_s = (self.clock() - min(row.created_at_us for row in queue)) / 1e6
            if len(queue) < self.policy.max_leaves and not force and age_s < self.policy.max_age_s:
                return None
            return self._close(connection, queue)

    @staticmethod
    def _queue_floor(connection: Connection) -> int:
        """A seq below which every outbox row is batched (see migration 0001 on the dialects)."""
        if connection.dialect.name != "sqlite":
            return 0  # the partial index finds the queue, late commits included
        floor = connection.execute(select(func.max(BATCHES.c.seq_to))).scalar_one_or_none()
        return int(floor or 0)

    def _close(self, connection: Connection, queue: Sequence[Any]) -> Batch:
        ids = [row.record_id for row in queue]
        hashes = dict(
            connection.execute(
                select(RECORDS.c.record_id, RECORDS.c.content_hash).where(
                    RECORDS.c.record_id.in_(ids)
                )
            ).all()
        )
        tree = StandardMerkleTree.of([(i, hashes[i]) for i in ids], list(LEAF_ENCODING))
        manifest = manifest_bytes(tree)
        blob = self.store.blobs.put(manifest)
        seq_from, seq_to = queue[0].seq, queue[-1].seq
        batch_id = batch_id_for(self.member, seq_from, seq_to)
        row = {
            "batch_id": batch_id,
            "seq_from": seq_from,
            "seq_to": seq_to,
            "leaf_count": len(ids),
            "root": tree.root,
            "manifest_hash": keccak_hex(manifest),
            "manifest_blob": blob,
            "status": CLOSED,
            "closed_at_us": self.clock(),
        }
        connection.execute(BATCHES.insert(), [row])
        connection.execute(
            update(OUTBOX).where(OUTBOX.c.seq.in_([r.seq for r in queue])).values(batch_id=batch_id)
        )
        return _batch({**row, **dict.fromkeys(_ANCHOR_COLUMNS)})

    # -- anchoring ---------------------------------------------------------------------------

    def anchor_pending(self, registry: AnchorRegistry) -> list[Batch]:
        """Anchor every batch not yet on-chain; those the chain refuses to take now stay queued.

        A batch already anchored under its id (a retry after a crash between send and receipt)
        is recognised by its root and recorded, never sent twice.
        """
        return [self._anchor(batch, registry) for batch in self.batches(statuses=(CLOSED,))]

    def _anchor(self, batch: Batch, registry: AnchorRegistry) -> Batch:
        if registry.is_anchored(batch.batch_id):
            return self._adopt(batch, registry)
        try:
            receipt = registry.anchor(
                batch.batch_id, batch.root, batch.leaf_count, batch.manifest_hash
            )
        except BatchAlreadyAnchored:  # another process of ours got there first
            return self._adopt(batch, registry)
        return self._mark_anchored(batch, registry, receipt.tx_hash, receipt.block_number)

    def _adopt(self, batch: Batch, registry: AnchorRegistry) -> Batch:
        """Record a batch found already anchored (a crash came between send and receipt)."""
        on_chain = registry.batch(batch.batch_id)
        if on_chain.root.lower() != batch.root.lower():
            raise StoreError(
                f"batch {batch.batch_id} is anchored with root {on_chain.root}, "
                f"not this store's {batch.root}: the store was altered"
            )
        events = registry.anchored_events(
            on_chain.block_number, on_chain.block_number, batch_id=batch.batch_id
        )
        return self._mark_anchored(batch, registry, events[0].tx_hash, on_chain.block_number)

    def _mark_anchored(
        self, batch: Batch, registry: AnchorRegistry, tx_hash: str, block: int
    ) -> Batch:
        values = {
            "status": ANCHORED,
            "tx_hash": tx_hash,
            "block_number": block,
            "chain_id": registry.binding.sender.connection.chain_id,
            "contract": registry.address,
            "oracle": registry.binding.sender.address,
            "anchored_at_us": self.clock(),
        }
        with self.store.transaction() as connection:
            connection.execute(
                update(BATCHES).where(BATCHES.c.batch_id == batch.batch_id).values(**values)
            )
        return self.batch(batch.batch_id)

    def track_confirmations(self, head_block: int, confirmations: int) -> int:
        """Mark anchored batches ``confirmations`` deep as confirmed; return how many were."""
        with self.store.transaction() as connection:
            result = connection.execute(
                update(BATCHES)
                .where(BATCHES.c.status == ANCHORED)
                .where(BATCHES.c.block_number <= head_block - confirmations)
                .values(status=CONFIRMED)
            )
        return int(result.rowcount)

    # -- reading -----------------------------------------------------------------------------

    def batches(self, statuses: Sequence[str] | None = None) -> list[Batch]:
        query = select(BATCHES).order_by(BATCHES.c.seq_from)
        if statuses is not None:
            query = query.where(BATCHES.c.status.in_(list(statuses)))
        with self.store.transaction() as connection:
            return [_batch(row._mapping) for row in connection.execute(query)]

    def batch(self, batch_id: str) -> Batch:
        with self.store.transaction() as connection:
            row = connection.execute(
                select(BATCHES).where(BATCHES.c.batch_id == batch_id.lower())
            ).first()
        if row is None:
            raise StoreError(f"batch {batch_id} is not in the store")
        return _batch(row._mapping)

    def batch_of(self, record_id: str) -> Batch | None:
        """The batch a record was put in; None while it waits in the outbox."""
        with self.store.transaction() as connection:
            batch_id = connection.execute(
                select(OUTBOX.c.batch_id).where(OUTBOX.c.record_id == record_id.lower())
            ).scalar_one_or_none()
        return None if batch_id is None else self.batch(batch_id)

    def records_of(self, batch: Batch) -> list[StoredRecord]:
        """The batch's records as the store holds them now (they may have been altered)."""
        with self.store.transaction() as connection:
            rows = connection.execute(
                select(RECORDS)
                .join(OUTBOX, OUTBOX.c.record_id == RECORDS.c.record_id)
                .where(OUTBOX.c.batch_id == batch.batch_id)
                .order_by(OUTBOX.c.seq)
            ).all()
        return [stored_record(row._mapping) for row in rows]

    def manifest(self, batch: Batch) -> StandardMerkleTree:
        """The batch's tree as anchored, from its manifest blob (checked against the batch)."""
        data = self.store.blobs.get(batch.manifest_blob)
        if keccak_hex(data) != batch.manifest_hash:
            raise StoreError(f"the manifest of batch {batch.batch_id} does not match its hash")
        return StandardMerkleTree.load(json.loads(data))

    def queued(self) -> int:
        with self.store.transaction() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(OUTBOX).where(OUTBOX.c.batch_id.is_(None))
                ).scalar_one()
            )


_ANCHOR_COLUMNS = (
    "tx_hash",
    "block_number",
    "chain_id",
    "contract",
    "oracle",
    "anchored_at_us",
)


def _batch(row: Any) -> Batch:
    return Batch(**{name: row[name] for name in Batch.__dataclass_fields__})
