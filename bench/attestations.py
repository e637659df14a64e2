"""EIP-712 attestations signed per second, fast signer vs eth_account; then records/s to Hardhat.

Signing runs on one core (the process is pinned to CPU 0 while it is measured): the node's fast
path (precomputed type hashes and domain separator, byte-concatenated structs, keccak256 from
safe-pysha3, coincurve on the digest) against the reference path (``encode_typed_data`` +
``Account.sign_message``), both from the same field values (a Decimal measured value included),
alternating rounds. Target: >= 2,000 attestations signed/s.

Recording (skip with ``--no-chain``) starts a Hardhat node, deploys a one-member Consortium and a
QualityLedger, and relays pre-signed inspection results as pipelined raw transactions (explicit gas,
nonce order) through the node's TransactionSender, every receipt checked.

Run: ``.venv/bin/python bench/attestations.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.chain.connection import rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.localnode import LocalChain, free_port
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TransactionSender
from node.keys import hardhat_dev_key
from node.oracles.attestation import (
    AttestationKind,
    AttestationSigner,
    LedgerDomain,
    build_typed_data,
)

TARGET_SIGNED_PER_SECOND = 2_000
RECORD_GAS = 600_000
DOMAIN = LedgerDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def inspection_fields(index: int, deadline: int = 2**40) -> dict[str, Any]:
    return {
        "recordId": "0x" + index.to_bytes(32, "big").hex(),
        "subject": f"https://id.gs1.org/01/09506000134352/10/LOT-{index // 100:05d}",
        "characteristic": "coating_thickness",
        "value": Decimal(f"85.{index % 100:02d}"),
        "unit": "4H",
        "verdict": "pass" if index % 7 else "fail",
        "observedAtUs": 1_764_062_130_000_000 + index,
        "contentHash": "0x" + (index + 1).to_bytes(32, "big").hex(),
        "nonce": index,
        "deadline": deadline,
    }


def fast_round(signer: AttestationSigner, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        signer.sign(AttestationKind.INSPECTION, inspection_fields(index))
    return count / (time.perf_counter() - started)


def reference_round(key: bytes, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        typed = build_typed_data(AttestationKind.INSPECTION, inspection_fields(index), DOMAIN)
        Account.sign_message(encode_typed_data(full_message=typed), key)
    return count / (time.perf_counter() - started)


def bundle_round(signer: AttestationSigner, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        signer.sign(AttestationKind.INSPECTION, inspection_fields(index)).to_json()
    return count / (time.perf_counter() - started)


def rates(rounds: list[float]) -> str:
    return f"{statistics.median(rounds):9.0f}/s (rounds: {', '.join(f'{r:.0f}' for r in rounds)})"


def bench_signing(count: int, rounds: int) -> None:
    oracle = Account.create()
    signer = AttestationSigner(oracle, DOMAIN)
    reference_count = max(count // 10, 50)
    runs: dict[str, Callable[[], float]] = {
        "fast signer (coincurve on the digest)": lambda: fast_round(signer, count),
        "fast signer + bundle JSON": lambda: bundle_round(signer, count),
        "reference (encode_typed_data + sign_message)": lambda: reference_round(
            bytes(oracle.key), reference_count
        ),
    }
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if affinity is not None:
        os.sched_setaffinity(0, {min(affinity)})
    try:
        for run in runs.values():
            run()  # warm-up
        results: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                results[name].append(run())
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)

    print(f"EIP-712 InspectionResult attestations, one core, {rounds} rounds, median:")
    for name, measured in results.items():
        print(f"  {name:46s} {rates(measured)}")
    fast = statistics.median(results["fast signer (coincurve on the digest)"])
    reference = statistics.median(results["reference (encode_typed_data + sign_message)"])
    verdict = "meets" if fast >= TARGET_SIGNED_PER_SECOND else "MISSES"
    print(f"  ratio fast/reference = {fast / reference:.1f}x")
    print(
        f"  fast signer: {fast:.0f} signed/s ({verdict} the {TARGET_SIGNED_PER_SECOND:,}/s target)"
    )


def bench_recording(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="qnode-bench-") as run_dir:
        chain = LocalChain(Path(run_dir))
        status = chain.start(port=free_port())
        try:
            assert status.url is not None
            connection = rpc_chain(status.url)
            member = TransactionSender(connection, hardhat_dev_key(0))
            founders = [Founder(member.address, Role.MANUFACTURER, "Aster Motors", "")]
            consortium, _ = Consortium.deploy(member, founders, 1, 3600)
            ledger, _ = QualityLedger.deploy(member, consortium.address, 1)
            oracle = Account.create()
            consortium.register_oracle(oracle.address)
            signer = AttestationSigner(oracle, ledger.domain())
            deadline = int(connection.w3.eth.get_block("latest")["timestamp"]) + 86_400

            started = time.perf_counter()
            attestations = [
                signer.sign(
                    AttestationKind.INSPECTION, inspection_fields(i + 1, deadline) | {"nonce": i}
                )
                for i in range(count)
            ]
            signed = time.perf_counter()
            sent = [member.send(ledger.record_request(a, gas=RECORD_GAS)) for a in attestations]
            receipts = member.wait_all(sent)
            done = time.perf_counter()
            assert ledger.record_count() == count
            gas = statistics.median(r.gas_used for r in receipts)
        finally:
            chain.stop()
    print(f"Recording {count} inspection results to Hardhat (automine), pipelined, checked:")
    print(f"  signing {count / (signed - started):9.0f}/s")
    print(f"  sending + receipts {count / (done - signed):9.0f} records/s (median gas {gas:.0f})")
    print(f"  end to end {count / (done - started):9.0f} records/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="attestations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=500, help="records sent to Hardhat")
    parser.add_argument("--no-chain", action="store_true", help="skip the Hardhat part")
    args = parser.parse_args()
    bench_signing(args.count, args.rounds)
    if not args.no_chain:
        bench_recording(args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
