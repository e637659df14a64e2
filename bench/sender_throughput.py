"""Transactions per second of the node's sender against Hardhat, next to a plain web3 script.

The plain script sends transactions signed beforehand (``w3.eth.send_raw_transaction``); the node's
sender signs each one as it goes, manages the nonce and checks every receipt. Both send a batch
without waiting, then collect every receipt, on the same Hardhat node (automine), alternating
rounds so that drift hits both alike. Run: ``.venv/bin/python bench/sender_throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.chain.connection import rpc_chain
from node.chain.localnode import LocalChain, free_port
from node.chain.sender import TransactionSender, TxRequest
from node.keys import hardhat_dev_key

TRANSFER_GAS = 21_000
TARGET_RATIO = 0.80


def plain_round(w3: Web3, account: LocalAccount, to: str, count: int) -> float:
    """Pre-sign ``count`` transfers, then time sending them and collecting their receipts."""
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    block = w3.eth.get_block("latest")
    fees = {"maxFeePerGas": 2 * int(block["baseFeePerGas"]) + 10**9, "maxPriorityFeePerGas": 10**9}
    raws = [
        account.sign_transaction(
            {
                "chainId": w3.eth.chain_id,
                "nonce": nonce + i,
                "to": to,
                "value": 1,
                "gas": TRANSFER_GAS,
                **fees,
            }
        ).raw_transaction
        for i in range(count)
    ]
    started = time.perf_counter()
    hashes = [w3.eth.send_raw_transaction(raw) for raw in raws]
    for tx_hash in hashes:
        assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return count / (time.perf_counter() - started)


def node_round(sender: TransactionSender, to: str, count: int, gas: int | None) -> float:
    """Time the node's sender signing, sending and checking ``count`` transfers."""
    started = time.perf_counter()
    sent = [sender.send(TxRequest(to=to, value=1, gas=gas, label="transfer")) for _ in range(count)]
    sender.wait_all(sent)
    return count / (time.perf_counter() - started)


def median_rate(rounds: list[float]) -> str:
    return (
        f"{statistics.median(rounds):7.1f} tx/s (rounds: {', '.join(f'{r:.0f}' for r in rounds)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="transactions per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qnode-bench-") as run_dir:
        chain = LocalChain(Path(run_dir))
        status = chain.start(port=free_port())
        try:
            assert status.url is not None
            plain_w3 = Web3(HTTPProvider(status.url))
            connection = rpc_chain(status.url)
            plain_account, node_account = hardhat_dev_key(10), hardhat_dev_key(11)
            sender = TransactionSender(connection, node_account)
            to = hardhat_dev_key(12).address
            runs: dict[str, Callable[[], float]] = {
                "plain web3, pre-signed raw": lambda: plain_round(
                    plain_w3, plain_account, to, args.count
                ),
                "node sender (sign+nonce+checked receipts)": lambda: node_round(
                    sender, to, args.count, TRANSFER_GAS
                ),
                "node sender, gas estimated per tx": lambda: node_round(
                    sender, to, args.count // 4, None
                ),
            }
            for run in runs.values():
                run()  # warm-up: connections, caches, the JIT in Hardhat's EDR
            results: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    results[name].append(run())
        finally:
            chain.stop()

    plain = statistics.median(results["plain web3, pre-signed raw"])
    node = statistics.median(results["node sender (sign+nonce+checked receipts)"])
    print(f"Hardhat automine, {args.count} transfers per round, {args.rounds} rounds, median:")
    for name, rounds in results.items():
        print(f"  {name:44s} {median_rate(rounds)}")
    ratio = node / plain
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"  ratio node/plain = {ratio:.2f} ({verdict} the {TARGET_RATIO:.0%} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
