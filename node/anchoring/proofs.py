"""Proof bundles for single records, and re-verification of the whole store against the chain.

A bundle is self-contained JSON: the record in canonical form, its leaf, the Merkle proof, the root,
the batch id and where the root was anchored (chainId, contract, transaction, block). Offline it
proves the record hashes to the root; against any node of the chain it proves the root is the one
anchored under that batch id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from node.anchoring.batcher import ANCHORED, CONFIRMED, Batch, Batcher
from node.anchoring.merkle import process_proof, standard_leaf_hash
from node.chain.anchor_registry import AnchorRegistry
from node.chain.contract_errors import UnknownBatch
from node.errors import ChainError, ProofError, StoreError
from node.offchain.records import (
    LEAF_ENCODING,
    StoredRecord,
    canonical_json,
    commit_private,
    content_hash,
)
from node.offchain.store import OUTBOX, RECORDS, Store

BUNDLE_FORMAT = "qnode-proof-v1"


def build_bundle(store: Store, batcher: Batcher, record_id: str) -> dict[str, Any]:
    """The proof bundle of an anchored record."""
    record = store.record(record_id)
    batch = batcher.batch_of(record.record_id)
    if batch is None:
        raise ProofError(f"record {record.record_id} is still waiting in the outbox: no proof yet")
    if batch.status not in (ANCHORED, CONFIRMED):
        raise ProofError(
            f"record {record.record_id} is in batch {batch.batch_id}, not anchored yet"
        )
    tree = batcher.manifest(batch)
    leaf = (record.record_id, record.content_hash)
    proof = tree.get_proof(leaf)
    return {
        "format": BUNDLE_FORMAT,
        "record": record.canonical(),
        "leafEncoding": list(LEAF_ENCODING),
        "leafValue": list(leaf),
        "leafHash": "0x" + tree.leaf_hash(leaf).hex(),
        "proof": proof,
        "root": tree.root,
        "batchId": batch.batch_id,
        "anchor": {
            "chainId": batch.chain_id,
            "contract": batch.contract,
            "txHash": batch.tx_hash,
            "blockNumber": batch.block_number,
            "oracle": batch.oracle,
        },
    }


@dataclass(frozen=True)
class BundleCheck:
    record_id: str
    batch_id: str
    root: str
    on_chain: bool


def verify_bundle(bundle: Mapping[str, Any], registry: AnchorRegistry | None = None) -> BundleCheck:
    """Check a bundle offline, and against the chain when ``registry`` is given.

    Raises ProofError naming the first thing that does not hold.
    """
    try:
        record, leaf_value = bundle["record"], bundle["leafValue"]
        encoding, proof, root = bundle["leafEncoding"], bundle["proof"], bundle["root"]
        batch_id, anchor = bundle["batchId"], bundle["anchor"]
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ProofError(f"not a {BUNDLE_FORMAT} bundle (format {bundle.get('format')!r})")
    except (KeyError, TypeError) as exc:
        raise ProofError(f"malformed proof bundle: missing {exc}") from exc
    if list(encoding) != list(LEAF_ENCODING):
        raise ProofError(f"unexpected leaf encoding {encoding}")
    if [record.get("id"), content_hash(record)] != list(leaf_value):
        raise ProofError("the record does not hash to the bundle's leaf: it was altered")
    leaf = standard_leaf_hash(list(encoding), leaf_value)
    if "0x" + leaf.hex() != str(bundle.get("leafHash", "0x" + leaf.hex())).lower():
        raise ProofError("the bundle's leaf hash does not match its leaf")
    if "0x" + process_proof(leaf, proof).hex() != str(root).lower():
        raise ProofError("the proof does not lead from the leaf to the bundle's root")
    if registry is not None:
        _check_on_chain(registry, batch_id, root, leaf, proof, anchor)
    return BundleCheck(str(record["id"]), str(batch_id), str(root), registry is not None)


def _check_on_chain(
    registry: AnchorRegistry,
    batch_id: str,
    root: str,
    leaf: bytes,
    proof: list[str],
    anchor: Mapping[str, Any],
) -> None:
    connection = registry.binding.sender.connection
    if anchor.get("chainId") != connection.chain_id:
        raise ProofError(
            f"the bundle was anchored on chain {anchor.get('chainId')}, "
            f"this node is on chain {connection.chain_id}"
        )
    try:
        on_chain = registry.batch(batch_id)
    except UnknownBatch as exc:
        raise ProofError(
            f"batch {batch_id} is not anchored on chain {connection.chain_id}"
        ) from exc
    if on_chain.root.lower() != str(root).lower():
        raise ProofError(f"batch {batch_id} is anchored with another root ({on_chain.root})")
    if not registry.verify(batch_id, leaf, proof):
        raise ProofError(f"the contract rejects the proof for batch {batch_id}")
    if anchor.get("blockNumber") != on_chain.block_number:
        raise ProofError(
            f"batch {batch_id} was anchored in block {on_chain.block_number}, "
            f"not {anchor.get('blockNumber')} as the bundle says"
        )


def load_bundle(text: str) -> dict[str, Any]:
    try:
        bundle = json.loads(text)
    except ValueError as exc:
        raise ProofError(f"the bundle is not JSON (truncated?): {exc}") from exc
    if not isinstance(bundle, dict):
        raise ProofError("the bundle is not a JSON object")
    return bundle


# -- the whole store --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    record_id: str
    batch_id: str | None
    reason: str


def verify_store(
    store: Store,
    batcher: Batcher,
    registry: AnchorRegistry,
    since_us: int | None = None,
    until_us: int | None = None,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> list[Finding]:
    """Re-hash every anchored record (of batches closed in the time range) against the chain."""
    batches = [
        b
        for b in batcher.batches(statuses=(ANCHORED, CONFIRMED))
        if (since_us is None or b.closed_at_us >= since_us)
        and (until_us is None or b.closed_at_us <= until_us)
    ]
    findings: list[Finding] = []
    for done, batch in enumerate(batches, start=1):
        findings += _verify_batch(store, batcher, registry, batch)
        progress(done, len(batches))
    findings += [
        Finding(r, None, "inserted after anchoring: no outbox row") for r in _orphans(store)
    ]
    return findings


def _verify_batch(
    store: Store, batcher: Batcher, registry: AnchorRegistry, batch: Batch
) -> list[Finding]:
    try:
        on_chain = registry.batch(batch.batch_id)
    except ChainError as exc:
        return [Finding("*", batch.batch_id, f"batch not verifiable on-chain: {exc}")]
    try:
        tree = batcher.manifest(batch)
    except StoreError as exc:
        return [Finding("*", batch.batch_id, str(exc))]
    if tree.root != on_chain.root.lower() or batch.manifest_hash != on_chain.manifest_hash.lower():
        return [Finding("*", batch.batch_id, "manifest does not match the anchored root")]
    anchored = {
        str(item["value"][0]).lower(): str(item["value"][1]).lower()
        for item in tree.dump()["values"]
    }
    current = {r.record_id: r for r in batcher.records_of(batch)}
    findings = []
    for record_id, anchored_hash in anchored.items():
        record = current.get(record_id)
        if record is None:
            findings.append(Finding(record_id, batch.batch_id, "deleted after anchoring"))
        elif (reason := _altered(store, record, anchored_hash)) is not None:
            findings.append(Finding(record_id, batch.batch_id, reason))
    for record_id in current.keys() - anchored.keys():
        findings.append(Finding(record_id, batch.batch_id, "inserted after anchoring"))
    return findings


def _altered(store: Store, record: StoredRecord, anchored_hash: str) -> str | None:
    if content_hash(record.canonical()) != anchored_hash:
        return "altered after anchoring: its content no longer hashes to the anchored leaf"
    private = store.private_part(record.record_id)
    if (private is None) != (record.private_commitment is None):
        return "private fields added or removed after anchoring"
    if private and commit_private(private.salt, canonical_json(private.values)) != (
        record.private_commitment
    ):
        return "private fields altered after anchoring: they no longer match the commitment"
    return None


def _orphans(store: Store) -> list[str]:
    """Records with no outbox row: written around the batch API, so never anchored."""
    with store.transaction() as connection:
        rows = connection.execute(
            select(RECORDS.c.record_id)
            .outerjoin(OUTBOX, OUTBOX.c.record_id == RECORDS.c.record_id)
            .where(OUTBOX.c.record_id.is_(None))
        ).all()
    return [row.record_id for row in rows]
