"""A node process for the crash tests: store records, close batches, anchor them; repeat.

Usage: python -m tests.anchoring.crash_worker STORE_URL BLOB_DIR RPC_URL REGISTRY ORACLE_KEY
       MEMBER TARGET. It stops once TARGET records are stored and everything is anchored.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from eth_account import Account

from node.anchoring.batcher import Batcher, BatchPolicy
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import rpc_chain
from node.chain.sender import TransactionSender
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store

RECORDS_PER_WRITE = 25


def main(argv: list[str]) -> int:
    store_url, blob_dir, rpc_url, registry_address, oracle_key, member, target = argv
    store = Store.open(
        store_url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(Path(blob_dir))
    )
    batcher = Batcher(store, member, BatchPolicy(max_leaves=40, max_age_s=0.05))
    sender = TransactionSender(rpc_chain(rpc_url), Account.from_key(oracle_key))
    registry = AnchorRegistry.at(sender, registry_address)
    while True:
        stored = store.count_records()
        if stored < int(target):
            now = time.time_ns() // 1000
            store.add_records(
                [
                    RecordInput(
                        "environment", {"area": "dry room", "temperature_c": 21.5 + i / 10}, now + i
                    )
                    for i in range(min(RECORDS_PER_WRITE, int(target) - stored))
                ]
            )
        batcher.close_batches(force=stored >= int(target))
        batcher.anchor_pending(registry)
        if stored >= int(target) and batcher.queued() == 0:
            print("drained", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
