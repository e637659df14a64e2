"""Typed binding of AnchorRegistry.sol: oracles anchor Merkle roots of off-chain batches.

``bytes32`` values (batch ids, roots, manifest hashes, leaves, proof nodes) are ``"0x"`` + 64
lowercase hex digits in everything this module returns; arguments may also be 32 raw bytes, or hex
in either case with or without the ``0x``. Anything else is a :class:`ValueError` (a caller's bug,
raised before anything is sent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import FilterParams, LogReceipt

from node.chain.artifacts import Artifact, load_artifact
from node.chain.bindings import ContractBinding
from node.chain.connection import translate_chain_errors
from node.chain.sender import Receipt, TransactionSender, TxRequest
from node.errors import ArtifactError

__all__ = [
    "ARTIFACT_NAME",
    "MAX_LEAF_COUNT",
    "AnchorRegistry",
    "AnchoredBatch",
    "BatchAnchoredEvent",
    "Bytes32",
    "to_bytes32",
    "to_bytes32_hex",
]

ARTIFACT_NAME = "AnchorRegistry"
EVENT_NAME = "BatchAnchored"
MAX_LEAF_COUNT = 2**32 - 1
"""``leafCount`` is a ``uint32`` on-chain."""

Bytes32 = str | bytes
"""A ``bytes32`` argument: 32 raw bytes, or 64 hex digits with or without ``0x``."""

_HEX64_RE = re.compile(r"^(?:0x|0X)?([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class AnchoredBatch:
    """A batch as stored on-chain (``AnchorRegistry.batch``)."""

    batch_id: str
    member: str
    oracle: str
    root: str
    leaf_count: int
    manifest_hash: str
    anchored_at: int
    block_number: int


@dataclass(frozen=True)
class BatchAnchoredEvent:
    """One ``BatchAnchored`` log: the batch as announced, and where the announcement is."""

    batch_id: str
    member: str
    oracle: str
    root: str
    leaf_count: int
    manifest_hash: str
    block_number: int
    tx_hash: str
    log_index: int


class AnchorRegistry:
    """The anchor registry, read and written through one account's sender (an oracle to anchor)."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding
        self._event_topic = _event_topic(binding.artifact)

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> AnchorRegistry:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls, sender: TransactionSender, consortium_address: str
    ) -> tuple[AnchorRegistry, Receipt]:
        binding, receipt = ContractBinding.deploy(
            sender, load_artifact(ARTIFACT_NAME), Web3.to_checksum_address(consortium_address)
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    # -- anchoring ---------------------------------------------------------------------------

    def anchor_request(
        self,
        batch_id: Bytes32,
        root: Bytes32,
        leaf_count: int,
        manifest_hash: Bytes32,
        *,
        gas: int | None = None,
    ) -> TxRequest:
        """The ``anchor`` transaction, unsent: ``sender.send`` it to pipeline several batches.

        With an explicit ``gas`` nothing is estimated, so a revert shows only in the receipt (the
        sender then replays the call to name the contract error).
        """
        if not 0 <= leaf_count <= MAX_LEAF_COUNT:
            raise ValueError(f"leaf_count {leaf_count} does not fit a uint32")
        return self.binding.request(
            "anchor",
            to_bytes32(batch_id, "batch_id"),
            to_bytes32(root, "root"),
            leaf_count,
            to_bytes32(manifest_hash, "manifest_hash"),
            gas=gas,
        )

    def anchor(
        self,
        batch_id: Bytes32,
        root: Bytes32,
        leaf_count: int,
        manifest_hash: Bytes32,
        *,
        gas: int | None = None,
    ) -> Receipt:
        """Anchor a batch and wait for its receipt; a refusal raises its contract error
        (``NotActiveOracle``, ``BatchAlreadyAnchored``, ``ZeroRoot``, ``EmptyBatch``)."""
        request = self.anchor_request(batch_id, root, leaf_count, manifest_hash, gas=gas)
        return self.binding.sender.transact(request)

    # -- reads -------------------------------------------------------------------------------

    def consortium(self) -> str:
        """The Consortium contract whose oracle keys may anchor."""
        return Web3.to_checksum_address(self.binding.read("consortium"))

    def batch(self, batch_id: Bytes32) -> AnchoredBatch:
        """The anchored batch; ``UnknownBatch`` if the id was never anchored."""
        key = to_bytes32(batch_id, "batch_id")
        raw = self.binding.read("batch", key)
        member, oracle, root, leaf_count, manifest_hash, anchored_at, block_number = raw
        return AnchoredBatch(
            batch_id=_hex(key),
            member=Web3.to_checksum_address(member),
            oracle=Web3.to_checksum_address(oracle),
            root=_hex(root),
            leaf_count=int(leaf_count),
            manifest_hash=_hex(manifest_hash),
            anchored_at=int(anchored_at),
            block_number=int(block_number),
        )

    def is_anchored(self, batch_id: Bytes32) -> bool:
        return bool(self.binding.read("isAnchored", to_bytes32(batch_id, "batch_id")))

    def batch_count(self) -> int:
        return int(self.binding.read("batchCount"))

    def verify(self, batch_id: Bytes32, leaf: Bytes32, proof: Sequence[Bytes32]) -> bool:
        """Whether ``proof`` proves the leaf hash ``leaf`` against the batch's anchored root
        (evaluated on-chain); ``UnknownBatch`` if the id was never anchored."""
        nodes = [to_bytes32(node, f"proof[{index}]") for index, node in enumerate(proof)]
        return bool(
            self.binding.read(
                "verify", to_bytes32(batch_id, "batch_id"), to_bytes32(leaf, "leaf"), nodes
            )
        )

    # -- events ------------------------------------------------------------------------------

    def anchored_events(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        member: str | None = None,
        batch_id: Bytes32 | None = None,
    ) -> list[BatchAnchoredEvent]:
        """``BatchAnchored`` logs in the block range (inclusive), filtered on-chain by member and
        batch id (indexed topics), in chain order.

        One ``eth_getLogs`` call: keep ranges bounded on long chains (nodes cap the range or the
        result size), and note that the embedded chain's log queries slow down as blocks grow.
        """
        # Topics as 0x-hex strings: eth-tester silently matches nothing for bytes topics.
        topics: list[Any] = [
            self._event_topic,
            None if member is None else _address_topic(member),
            None if batch_id is None else to_bytes32_hex(batch_id, "batch_id"),
        ]
        params: FilterParams = {
            "address": Web3.to_checksum_address(self.address),
            "fromBlock": from_block,
            "toBlock": to_block,
            "topics": topics,
        }
        connection = self.binding.sender.connection
        with translate_chain_errors(connection.url):
            logs = connection.w3.eth.get_logs(params)
        return [_event(log) for log in logs]


# --------------------------------------------------------------------------------------------------


def to_bytes32(value: Bytes32, name: str = "value") -> bytes:
    """``value`` as 32 raw bytes; ``ValueError`` naming ``name`` if it is not a bytes32."""
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise ValueError(f"{name} must be 32 bytes, got {len(value)}")
        return bytes(value)
    if isinstance(value, str):
        match = _HEX64_RE.match(value)
        if match is None:
            raise ValueError(f"{name} must be 0x + 64 hex digits, got {value[:80]!r}")
        return bytes.fromhex(match.group(1))
    raise ValueError(f"{name} must be bytes or a hex string, got {type(value).__name__}")


def to_bytes32_hex(value: Bytes32, name: str = "value") -> str:
    """``value`` as ``"0x"`` + 64 lowercase hex digits."""
    return _hex(to_bytes32(value, name))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _address_topic(address: str) -> str:
    return "0x" + "00" * 12 + Web3.to_checksum_address(address)[2:].lower()


def _event_topic(artifact: Artifact) -> str:
    for entry in artifact.abi:
        if entry.get("type") == "event" and entry.get("name") == EVENT_NAME:
            types = ",".join(str(param["type"]) for param in entry.get("inputs", []))
            return _hex(keccak(text=f"{EVENT_NAME}({types})"))
    raise ArtifactError(f"{artifact.name} artifact has no {EVENT_NAME} event")


def _event(log: LogReceipt) -> BatchAnchoredEvent:
    topics = [bytes(topic) for topic in log["topics"]]
    oracle, leaf_count, manifest_hash = abi_decode(
        ["address", "uint32", "bytes32"], bytes(log["data"])
    )
    member = Web3.to_checksum_address(topics[1][12:])
    return BatchAnchoredEvent(
        batch_id=_hex(topics[2]),
        member=member,
        oracle=Web3.to_checksum_address(oracle),
        root=_hex(topics[3]),
        leaf_count=int(leaf_count),
        manifest_hash=_hex(manifest_hash),
        block_number=int(log["blockNumber"]),
        tx_hash=_hex(bytes(log["transactionHash"])),
        log_index=int(log["logIndex"]),
    )
