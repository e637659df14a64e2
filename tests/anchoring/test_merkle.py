"""node.anchoring.merkle against the npm library it must match: @openzeppelin/merkle-tree.

The JavaScript side runs the real package from hardhat-local/node_modules through ``node``; without
Node.js or the package those tests skip (fail under CI=true). Both directions are checked: trees
built here are dumped, loaded by ``StandardMerkleTree.load`` and their proofs checked with
``StandardMerkleTree.verify``; trees built in JS are loaded here, with equal roots and proofs.

On-chain verification with OpenZeppelin's ``MerkleProof.verify`` goes through the AnchorRegistry
contract and is tested with it (tests/chain/test_anchor_registry.py), not here.
"""

from __future__ import annotations

import copy
import gc
import json
import random
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from node.anchoring.merkle import (
    DUMP_FORMAT,
    MerkleError,
    MultiProof,
    StandardMerkleTree,
    hash_pair,
    process_multiproof,
    process_proof,
    standard_leaf_hash,
)
from node.errors import QnodeError
from tests.hardhat_node import in_ci

HARDHAT_LOCAL = Path(__file__).resolve().parents[2] / "hardhat-local"
MERKLE_PACKAGE = HARDHAT_LOCAL / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"

# ------------------------------------------------------------------------- the JavaScript side

# `require` resolves from the script's own directory, not the working directory, so the script
# (in a temporary directory) asks for a require rooted in hardhat-local instead.
JS_PRELUDE = r"""
const { createRequire } = require('module');
const { StandardMerkleTree } = createRequire(process.cwd() + '/')('@openzeppelin/merkle-tree');
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
function run(c) {
  if (c.op === 'of') {
    const t = StandardMerkleTree.of(c.values, c.encoding, { sortLeaves: c.sortLeaves });
    return {
      root: t.root,
      dump: t.dump(),
      proofs: c.values.map((_, i) => t.getProof(i)),
      proofsByValue: c.values.map(v => t.getProof(v)),
      leafHashes: c.values.map(v => t.leafHash(v)),
      render: t.render(),
      multi: c.multi ? t.getMultiProof(c.multi) : null,
    };
  }
  if (c.op === 'load') {
    const t = StandardMerkleTree.load(c.dump);
    return {
      root: t.root,
      dump: t.dump(),
      proofs: t.dump().values.map((_, i) => t.getProof(i)),
      verified: c.checks.map(
        k => StandardMerkleTree.verify(c.root, t.leafEncoding, k.value, k.proof)),
    };
  }
  throw new Error('unknown op ' + c.op);
}
const out = input.map(c => {
  try { return { ok: run(c) }; } catch (e) { return { error: String(e) }; }
});
process.stdout.write(JSON.stringify(out));
"""

