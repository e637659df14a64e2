"""Anchors: every batch root any member anchored on-chain, and one batch with its records.

The chain's ``BatchAnchored`` logs list every member's anchors; this node's store adds what only
it knows about its own batches (status, manifest, the records themselves). A record is shown as
the store holds it now: its public fields and the salted commitment of its private ones, never
the private values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from node.anchoring.batcher import Batch, Batcher
from node.chain.anchor_registry import AnchorRegistry, BatchAnchoredEvent
from node.chain.contract_errors import UnknownBatch
from node.errors import StoreError
from node.offchain.records import StoredRecord, content_hash

__all__ = ["AnchorView", "BatchView", "RecordView", "anchors", "batch_view"]

MAX_RECORDS = 500
"""The most records one ``batch_view`` call returns (page with ``offset``)."""


@dataclass(frozen=True)
class AnchorView:
    """One anchored batch as the chain announced it, and whether this node's store holds it."""

    batch_id: str
    member: str
    oracle: str
    root: str
    leaf_count: int
    manifest_hash: str
    block_number: int
    tx_hash: str
    local_status: str | None
    """``anchored`` or ``confirmed`` for this node's own batches; None for other members'."""

    @classmethod
    def of(cls, event: BatchAnchoredEvent, local: Batch | None) -> AnchorView:
        return cls(
            batch_id=event.batch_id,
            member=event.member,
            oracle=event.oracle,
            root=event.root,
            leaf_count=event.leaf_count,
            manifest_hash=event.manifest_hash,
            block_number=event.block_number,
            tx_hash=event.tx_hash,
            local_status=None if local is None else local.status,
        )


@dataclass(frozen=True)
class RecordView:
    """A record of a batch: ``intact`` says whether it still hashes to its anchored leaf."""

    record_id: str
    record_type: str
    observed_at_us: int
    fields: dict[str, object]
    private_commitment: str | None
    content_hash: str
    intact: bool


@dataclass(frozen=True)
class BatchView:
    """One batch: on-chain (``anchor``, None if not anchored) and in this store (``local``, None
    for another member's batch, whose records stay with that member)."""

    batch_id: str
    anchor: AnchorView | None
    local: Batch | None
    records: tuple[RecordView, ...]
    record_count: int
    offset: int
    manifest_matches: bool | None
    """Whether this store's manifest gives the anchored root (None if either is missing)."""


def anchors(
    registry: AnchorRegistry,
    batcher: Batcher | None = None,
    from_block: int = 0,
    to_block: int | Literal["latest"] = "latest",
    member: str | None = None,
) -> list[AnchorView]:
    """Anchored batches in the block range (all members', or ``member``'s), newest first."""
    events = registry.anchored_events(from_block, to_block, member=member)
    local = {}
    if batcher is not None:
        local = {b.batch_id: b for b in batcher.batches()}
    views = [AnchorView.of(event, local.get(event.batch_id)) for event in events]
    return sorted(views, key=lambda v: (v.block_number, v.batch_id), reverse=True)


def batch_view(
    registry: AnchorRegistry,
    batch_id: str,
    batcher: Batcher | None = None,
    offset: int = 0,
    limit: int = 100,
) -> BatchView | None:
    """A batch with (a page of) its records; None if neither the chain nor the store has it."""
    try:
        key = batch_id.lower()
        on_chain = registry.batch(key)
    except UnknownBatch:
        on_chain = None
    except ValueError:  # not a bytes32
        return None
    local: Batch | None = None
    if batcher is not None:
        try:
            local = batcher.batch(key)
        except StoreError:
            local = None
    if on_chain is None and local is None:
        return None
    anchor = None
    if on_chain is not None:
        events = registry.anchored_events(
            on_chain.block_number, on_chain.block_number, batch_id=key
        )
        anchor = AnchorView.of(events[0], local) if events else None
    records: list[RecordView] = []
    count = 0
    matches = None
    if local is not None and batcher is not None:
        anchored: dict[str, str] = {}
        try:
            tree = batcher.manifest(local)
            anchored = {
                str(item["value"][0]).lower(): str(item["value"][1]).lower()
                for item in tree.dump()["values"]
            }
            if on_chain is not None:
                matches = tree.root == on_chain.root.lower()
        except StoreError:
            matches = False if on_chain is not None else None
        stored = batcher.records_of(local)
        count = len(stored)
        page = stored[max(offset, 0) : max(offset, 0) + max(0, min(limit, MAX_RECORDS))]
        records = [_record_view(record, anchored.get(record.record_id)) for record in page]
    return BatchView(key, anchor, local, tuple(records), count, max(offset, 0), matches)


def _record_view(record: StoredRecord, anchored_hash: str | None) -> RecordView:
    return RecordView(
        record_id=record.record_id,
        record_type=record.record_type,
        observed_at_us=record.observed_at_us,
        fields=dict(record.public),
        private_commitment=record.private_commitment,
        content_hash=record.content_hash,
        intact=anchored_hash is not None and content_hash(record.canonical()) == anchored_hash,
    )
