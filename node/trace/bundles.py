"""Proof bundles and attestations of many records at once, for the trace.

The bundles are the ones the verifier API serves (``qnode-proof-v1``, see
:meth:`node.api.verification.Verifier.proof_bundle`), built faster for a trace's few hundred
records spread over many batches: a batch's tree is read from its manifest once (its node array,
without re-hashing every leaf: whoever receives a bundle checks it against the on-chain root
anyway) and kept in a bounded LRU cache (32 bytes a node: 256 KiB for a 4,096-leaf batch). A leaf
is found by binary search among the tree's leaves, which a standard tree keeps sorted; a tree laid
out otherwise is searched through its manifest's values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from node.anchoring.batcher import ANCHORED, CONFIRMED
from node.anchoring.merkle import standard_leaf_hash
from node.anchoring.proofs import BUNDLE_FORMAT
from node.errors import StoreError
from node.offchain.models import AttestationRow, Base
from node.offchain.records import LEAF_ENCODING, StoredRecord
from node.offchain.store import BATCHES, OUTBOX, Store

ATTESTATIONS = Base.metadata.tables[AttestationRow.__tablename__]
_IN_BATCH = 500


@dataclass(frozen=True)
class _Tree:
    nodes: bytes
    """The node array, 32 bytes a node."""
    count: int
    """Leaves."""
    positions: Mapping[str, int] | None
    """record id -> tree index, for a tree whose leaves are not in standard order."""

    def node(self, index: int) -> bytes:
        return self.nodes[32 * index : 32 * index + 32]

    def find(self, record_id: str, leaf: bytes) -> int | None:
        if self.positions is not None:
            return self.positions.get(record_id)
        low, high = self.count - 1, 2 * self.count - 2  # leaves, descending by hash
        while low <= high:
            middle = (low + high) // 2
            here = self.node(middle)
            if here == leaf:
                return middle
            if here > leaf:
                low = middle + 1
            else:
                high = middle - 1
        return None

    def proof(self, index: int) -> list[str]:
        proof = []
        while index > 0:
            sibling = index + 1 if index % 2 else index - 1
            proof.append("0x" + self.node(sibling).hex())
            index = (index - 1) // 2
        return proof


class BundleSource:
    def __init__(self, store: Store, cached_batches: int = 256) -> None:
        self.store = store
        self.cached_batches = cached_batches
        self._trees: OrderedDict[str, _Tree] = OrderedDict()
        self._lock = threading.Lock()

    def bundles(self, records: Sequence[StoredRecord]) -> dict[str, dict[str, Any]]:
        """The proof bundle of each record that is anchored (the others are left out)."""
        by_id = {r.record_id: r for r in records}
        batches: dict[str, Any] = {}
        members: dict[str, list[str]] = {}
        ids = sorted(by_id)
        with self.store.transaction() as connection:
            for start in range(0, len(ids), _IN_BATCH):
                rows = connection.execute(
                    select(OUTBOX.c.record_id, BATCHES)
                    .join(BATCHES, BATCHES.c.batch_id == OUTBOX.c.batch_id)
                    .where(OUTBOX.c.record_id.in_(ids[start : start + _IN_BATCH]))
                    .where(BATCHES.c.status.in_((ANCHORED, CONFIRMED)))
                ).all()
                for row in rows:
                    batches[row.batch_id] = row
                    members.setdefault(row.batch_id, []).append(row.record_id)
        found: dict[str, dict[str, Any]] = {}
        for batch_id, record_ids in members.items():
            batch = batches[batch_id]
            tree = self._tree(batch)
            root = "0x" + tree.node(0).hex()
            if root != str(batch.root).lower():
                raise StoreError(f"the manifest of batch {batch_id} does not match its root")
            for record_id in record_ids:
                record = by_id[record_id]
                leaf_value = [record.record_id, record.content_hash]
                leaf = standard_leaf_hash(LEAF_ENCODING, leaf_value)
                index = tree.find(record.record_id, leaf)
                if index is None:
                    # altered after anchoring: serve the proof of the anchored leaf, which
                    # the record no longer hashes to (whoever checks it sees it was altered)
                    index = self._anchored_index(batch, record.record_id)
                    if index is None:
                        continue
                    leaf = tree.node(index)
                found[record_id] = {
                    "format": BUNDLE_FORMAT,
                    "record": record.canonical(),
                    "leafEncoding": list(LEAF_ENCODING),
                    "leafValue": leaf_value,
                    "leafHash": "0x" + leaf.hex(),
                    "proof": tree.proof(index),
                    "root": root,
                    "batchId": batch_id,
                    "anchor": {
                        "chainId": batch.chain_id,
                        "contract": batch.contract,
                        "txHash": batch.tx_hash,
                        "blockNumber": batch.block_number,
                        "oracle": batch.oracle,
                    },
                }
        return found

    def _tree(self, batch: Any) -> _Tree:
        with self._lock:
            tree = self._trees.get(batch.batch_id)
            if tree is not None:
                self._trees.move_to_end(batch.batch_id)
                return tree
        dump = self._manifest(batch)
        nodes = bytes.fromhex("".join(str(n)[2:] for n in dump["tree"]))
        count = len(dump["values"])
        tree = _Tree(nodes, count, None)
        first = dump["values"][0] if count else None
        if first is not None and self._standard_layout(tree, dump) is False:
            positions = {str(v["value"][0]).lower(): int(v["treeIndex"]) for v in dump["values"]}
            tree = _Tree(nodes, count, positions)
        with self._lock:
            self._trees[batch.batch_id] = tree
            while len(self._trees) > self.cached_batches:
                self._trees.popitem(last=False)
        return tree

    def _manifest(self, batch: Any) -> dict[str, Any]:
        try:
            dump = orjson.loads(self.store.blobs.get(batch.manifest_blob))
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"the manifest of batch {batch.batch_id} is not JSON") from exc
        if not isinstance(dump, dict) or not dump.get("tree") or not dump.get("values"):
            raise StoreError(f"the manifest of batch {batch.batch_id} is malformed")
        return dump

    @staticmethod
    def _standard_layout(tree: _Tree, dump: Mapping[str, Any]) -> bool:
        """Whether the leaves sit where a sorted standard tree puts them (checked on one)."""
        entry = dump["values"][len(dump["values"]) // 2]
        leaf = standard_leaf_hash(LEAF_ENCODING, entry["value"])
        return tree.find(str(entry["value"][0]).lower(), leaf) == int(entry["treeIndex"])

    def _anchored_index(self, batch: Any, record_id: str) -> int | None:
        for entry in self._manifest(batch)["values"]:
            if str(entry["value"][0]).lower() == record_id:
                return int(entry["treeIndex"])
        return None

    def attestations(self, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The latest attestation bundle of each record that has one (a confirmed one first)."""
        ids = sorted({r.lower() for r in record_ids})
        best: dict[str, tuple[tuple[int, int], str]] = {}
        with self.store.transaction() as connection:
            for start in range(0, len(ids), _IN_BATCH):
                rows = connection.execute(
                    select(
                        ATTESTATIONS.c.record_id,
                        ATTESTATIONS.c.status,
                        ATTESTATIONS.c.created_at_us,
                        ATTESTATIONS.c.bundle_json,
                    ).where(ATTESTATIONS.c.record_id.in_(ids[start : start + _IN_BATCH]))
                ).all()
                for row in rows:
                    rank = (int(row.status == "confirmed"), int(row.created_at_us))
                    if row.record_id not in best or best[row.record_id][0] < rank:
                        best[row.record_id] = (rank, row.bundle_json)
        found: dict[str, dict[str, Any]] = {}
        for record_id, (_, text) in best.items():
            try:
                bundle = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(bundle, dict):
                found[record_id] = bundle
        return found