JsRunner = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def js(tmp_path_factory: pytest.TempPathFactory) -> JsRunner:
    """Run cases through the npm library: a list of {op, ...} in, a list of results out."""
    reason = None
    if shutil.which("node") is None:
        reason = "Node.js (`node`) is not on PATH"
    elif not MERKLE_PACKAGE.is_file():
        reason = f"{MERKLE_PACKAGE.parent} is missing: run npm ci in hardhat-local"
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true and the npm merkle-tree library is unavailable: {reason}")
        pytest.skip(f"npm @openzeppelin/merkle-tree unavailable: {reason}")
    directory = tmp_path_factory.mktemp("merkle-js")
    script = directory / "merkle.js"
    script.write_text(JS_PRELUDE)
    calls = 0

    def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        data = directory / f"input-{calls}.json"
        data.write_text(json.dumps(cases))
        done = subprocess.run(
            ["node", str(script), str(data)],
            cwd=HARDHAT_LOCAL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        results: list[dict[str, Any]] = json.loads(done.stdout)
        for case, result in zip(cases, results, strict=True):
            assert "error" not in result, f"JS failed on {case['op']}: {result['error']}"
        return [result["ok"] for result in results]

    return run


# ------------------------------------------------------------------------------------ vectors

_rng = random.Random(4717)


def _h(n: int = 32) -> str:
    return "0x" + _rng.randbytes(n).hex()


def _address() -> str:
    return str(to_checksum_address(_rng.randbytes(20)))


# Values in the form the npm library's dump holds them (and JS callers write them): numbers as
# decimal strings, bytes as 0x lower-case hex, addresses as given, bools and strings as themselves.
CASES: dict[str, tuple[list[str], list[list[Any]]]] = {
    "address-uint256": (
        ["address", "uint256"],
        [
            ["0x1111111111111111111111111111111111111111", "5000000000000000000"],
            ["0x2222222222222222222222222222222222222222", "2500000000000000000"],
            [_address(), str(2**256 - 1)],
            [_address().lower(), "0"],
            [_address(), "1"],
        ],
    ),
    "bytes32-bytes32": (["bytes32", "bytes32"], [[_h(), _h()] for _ in range(7)]),
    "bytes32-uint64-bytes32": (
        ["bytes32", "uint64", "bytes32"],
        [[_h(), str(_rng.getrandbits(64)), _h()] for _ in range(9)],
    ),
    "string-bool-address": (
        ["string", "bool", "address"],
        [
            ["", True, _address()],
            ["héllo ✓ 溫度", False, _address()],
            ["x" * 100, True, _address().lower()],
        ],
    ),
    "ints-and-bytes": (
        ["uint8", "int256", "bytes4", "bytes", "int64"],
        [
            ["255", "-1", "0xdeadbeef", "0x", "-9223372036854775808"],
            ["0", str(-(2**255)), "0x00000000", "0x" + "ab" * 70, "9223372036854775807"],
            ["7", str(2**255 - 1), "0x01020304", "0x00", "0"],
        ],
    ),
    "arrays-and-tuples": (
        ["address[]", "(uint256,string)", "bytes32[2]"],
        [
            [[_address(), _address()], ["7", "seven"], [_h(), _h()]],
            [[], ["0", ""], [_h(), _h()]],
        ],
    ),
    "single-leaf": (["bytes32"], [[_h()]]),
    "duplicates": (["uint256"], [["1"], ["2"], ["1"], ["3"], ["2"]]),
}

# A fixed vector, computed by @openzeppelin/merkle-tree 1.0.8 (so it runs without Node.js too).
KNOWN_VALUES = [
    ["0x1111111111111111111111111111111111111111", "5000000000000000000"],
    ["0x2222222222222222222222222222222222222222", "2500000000000000000"],
    ["0x3333333333333333333333333333333333333333", "1"],
]
KNOWN_DUMP = {
    "format": "standard-v1",
    "leafEncoding": ["address", "uint256"],
    "tree": [
        "0xd673f832e8ae578ea16450035956e30f27212b91d6cd26edbef07c90546302ff",
        "0x8d00bd8d33bd92e6ade0ba2d87958d59727515200df528502b93c99dd3fa0256",
        "0xeb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283",
        "0xc3d2e29c8ded2ca4aa700f83273d097a3fb1683f4b5f291a8ee7d74ff26fc6b3",
        "0xb92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc",
    ],
    "values": [
        {"value": KNOWN_VALUES[0], "treeIndex": 2},
        {"value": KNOWN_VALUES[1], "treeIndex": 4},
        {"value": KNOWN_VALUES[2], "treeIndex": 3},
    ],
}
KNOWN_PROOF_1 = [
    "0xc3d2e29c8ded2ca4aa700f83273d097a3fb1683f4b5f291a8ee7d74ff26fc6b3",
    "0xeb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283",
]


def _tampered(proof: Sequence[str]) -> list[str]:
    """The same proof with one bit flipped in its first node."""
    first = proof[0]
    flipped = first[:-1] + format(int(first[-1], 16) ^ 1, "x")
    return [flipped, *proof[1:]]


# ------------------------------------------------------------------------ JS -> Python (b)


@pytest.mark.parametrize("sort_leaves", [True, False], ids=["sorted", "unsorted"])
def test_js_trees_load_with_same_roots_proofs_and_dumps(js: JsRunner, sort_leaves: bool) -> None:
    names = list(CASES)
    cases = [
        {
            "op": "of",
            "values": CASES[name][1],
            "encoding": CASES[name][0],
            "sortLeaves": sort_leaves,
            "multi": [0, len(CASES[name][1]) - 1] if len(CASES[name][1]) > 2 else None,
        }
        for name in names
    ]
    for name, case, out in zip(names, cases, js(cases), strict=True):
        encoding, values = CASES[name]
        loaded = StandardMerkleTree.load(out["dump"])
        assert loaded.root == out["root"], name
        assert loaded.dump() == out["dump"], name  # the dump round-trips unchanged
        assert [loaded.get_proof(i) for i in range(len(values))] == out["proofs"], name
        assert [loaded.get_proof(v) for v in values] == out["proofsByValue"], name
        assert loaded.render() == out["render"], name
        # the same values built here give the very same tree and dump
        built = StandardMerkleTree.of(values, encoding, sort_leaves=sort_leaves)
        assert built.dump() == out["dump"], name
        assert ["0x" + built.leaf_hash(v).hex() for v in values] == out["leafHashes"], name
        assert ["0x" + standard_leaf_hash(encoding, v).hex() for v in values] == out[
            "leafHashes"
        ], name
        for i, value in enumerate(values):
            assert StandardMerkleTree.verify_proof(out["root"], encoding, value, out["proofs"][i])
        if case["multi"] is not None:
            multi = built.get_multiproof(case["multi"])
            assert list(multi.proof) == out["multi"]["proof"], name
            assert list(multi.proof_flags) == out["multi"]["proofFlags"], name
            assert [built.leaf_hash(v) for v in multi.leaves] == [
                built.leaf_hash(v) for v in out["multi"]["leaves"]
            ], name
            assert StandardMerkleTree.verify_multiproof(built.root, encoding, multi)


def test_js_dump_with_loose_value_forms_loads(js: JsRunner) -> None:
    """JS callers may write JSON numbers, upper-case hex and lower-case addresses."""
    address = _address()
    values = [
        [5, "0x" + "AB" * 32, address.lower(), 1e21],
        [255, "0x" + "cd" * 32, address, "0x10"],
    ]
    encoding = ["uint8", "bytes32", "address", "uint256"]
    (out,) = js([{"op": "of", "values": values, "encoding": encoding, "sortLeaves": True}])
    loaded = StandardMerkleTree.load(out["dump"])
    assert loaded.root == out["root"]
    assert [loaded.get_proof(i) for i in range(2)] == out["proofs"]
    # dumped here in canonical form (numbers as decimal strings, lower-case hex) ...
    dumped = loaded.dump()
    assert dumped["values"][0]["value"] == ["5", "0x" + "ab" * 32, address.lower(), str(10**21)]
    assert dumped["values"][1]["value"][3] == "16"
    # ... which the npm library loads back to the same root
    (back,) = js([{"op": "load", "dump": dumped, "root": loaded.root, "checks": []}])
    assert back["root"] == out["root"]
    assert back["dump"] == dumped


# ------------------------------------------------------------------------ Python -> JS (a)


def test_python_trees_load_in_js_and_python_proofs_verify_there(js: JsRunner) -> None:
    names = list(CASES)
    trees = [StandardMerkleTree.of(CASES[name][1], CASES[name][0]) for name in names]
    cases = []
    expected: list[list[bool]] = []
    for tree in trees:
        dump = json.loads(json.dumps(tree.dump()))  # what a file or an HTTP answer would carry
        checks: list[dict[str, Any]] = []
        outcome: list[bool] = []
        for i, entry in enumerate(dump["values"]):
            proof = tree.get_proof(i)
            checks.append({"value": entry["value"], "proof": proof})
            outcome.append(True)
            if proof:
                checks.append({"value": entry["value"], "proof": _tampered(proof)})
                outcome.append(False)
        cases.append({"op": "load", "dump": dump, "root": tree.root, "checks": checks})
        expected.append(outcome)
    for name, tree, case, outcome, out in zip(
        names, trees, cases, expected, js(cases), strict=True
    ):
        assert out["root"] == tree.root, name
        assert out["dump"] == case["dump"], name  # JS dumps what it loaded, unchanged
        assert out["proofs"] == [tree.get_proof(i) for i in range(len(tree))], name
        assert out["verified"] == outcome, name


def test_python_native_values_give_the_js_tree(js: JsRunner) -> None:
    """bytes, ints and bools built here equal the JS tree built from their JSON forms."""
    rng = random.Random(8)
    native = [
        (rng.randbytes(32), rng.getrandbits(64), rng.randbytes(32), rng.random() < 0.5)
        for _ in range(33)
    ]
    encoding = ["bytes32", "uint64", "bytes32", "bool"]
    tree = StandardMerkleTree.of(native, encoding)
    as_json = [["0x" + a.hex(), str(n), "0x" + b.hex(), flag] for a, n, b, flag in native]
    (out,) = js([{"op": "of", "values": as_json, "encoding": encoding, "sortLeaves": True}])
    assert tree.root == out["root"]
    assert tree.dump() == out["dump"]
    assert [tree.get_proof(i) for i in range(len(native))] == out["proofs"]


# ----------------------------------------------------------------------- without Node.js


def test_known_vector() -> None:
    tree = StandardMerkleTree.of(KNOWN_VALUES, ["address", "uint256"])
    assert tree.dump() == KNOWN_DUMP
    assert tree.root == KNOWN_DUMP["tree"][0]
    assert tree.get_proof(1) == KNOWN_PROOF_1
    assert tree.get_proof(KNOWN_VALUES[1]) == KNOWN_PROOF_1
    loaded = StandardMerkleTree.load(KNOWN_DUMP)
    assert loaded.dump() == KNOWN_DUMP
    native = [(v[0], int(v[1])) for v in KNOWN_VALUES]
    assert StandardMerkleTree.of(native, ("address", "uint256")).root == tree.root


def test_leaf_is_double_keccak_of_abi_encode() -> None:
    value = ("0x1111111111111111111111111111111111111111", 5 * 10**18)
    expected = keccak(keccak(abi_encode(["address", "uint256"], value)))
    assert standard_leaf_hash(["address", "uint256"], value) == expected


STATIC_TYPES = ["bytes32", "bytes1", "bytes20", "uint8", "uint64", "uint256", "int8", "int256"]
STATIC_TYPES += ["address", "bool"]


def _random_static(rng: random.Random, type_str: str) -> Any:
    if type_str == "address":
        raw = rng.randbytes(20)
        return str(to_checksum_address(raw)) if rng.random() < 0.5 else "0x" + raw.hex()
    if type_str == "bool":
        return rng.random() < 0.5
    if type_str.startswith("bytes"):
        return rng.randbytes(int(type_str[5:]))
    bits = int(type_str.lstrip("uint") or 256)
    if type_str.startswith("u"):
        return rng.choice([0, 2**bits - 1, rng.getrandbits(bits)])
    return rng.choice([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, -1, rng.getrandbits(bits - 1)])


def test_fast_static_path_matches_eth_abi() -> None:
    rng = random.Random(99)
    for _ in range(200):
        encoding = rng.sample(STATIC_TYPES, rng.randint(1, 6))
        value = [_random_static(rng, t) for t in encoding]
        expected = keccak(keccak(abi_encode(encoding, value)))
        assert standard_leaf_hash(encoding, value) == expected, (encoding, value)


def test_equivalent_value_forms_normalise_to_one_leaf() -> None:
    encoding = ["bytes32", "uint256", "address", "bool", "bytes"]
    raw = bytes(range(32))
    address = "0x" + "ab" * 20
    native = (raw, 10, address, True, b"\x01\x02")
    forms = [
        native,
        ["0x" + raw.hex(), "10", address, "true", "0x0102"],
        (bytearray(raw), "0xa", address, True, memoryview(b"\x01\x02")),
        ["0x" + raw.hex().upper()[0:64], 10.0, address, True, b"\x01\x02"],
    ]
    hashes = {standard_leaf_hash(encoding, form) for form in forms}
    assert len(hashes) == 1
    tree = StandardMerkleTree.of(forms, encoding)
    assert [value for _, value in tree.entries()] == [native] * len(forms)
    # 20 raw bytes are accepted for an address and kept as its EIP-55 form
    tree = StandardMerkleTree.of([[bytes.fromhex("ab" * 20)]], ["address"])
    assert tree.at(0) == (to_checksum_address("0x" + "ab" * 20),)


def test_layout_entries_and_lookup() -> None:
    values = [[i] for i in range(11)]
    tree = StandardMerkleTree.of(values, ["uint256"])
    assert len(tree) == 11
    assert tree.leaf_encoding == ("uint256",)
    assert list(tree.entries()) == [(i, (i,)) for i in range(11)]
    dump = tree.dump()
    assert len(dump["tree"]) == 21
    hashes = sorted(tree.leaf_hash(v) for v in values)
    for i, entry in enumerate(dump["values"]):
        # leaf k of n (sorted by hash) sits at node 2n-2-k
        assert entry["treeIndex"] == 20 - hashes.index(tree.leaf_hash(values[i]))
        assert tree.tree_index(i) == entry["treeIndex"]
        assert tree.get_proof(i) == tree.get_proof(values[i]) == tree.get_proof((i,))
        assert tree.verify(i, tree.get_proof(i))
        assert tree.verify(values[i], tree.get_proof(i))
    unsorted = StandardMerkleTree.of(values, ["uint256"], sort_leaves=False)
    assert [unsorted.tree_index(i) for i in range(11)] == [20 - i for i in range(11)]
    assert unsorted.root != tree.root


def test_duplicates_resolve_to_the_last_index() -> None:
    tree = StandardMerkleTree.of([[1], [2], [1]], ["uint8"])
    assert tree.index_of([1]) == 2
    assert tree.get_proof([1]) == tree.get_proof(2)
    assert tree.get_proof(0) != tree.get_proof(2)


def test_single_leaf_tree() -> None:
    tree = StandardMerkleTree.of([[b"\x07" * 32]], ["bytes32"])
    assert tree.root == "0x" + tree.leaf_hash([b"\x07" * 32]).hex()
    assert tree.get_proof(0) == []
    assert tree.verify(0, [])
    assert StandardMerkleTree.load(tree.dump()).root == tree.root


def test_proof_primitives() -> None:
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(min(a, b) + max(a, b))
    assert hash_pair("0x" + a.hex(), b) == hash_pair(a, b)
    assert process_proof(a, []) == a
    assert process_proof(a, [b, "0x" + a.hex()]) == hash_pair(hash_pair(a, b), a)
    tree = StandardMerkleTree.of([[i] for i in range(5)], ["uint256"])
    proof = tree.get_proof(3)
    assert "0x" + process_proof(tree.leaf_hash([3]), proof).hex() == tree.root
    assert process_proof(
        tree.leaf_hash([3]), [bytes.fromhex(p[2:]) for p in proof]
    ) == bytes.fromhex(tree.root[2:])


def test_multiproofs() -> None:
    values = [[i] for i in range(9)]
    tree = StandardMerkleTree.of(values, ["uint256"])
    multi = tree.get_multiproof([0, [4], 8])
    assert sorted(v[0] for v in multi.leaves) == [0, 4, 8]
    assert StandardMerkleTree.verify_multiproof(tree.root, ["uint256"], multi)
    assert StandardMerkleTree.verify_multiproof(tree.root, ["uint256"], tree.get_multiproof([]))
    wrong = MultiProof(
        multi.leaves, (_tampered(multi.proof)[0], *multi.proof[1:]), multi.proof_flags
    )
    assert not StandardMerkleTree.verify_multiproof(tree.root, ["uint256"], wrong)
    with pytest.raises(MerkleError, match="duplicated"):
        tree.get_multiproof([1, [1]])
    with pytest.raises(MerkleError, match="multiproof"):
        process_multiproof([keccak(b"x")], [], [True])


def test_dump_is_json_and_round_trips() -> None:
    encoding, values = CASES["arrays-and-tuples"]
    tree = StandardMerkleTree.of(values, encoding)
    text = json.dumps(tree.dump())
    dump = json.loads(text)
    assert list(dump) == ["format", "leafEncoding", "tree", "values"]
    assert dump["format"] == DUMP_FORMAT
    assert list(dump["values"][0]) == ["value", "treeIndex"]
    loaded = StandardMerkleTree.load(dump)
    assert loaded.dump() == dump
    assert loaded.root == tree.root
    assert list(loaded.entries()) == list(tree.entries())
    loaded.validate()


# ------------------------------------------------------------------------------- bad input


def test_merkle_error_is_a_qnode_error() -> None:
    assert issubclass(MerkleError, QnodeError)


@pytest.mark.parametrize(
    ("encoding", "value", "message"),
    [
        (["bytes32"], [b"\x00" * 31], "bytes32: expected exactly 32 bytes"),
        (["bytes32"], ["0x1234"], "bytes32"),
        (["bytes32"], ["0x" + "zz" * 32], "bytes32"),
        (["bytes"], ["0x123"], "bytes: expected bytes or a 0x-hex string"),
        (["uint8"], [256], "out of range"),
        (["uint256"], [-1], "out of range"),
        (["int8"], [-129], "out of range"),
        (["uint256"], [True], "uint256: expected an integer"),
        (["uint256"], ["12abc"], "uint256: expected an integer"),
        (["uint256"], [1.5], "uint256: expected an integer"),
        (["bool"], [1], "bool: expected a bool"),
        (["address"], ["0x1234"], "address: expected an address"),
        (["address"], [b"\x00" * 19], "address"),
        (["string"], [b"text"], "string: expected a string"),
        (["uint256", "uint256"], [1], "expected a list or tuple of 2"),
        (["uint256"], "1", "expected a list or tuple of 1"),
        (["uint256"], {"a": 1}, "expected a list or tuple of 1"),
        (["uint256[2]"], [[1, 2, 3]], "uint256\\[2\\]: expected 2 elements"),
        (["(uint8,bool)"], [[1, "yes"]], "component 1: bool"),
        (["address[]"], [["0x00"]], "address\\[\\]\\[0\\]"),
    ],
)
def test_values_not_matching_the_encoding(encoding: list[str], value: Any, message: str) -> None:
    with pytest.raises(MerkleError, match=message):
        standard_leaf_hash(encoding, value)
    with pytest.raises(MerkleError, match=message):
        StandardMerkleTree.of([value], encoding)


def test_error_names_the_value_and_element() -> None:
    with pytest.raises(MerkleError, match=r"value 2, element 1: uint8: 300 is out of range"):
        StandardMerkleTree.of(
            [[b"\x00" * 32, 1], [b"\x00" * 32, 2], [b"\x00" * 32, 300]],
            [
                "bytes32",
                "uint8",
            ],
        )


@pytest.mark.parametrize(
    "encoding",
    [[], "uint256", ["uint7"], ["function"], ["fixed128x18"], ["byte"], ["nonsense"], [1]],
)
def test_invalid_leaf_encodings(encoding: Any) -> None:
    with pytest.raises(MerkleError):
        StandardMerkleTree.of([[1]], encoding)


def test_no_values() -> None:
    with pytest.raises(MerkleError, match="at least one value"):
        StandardMerkleTree.of([], ["uint256"])


def test_bad_indices_and_unknown_values() -> None:
    tree = StandardMerkleTree.of([[1], [2], [3]], ["uint256"])
    for index in (3, -1, 100):
        with pytest.raises(MerkleError, match="out of range"):
            tree.get_proof(index)
    with pytest.raises(MerkleError, match="out of range"):
        tree.verify(3, [])
    with pytest.raises(MerkleError, match="not in the tree"):
        tree.get_proof([4])
    with pytest.raises(MerkleError, match="uint256"):
        tree.get_proof(["four"])


def test_tampered_proofs_and_wrong_roots_do_not_verify() -> None:
    encoding, values = CASES["bytes32-uint64-bytes32"]
    tree = StandardMerkleTree.of(values, encoding)
    proof = tree.get_proof(4)
    assert tree.verify(4, proof)
    assert StandardMerkleTree.verify_proof(tree.root, encoding, values[4], proof)
    assert not tree.verify(4, _tampered(proof))
    assert not tree.verify(values[5], proof)  # another value
    assert not tree.verify(4, proof[:-1])  # a truncated proof
    assert not StandardMerkleTree.verify_proof(tree.root, encoding, values[4], _tampered(proof))
    other_root = StandardMerkleTree.of(values[:-1], encoding).root
    assert not StandardMerkleTree.verify_proof(other_root, encoding, values[4], proof)
    assert not StandardMerkleTree.verify_proof(tree.root, ["bytes32"] * 3, values[4][:1] * 3, proof)
    # malformed input raises rather than answering
    with pytest.raises(MerkleError, match="proof element 0"):
        tree.verify(4, [proof[0][:-2], *proof[1:]])
    with pytest.raises(MerkleError, match="proof"):
        tree.verify(4, proof[0])  # type: ignore[arg-type]
    with pytest.raises(MerkleError, match="root"):
        StandardMerkleTree.verify_proof("0x1234", encoding, values[4], proof)
    with pytest.raises(MerkleError, match="uint64"):
        StandardMerkleTree.verify_proof(
            tree.root, encoding, [values[4][0], -1, values[4][2]], proof
        )


def _edit(dump: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    edited = copy.deepcopy(dump)
    change(edited)
    return edited


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        dump[key] = value

    return change


def _del(key: str) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        del dump[key]

    return change


def _flip_node(index: int) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        dump["tree"][index] = _tampered([dump["tree"][index]])[0]

    return change


def _value(index: int, element: int, new: Any) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        dump["values"][index]["value"][element] = new

    return change


def _tree_index(index: int, new: Any) -> Callable[[dict[str, Any]], None]:
    def change(dump: dict[str, Any]) -> None:
        dump["values"][index]["treeIndex"] = new

    return change


def _swap_tree_indices(dump: dict[str, Any]) -> None:
    first, second = dump["values"][0], dump["values"][1]
    first["treeIndex"], second["treeIndex"] = second["treeIndex"], first["treeIndex"]


MALFORMED_DUMPS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wrong format": (_set("format", "simple-v1"), "unknown tree dump format"),
    "no format": (_del("format"), "unknown tree dump format"),
    "no leafEncoding": (_del("leafEncoding"), "no leafEncoding"),
    "bad leafEncoding": (_set("leafEncoding", ["uint7"]), "invalid ABI type"),
    "tree not a list": (_set("tree", "0x00"), "'tree' must be"),
    "empty tree": (_set("tree", []), "'tree' must be"),
    "values not a list": (_set("values", {}), "'values' must be"),
    "short node": (_set("tree", ["0x1234"] * 5), "tree node 0 must be 32 bytes"),
    "node count": (_set("tree", ["0x" + "00" * 32] * 4), "3 values need 5 nodes"),
    "root edited": (_flip_node(0), "node 0 is not the hash of its children"),
    "inner node edited": (_flip_node(1), "node 1 is not the hash of its children"),
    "leaf edited": (_flip_node(3), "hashes to"),
    "value edited": (_value(1, 1, "2500000000000000001"), "values\\[1\\] hashes to"),
    "value mistyped": (_value(1, 1, "lots"), "value 1, element 1: uint256"),
    "treeIndex internal": (_tree_index(0, 1), "not a leaf"),
    "treeIndex out of range": (_tree_index(0, 5), "not a leaf"),
    "treeIndex bool": (_tree_index(0, True), "must be an integer"),
    "treeIndex missing": (_tree_index(0, None), "must be an integer"),
    "treeIndex shared": (_tree_index(0, 4), "share a treeIndex"),
    "treeIndex swapped": (_swap_tree_indices, "hashes to"),
}


@pytest.mark.parametrize("name", list(MALFORMED_DUMPS))
def test_malformed_dumps(name: str) -> None:
    change, message = MALFORMED_DUMPS[name]
    with pytest.raises(MerkleError, match=message):
        StandardMerkleTree.load(_edit(KNOWN_DUMP, change))
    assert gc.isenabled()  # the paused collector is back on after a failure


def test_dump_not_an_object() -> None:
    for dump in (None, [], "standard-v1"):
        with pytest.raises(MerkleError, match="JSON object"):
            StandardMerkleTree.load(dump)  # type: ignore[arg-type]
