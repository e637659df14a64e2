"""AnchorRegistry.sol through the node's binding, on the in-process chain and on Hardhat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.anchor_registry import ARTIFACT_NAME, AnchorRegistry, to_bytes32, to_bytes32_hex
from node.chain.artifacts import check_fresh, default_node_modules, load_artifact
from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium
from node.chain.contract_errors import (
    BatchAlreadyAnchored,
    EmptyBatch,
    InvalidConsortium,
    NotActiveOracle,
    UnknownBatch,
    ZeroRoot,
)
from node.chain.sender import TransactionSender

ANCHOR_GAS_LIMIT = 150_000
"""Target for a whole anchor transaction: <= ~37 gas per record at 4096-leaf batches."""

LEAF_TYPES = ["string", "uint256", "bytes32"]
MANIFEST = "0x" + "ab" * 32


# --------------------------------------------------------------------------------------------------
# A tiny OpenZeppelin StandardMerkleTree (same leaf hashing, layout and proofs), independent of
# node/anchoring, so that the contract is checked against the specification, not against our code.


def _leaf(values: Sequence[object]) -> bytes:
    return keccak(keccak(abi_encode(LEAF_TYPES, list(values))))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


@dataclass(frozen=True)
class Tree:
    nodes: list[bytes]
    leaves: list[bytes]  # sorted, as StandardMerkleTree.of sorts them

    @classmethod
    def of(cls, rows: Sequence[Sequence[object]]) -> Tree:
        leaves = sorted(_leaf(row) for row in rows)
        nodes: list[bytes] = [b""] * (2 * len(leaves) - 1)
        for index, leaf in enumerate(leaves):
            nodes[len(nodes) - 1 - index] = leaf
        for index in range(len(nodes) - 1 - len(leaves), -1, -1):
            nodes[index] = _hash_pair(nodes[2 * index + 1], nodes[2 * index + 2])
        return cls(nodes, leaves)

    @property
    def root(self) -> bytes:
        return self.nodes[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        index = len(self.nodes) - 1 - self.leaves.index(leaf)
        proof = []
        while index > 0:
            proof.append(self.nodes[index + 1 if index % 2 else index - 1])
            index = (index - 1) // 2
        return proof


ROWS = [(f"rec-{i}", 1000 + i, bytes([i]) * 32) for i in range(5)]


def _batch_id(name: str) -> str:
    return "0x" + keccak(text=name).hex()


def _root(name: str) -> str:
    return "0x" + keccak(text="root:" + name).hex()


# --------------------------------------------------------------------------------------------------
# The artifact


@pytest.mark.skipif(
    not (default_node_modules() / "@openzeppelin" / "contracts").is_dir(),
    reason="hardhat-local/node_modules/@openzeppelin/contracts is absent (npm ci in hardhat-local)",
)
def test_committed_artifact_is_fresh() -> None:
    artifact = load_artifact(ARTIFACT_NAME)
    check_fresh(artifact)
    assert {
        "contracts/AnchorRegistry.sol",
        "contracts/interfaces/IAnchorRegistry.sol",
        "contracts/interfaces/IConsortium.sol",
        "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol",
    } <= set(artifact.sources)


def test_the_event_is_filterable_by_member_batch_and_root() -> None:
    abi = load_artifact(ARTIFACT_NAME).abi
    (event,) = [e for e in abi if e["type"] == "event" and e["name"] == "BatchAnchored"]
    indexed = [i["name"] for i in event["inputs"] if i["indexed"]]
    assert indexed == ["member", "batchId", "root"]


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def registry(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> AnchorRegistry:
    """A fresh AnchorRegistry over the 2-of-3 consortium, deployed by Aster (dev account 0)."""
    deployed, _ = AnchorRegistry.deploy(make_sender(dev_accounts[0]), consortium_2_of_3[0].address)
    return deployed


OracleFactory = Callable[[Consortium], AnchorRegistry]


@pytest.fixture
def new_oracle(
    registry: AnchorRegistry, make_sender: Callable[[LocalAccount], TransactionSender]
) -> OracleFactory:
    """Register a fresh oracle key for the member behind ``consortium``, fund it from the member,
    and return the registry as that oracle sees it."""

    def make(consortium: Consortium) -> AnchorRegistry:
        oracle: LocalAccount = Account.create()
        consortium.register_oracle(oracle.address)
        consortium.binding.sender.transfer(oracle.address, 10**18)
        return AnchorRegistry.at(make_sender(oracle), registry.address)

    return make


def _oracle_address(registry: AnchorRegistry) -> str:
    return registry.binding.sender.address


# --------------------------------------------------------------------------------------------------
# Anchoring


def test_an_active_oracle_anchors_a_batch(
    chain: ChainConnection,
    registry: AnchorRegistry,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    aster = consortium_2_of_3[0]
    oracle = new_oracle(aster)
    assert registry.consortium() == aster.address
    batch_id, root = _batch_id("coating-line/0001"), _root("coating-line/0001")
    assert not registry.is_anchored(batch_id) and registry.batch_count() == 0

    receipt = oracle.anchor(batch_id, root, 4096, MANIFEST)

    block = chain.w3.eth.get_block(receipt.block_number)
    stored = registry.batch(batch_id)
    assert stored.batch_id == batch_id
    assert stored.member == dev_accounts[0].address
    assert stored.oracle == _oracle_address(oracle)
    assert (stored.root, stored.leaf_count, stored.manifest_hash) == (root, 4096, MANIFEST)
    assert stored.block_number == receipt.block_number
    assert stored.anchored_at == int(block["timestamp"])
    assert registry.is_anchored(batch_id)
    assert registry.batch_count() == 1

    (event,) = registry.anchored_events(receipt.block_number, receipt.block_number)
    assert (event.batch_id, event.member, event.oracle) == (batch_id, stored.member, stored.oracle)
    assert (event.root, event.leaf_count, event.manifest_hash) == (root, 4096, MANIFEST)
    assert (event.block_number, event.tx_hash) == (receipt.block_number, receipt.tx_hash)


def test_bytes_and_hex_spellings_are_the_same_batch(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    raw_id = keccak(text="raw-bytes-id")
    oracle.anchor(raw_id, keccak(text="r").hex().upper(), 1, bytes(32))
    upper = "0x" + raw_id.hex().upper()
    assert registry.is_anchored(upper)
    stored = registry.batch(raw_id)
    assert stored.batch_id == "0x" + raw_id.hex()
    assert stored.root == "0x" + keccak(text="r").hex()
    assert stored.manifest_hash == "0x" + "00" * 32


def test_accounts_that_are_not_active_oracles_are_refused(
    registry: AnchorRegistry,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    outsider = AnchorRegistry.at(make_sender(dev_accounts[5]), registry.address)
    member_itself = registry  # Aster's own account: a member, but not one of its oracle keys
    for caller, account in ((outsider, dev_accounts[5]), (member_itself, dev_accounts[0])):
        with pytest.raises(NotActiveOracle) as raised:
            caller.anchor(_batch_id("nope"), _root("nope"), 10, MANIFEST)
        assert raised.value.args_by_name == {"caller": account.address}
    assert registry.batch_count() == 0
    assert not registry.is_anchored(_batch_id("nope"))


def test_a_revoked_oracles_root_is_refused(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    borealis = consortium_2_of_3[1]
    oracle = new_oracle(borealis)
    oracle.anchor(_batch_id("before"), _root("before"), 3, MANIFEST)
    borealis.revoke_oracle(_oracle_address(oracle))
    with pytest.raises(NotActiveOracle):
        oracle.anchor(_batch_id("after"), _root("after"), 3, MANIFEST)
    assert registry.is_anchored(_batch_id("before"))
    assert not registry.is_anchored(_batch_id("after"))


def test_a_removed_members_oracle_is_refused(
    registry: AnchorRegistry,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    aster, borealis, cobalt = consortium_2_of_3[:3]
    oracle = new_oracle(cobalt)
    oracle.anchor(_batch_id("lab/1"), _root("lab/1"), 7, MANIFEST)
    removal = aster.propose_removal(dev_accounts[2].address)
    borealis.approve(removal.proposal_id)
    with pytest.raises(NotActiveOracle):
        oracle.anchor(_batch_id("lab/2"), _root("lab/2"), 7, MANIFEST)
    # What was anchored before the removal stays, under the member it was anchored for.
    assert registry.batch(_batch_id("lab/1")).member == dev_accounts[2].address
    assert registry.batch_count() == 1


def test_a_batch_id_is_anchored_once_and_the_error_carries_the_stored_root(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    first = new_oracle(consortium_2_of_3[0])
    other = new_oracle(consortium_2_of_3[1])
    batch_id, root = _batch_id("dup"), _root("dup")
    first.anchor(batch_id, root, 2, MANIFEST)

    with pytest.raises(BatchAlreadyAnchored) as retry:  # a retry of the same batch
        first.anchor(batch_id, root, 2, MANIFEST)
    assert retry.value.args_by_name == {"batchId": to_bytes32(batch_id), "root": to_bytes32(root)}

    with pytest.raises(BatchAlreadyAnchored) as conflict:  # another root under the same id
        other.anchor(batch_id, _root("other"), 2, MANIFEST)
    assert conflict.value.args_by_name["root"] == to_bytes32(root)

    # With explicit gas nothing is estimated: the receipt fails, and the error is still named.
    request = first.anchor_request(batch_id, root, 2, MANIFEST, gas=200_000)
    with pytest.raises(BatchAlreadyAnchored):
        first.binding.sender.transact(request)
    assert registry.batch_count() == 1
    assert registry.batch(batch_id).oracle == _oracle_address(first)


def test_a_zero_root_and_an_empty_batch_are_refused(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    with pytest.raises(ZeroRoot):
        oracle.anchor(_batch_id("zero"), bytes(32), 1, MANIFEST)
    with pytest.raises(EmptyBatch):
        oracle.anchor(_batch_id("empty"), _root("empty"), 0, MANIFEST)
    assert registry.batch_count() == 0


def test_malformed_arguments_are_refused_before_sending(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    with pytest.raises(ValueError, match="batch_id must be 0x"):
        oracle.anchor("0x1234", _root("x"), 1, MANIFEST)
    with pytest.raises(ValueError, match="root must be 32 bytes, got 31"):
        oracle.anchor(_batch_id("x"), bytes(31), 1, MANIFEST)
    with pytest.raises(ValueError, match="does not fit a uint32"):
        oracle.anchor(_batch_id("x"), _root("x"), 2**32, MANIFEST)
    with pytest.raises(ValueError, match=r"proof\[1\] must be"):
        registry.verify(_batch_id("x"), _root("x"), [bytes(32), "0xzz"])
    assert to_bytes32_hex(b"\x01" * 32) == "0x" + "01" * 32
    assert registry.batch_count() == 0


def test_an_unknown_batch_is_an_error_not_an_empty_record(registry: AnchorRegistry) -> None:
    with pytest.raises(UnknownBatch) as raised:
        registry.batch(_batch_id("never"))
    assert raised.value.args_by_name == {"batchId": to_bytes32(_batch_id("never"))}
    with pytest.raises(UnknownBatch):
        registry.verify(_batch_id("never"), bytes(32), [])


def test_deploying_over_an_address_without_code_is_refused(
    chain: ChainConnection,
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    with pytest.raises(InvalidConsortium) as raised:
        AnchorRegistry.deploy(make_sender(dev_accounts[0]), dev_accounts[7].address)
    assert raised.value.args_by_name == {"consortium": dev_accounts[7].address}


# --------------------------------------------------------------------------------------------------
# Proofs


def test_verify_accepts_openzeppelin_proofs_and_refuses_wrong_leaves_and_batches(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    tree = Tree.of(ROWS)
    other = Tree.of([("other", 1, bytes(32)), ("rows", 2, bytes(32))])
    oracle.anchor(_batch_id("a"), tree.root, len(ROWS), MANIFEST)
    oracle.anchor(_batch_id("b"), other.root, 2, MANIFEST)

    for row in ROWS:  # five leaves: an unbalanced tree, proofs of two and three nodes
        leaf = _leaf(row)
        assert registry.verify(_batch_id("a"), leaf, tree.proof(leaf))
        assert registry.verify(
            _batch_id("a"), "0x" + leaf.hex(), ["0x" + p.hex() for p in tree.proof(leaf)]
        )

    leaf = _leaf(ROWS[2])
    proof = tree.proof(leaf)
    tampered = _leaf(("rec-2", 1003, bytes([2]) * 32))  # the value edited after anchoring
    assert not registry.verify(_batch_id("a"), tampered, proof)
    assert not registry.verify(_batch_id("a"), leaf, proof[:-1])  # truncated proof
    assert not registry.verify(_batch_id("b"), leaf, proof)  # right proof, wrong batch
    single_hashed = keccak(abi_encode(LEAF_TYPES, list(ROWS[2])))  # not a StandardMerkleTree leaf
    assert not registry.verify(_batch_id("a"), single_hashed, proof)


def test_a_one_leaf_batch_verifies_with_an_empty_proof(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    tree = Tree.of(ROWS[:1])
    assert tree.root == _leaf(ROWS[0]) and tree.proof(tree.root) == []
    oracle.anchor(_batch_id("single"), tree.root, 1, MANIFEST)
    assert registry.verify(_batch_id("single"), tree.root, [])
    assert not registry.verify(_batch_id("single"), _leaf(ROWS[1]), [])


# --------------------------------------------------------------------------------------------------
# Events and gas


def test_anchored_events_filter_by_member_and_batch(
    chain: ChainConnection,
    registry: AnchorRegistry,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    start = chain.head_block() + 1
    aster_oracle = new_oracle(consortium_2_of_3[0])
    borealis_oracle = new_oracle(consortium_2_of_3[1])
    aster_oracle.anchor(_batch_id("a1"), _root("a1"), 10, MANIFEST)
    borealis_oracle.anchor(_batch_id("b1"), _root("b1"), 20, MANIFEST)
    aster_oracle.anchor(_batch_id("a2"), _root("a2"), 30, MANIFEST)

    everything = registry.anchored_events(start)
    assert [e.batch_id for e in everything] == [_batch_id(n) for n in ("a1", "b1", "a2")]
    assert [e.leaf_count for e in everything] == [10, 20, 30]

    aster = registry.anchored_events(start, member=dev_accounts[0].address)
    assert [e.batch_id for e in aster] == [_batch_id("a1"), _batch_id("a2")]
    assert {e.oracle for e in aster} == {_oracle_address(aster_oracle)}

    (b1,) = registry.anchored_events(start, "latest", batch_id=_batch_id("b1"))
    assert (b1.member, b1.root) == (dev_accounts[1].address, _root("b1"))
    assert (
        registry.anchored_events(start, member=dev_accounts[0].address, batch_id=_batch_id("b1"))
        == []
    )
    assert registry.anchored_events(start, member=dev_accounts[2].address) == []
    assert registry.anchored_events(start, b1.block_number - 1) == everything[:1]


def test_anchors_pipeline_with_explicit_gas_and_stay_cheap(
    registry: AnchorRegistry, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    first = oracle.anchor(_batch_id("g0"), _root("g0"), 4096, MANIFEST)
    sender = oracle.binding.sender
    sent = [
        sender.send(
            oracle.anchor_request(
                _batch_id(f"g{i}"), _root(f"g{i}"), 4096, MANIFEST, gas=ANCHOR_GAS_LIMIT
            )
        )
        for i in range(1, 4)
    ]
    later = sender.wait_all(sent)
    assert registry.batch_count() == 4
    assert first.gas_used <= ANCHOR_GAS_LIMIT
    assert all(r.gas_used <= first.gas_used for r in later)  # the counter slot is warm by now
    assert all(r.gas_used / 4096 <= 100 for r in [first, *later])
