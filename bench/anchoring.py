"""Off-chain store and anchoring throughput, and gas per anchored record.

Figures, in one run:
* records/s into the store through the batch API, on SQLite and (when QNODE_TEST_POSTGRES_URL or
  --postgres is given) PostgreSQL;
* records/s end to end: stored, batched, anchored on a Hardhat node, receipts checked;
* gas per record: batches of --leaves anchored in one transaction each, against the baseline of one
  anchor transaction per record, measured in the same run on the same chain.
Run: ``.venv/bin/python bench/anchoring.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from eth_account import Account
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.anchoring.batcher import Batcher, BatchPolicy
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.localnode import LocalChain, free_port
from node.chain.sender import TransactionSender
from node.keys import hardhat_dev_key
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store

TARGET_STORE_RATE = 50_000
TARGET_GAS_PER_RECORD = 100


def sample(count: int) -> list[RecordInput]:
    start = time.time_ns() // 1000
    return [
        RecordInput(
            "coating_thickness",
            {
                "line": "C2",
                "station": f"S{i % 4}",
                "thickness_um": 98.0 + (i % 97) / 100,
                "operator_id": "badge-20931",
            },
            start + i * 500_000,
        )
        for i in range(count)
    ]


def open_store(url: str, directory: Path) -> Store:
    return Store.open(url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(directory))


def store_rate(store: Store, total: int, batch: int) -> float:
    inputs = sample(total)
    started = time.perf_counter()
    for offset in range(0, total, batch):
        store.add_records(inputs[offset : offset + batch])
    return total / (time.perf_counter() - started)


def postgres_url(base: str) -> tuple[str, str]:
    schema = f"qnode_bench_{uuid.uuid4().hex[:8]}"
    with create_engine(base).begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    with create_engine(base).begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000, help="records per add_records call")
    parser.add_argument("--leaves", type=int, default=4096, help="leaves per anchored batch")
    parser.add_argument(
        "--per-record-baseline",
        type=int,
        default=50,
        help="records anchored one transaction each, for the gas baseline",
    )
    parser.add_argument("--postgres", default=os.environ.get("QNODE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qnode-bench-"))

    print(
        f"store, batch API, {args.rounds} rounds of {args.records} records in calls of "
        f"{args.batch}, median (rounds):"
    )
    sqlite = open_store(f"sqlite:///{work / 'store.db'}", work / "blobs")
    rounds = [store_rate(sqlite, args.records, args.batch) for _ in range(args.rounds)]
    rate = statistics.median(rounds)
    verdict = "meets" if rate >= TARGET_STORE_RATE else "MISSES"
    print(
        f"  SQLite (WAL)   {rate:9.0f} records/s ({verdict} the {TARGET_STORE_RATE} target; "
        f"{', '.join(f'{r:.0f}' for r in rounds)})"
    )
    if args.postgres:
        url, schema = postgres_url(args.postgres)
        try:
            pg = open_store(url, work / "pg-blobs")
            print(
                f"  PostgreSQL     {store_rate(pg, args.records // 2, args.batch):9.0f} records/s"
            )
            pg.close()
        finally:
            drop_schema(args.postgres, schema)
    else:
        print("  PostgreSQL     skipped (no --postgres / QNODE_TEST_POSTGRES_URL)")

    chain = LocalChain(work / "chain")
    status = chain.start(port=free_port())
    try:
        assert status.url is not None
        connection = rpc_chain(status.url)
        member = TransactionSender(connection, hardhat_dev_key(0))
        founder = Founder(member.address, Role.MANUFACTURER, "Bench Motors", "http://b.test")
        consortium, _ = Consortium.deploy(member, [founder], 1, 3600)
        oracle = Account.create()
        member.transfer(oracle.address, 10**20)
        consortium.register_oracle(oracle.address)
        registry, _ = AnchorRegistry.deploy(member, consortium.address)
        as_oracle = AnchorRegistry.at(TransactionSender(connection, oracle), registry.address)

        end_to_end = open_store(f"sqlite:///{work / 'e2e.db'}", work / "e2e-blobs")
        batcher = Batcher(end_to_end, member.address, BatchPolicy(args.leaves, 5.0))
        total = args.leaves * 8
        started = time.perf_counter()
        for offset in range(0, total, args.batch):
            end_to_end.add_records(sample(min(args.batch, total - offset)))
        batcher.close_batches(force=True)
        anchored = batcher.anchor_pending(as_oracle)
        elapsed = time.perf_counter() - started
        print(
            f"end to end, {total} records stored, batched by {args.leaves} and anchored "
            f"on Hardhat: {total / elapsed:.0f} records/s ({len(anchored)} anchors)"
        )

        batch_gas = [
            connection.w3.eth.get_transaction_receipt(b.tx_hash)["gasUsed"]  # type: ignore[arg-type]
            for b in anchored
        ]
        per_record_batched = sum(batch_gas) / total
        single = open_store(f"sqlite:///{work / 'single.db'}", work / "single-blobs")
        one_by_one = Batcher(single, member.address, BatchPolicy(1, 5.0))
        single.add_records(sample(args.per_record_baseline))
        one_by_one.close_batches()
        singles = one_by_one.anchor_pending(as_oracle)
        single_gas = [
            connection.w3.eth.get_transaction_receipt(b.tx_hash)["gasUsed"]  # type: ignore[arg-type]
            for b in singles
        ]
        per_record_single = sum(single_gas) / len(single_gas)
        verdict = "meets" if per_record_batched <= TARGET_GAS_PER_RECORD else "MISSES"
        print(
            f"gas per record: {per_record_batched:.1f} in {args.leaves}-leaf batches "
            f"({verdict} the ≤ {TARGET_GAS_PER_RECORD} target) against {per_record_single:.0f} "
            f"per record alone: {per_record_single / per_record_batched:.0f} times less"
        )
    finally:
        chain.stop()
    print("1,000,000-leaf tree: see bench/merkle_tree.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
