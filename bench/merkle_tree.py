"""Time to build a 1,000,000-leaf OpenZeppelin StandardMerkleTree (issue 3: <= 10 s on 2 cores).

In one run:
* build a 1,000,000-leaf tree for each leaf encoding ["bytes32", "bytes32"] and
  ["bytes32", "uint64", "bytes32"] (the target applies to each build);
* dump one (``tree.dump()``, then ``json.dumps`` of it) and load that JSON back;
* produce and verify 10,000 proofs (``get_proof`` + the static ``verify_proof``);
* baseline: the same tree built the plain way, ``eth_abi.encode`` per leaf and ``eth_utils.keccak``
  for every hash, timed on a 100,000-leaf sample and extrapolated linearly to 1,000,000 leaves
  (and once more with ``eth_abi.encode`` but this module's keccak, to split the gain in two).

Run: ``.venv/bin/python bench/merkle_tree.py`` (``--help`` for sizes). Exits 1 if the target is
missed. Input generation is not timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak as eth_utils_keccak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.anchoring.merkle import KECCAK_BACKEND, StandardMerkleTree
from node.hashing import keccak256 as node_keccak

TARGET_SECONDS = 10.0
ENCODINGS: list[list[str]] = [["bytes32", "bytes32"], ["bytes32", "uint64", "bytes32"]]


def make_values(encoding: Sequence[str], count: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    columns: list[list[Any]] = []
    for type_str in encoding:
        if type_str == "bytes32":
            blob = rng.randbytes(32 * count)
            columns.append([blob[i : i + 32] for i in range(0, 32 * count, 32)])
        elif type_str == "uint64":
            columns.append([rng.getrandbits(64) for _ in range(count)])
        else:  # pragma: no cover - only the encodings above are benchmarked
            raise ValueError(type_str)
    return list(zip(*columns, strict=True))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def plain_root(
    values: Sequence[tuple[Any, ...]], encoding: list[str], keccak: Callable[[bytes], bytes]
) -> str:
    """The straightforward build: eth_abi.encode per leaf, then the npm library's algorithm."""
    leaves = sorted(keccak(keccak(abi_encode(encoding, value))) for value in values)
    tree: list[bytes] = [b""] * (len(leaves) - 1) + leaves[::-1]
    for i in range(len(leaves) - 2, -1, -1):
        a, b = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak(a + b if a <= b else b + a)
    return "0x" + tree[0].hex()


def load_json(text: str) -> StandardMerkleTree:
    return StandardMerkleTree.load(json.loads(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000, help="baseline sample size")
    parser.add_argument("--proofs", type=int, default=10_000)
    args = parser.parse_args()

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU(s); "
        f"keccak backend: {KECCAK_BACKEND}"
    )
    print(f"target: a {args.leaves:,}-leaf tree in <= {TARGET_SECONDS:.0f} s")
    builds: dict[str, float] = {}
    kept: tuple[list[str], list[tuple[Any, ...]], StandardMerkleTree] | None = None
    for seed, encoding in enumerate(ENCODINGS):
        values = make_values(encoding, args.leaves, seed)
        gc.collect()
        seconds, tree = timed(lambda: StandardMerkleTree.of(values, encoding))  # noqa: B023
        builds[json.dumps(encoding)] = seconds
        print(
            f"build  {args.leaves:>9,} leaves {json.dumps(encoding):<32} {seconds:6.2f} s  "
            f"({args.leaves / seconds:,.0f} leaves/s)  root {tree.root[:18]}…"
        )
        kept = (encoding, values, tree)
    assert kept is not None
    encoding, values, tree = kept

    seconds, dump = timed(tree.dump)
    print(f"dump   {args.leaves:>9,} leaves: tree.dump() {seconds:6.2f} s", end="")
    seconds, text = timed(partial(json.dumps, dump))
    print(f", json.dumps {seconds:.2f} s ({len(text) / 1e6:,.0f} MB)", end="")
    del dump
    seconds, loaded = timed(partial(load_json, text))
    print(f"; json.loads + load (re-hashes everything) {seconds:.2f} s")
    assert loaded.root == tree.root
    del loaded, text

    rng = random.Random(7)
    picks = [rng.randrange(len(values)) for _ in range(args.proofs)]
    root = tree.root

    def prove_and_verify() -> None:
        for index in picks:
            proof = tree.get_proof(index)
            if not StandardMerkleTree.verify_proof(root, encoding, values[index], proof):
                raise AssertionError(f"proof {index} does not verify")

    seconds, _ = timed(prove_and_verify)
    print(
        f"proofs {args.proofs:>9,} produced + verified: {seconds:6.2f} s "
        f"({seconds / args.proofs * 1e6:.0f} µs each, {len(tree.get_proof(0))} nodes per proof)"
    )

    sample = values[: args.sample]
    scale = args.leaves / len(sample)
    fast_seconds, fast_tree = timed(lambda: StandardMerkleTree.of(sample, encoding))
    plain_seconds, plain = timed(lambda: plain_root(sample, encoding, eth_utils_keccak))
    mixed_seconds, mixed = timed(lambda: plain_root(sample, encoding, node_keccak))
    assert plain == mixed == fast_tree.root, "the baseline disagrees with the fast build"
    print(
        f"baseline on a {len(sample):,}-leaf sample of {json.dumps(encoding)}, "
        f"extrapolated x{scale:g} to {args.leaves:,} leaves (same root as the fast build):"
    )
    for label, sample_seconds in (
        ("eth_abi.encode + eth_utils.keccak", plain_seconds),
        ("eth_abi.encode + node.hashing.keccak256", mixed_seconds),
        ("this module (fast path)", fast_seconds),
    ):
        print(
            f"  {label:<38} {sample_seconds:6.2f} s -> ~{sample_seconds * scale:6.1f} s "
            f"({sample_seconds / fast_seconds:4.1f}x the fast path)"
        )

    worst = max(builds.values())
    verdict = "MEETS" if worst <= TARGET_SECONDS else "MISSES"
    print(f"verdict: slowest build {worst:.2f} s: {verdict} the <= {TARGET_SECONDS:.0f} s target")
    return 0 if worst <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
