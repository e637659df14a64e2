"""Typed binding of QualityLedger.sol: critical records signed by oracles, relayed by members.

A record goes on-chain as an :class:`~node.oracles.attestation.Attestation` (or its JSON bundle),
sent through any active member's sender: the signer is recovered on-chain, not taken from the
sender. Reads give the records back as the same normalised messages the signer signed
(``bytes32`` as 32 raw bytes, integers as ``int``), so a round trip compares equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any, Literal

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import FilterParams, LogReceipt

from node.chain.anchor_registry import Bytes32, to_bytes32
from node.chain.artifacts import load_artifact
from node.chain.bindings import ContractBinding
from node.chain.connection import translate_chain_errors
from node.chain.sender import Receipt, TransactionSender, TxRequest
from node.errors import AttestationError
from node.oracles.attestation import (
    SCHEMAS,
    Attestation,
    AttestationKind,
    LedgerDomain,
    from_fixed_point,
    parse_bundle,
)

__all__ = [
    "ARTIFACT_NAME",
    "Attribution",
    "LedgerRecord",
    "QualityLedger",
    "RecordKind",
    "RecordedEvent",
]

ARTIFACT_NAME = "QualityLedger"


class RecordKind(IntEnum):
    """``IQualityLedger.RecordKind``."""

    NONE = 0
    INSPECTION = 1
    SETPOINT = 2
    LAB_RESULT = 3

    @property
    def attestation_kind(self) -> AttestationKind:
        return _ATTESTATION_KINDS[self]


_ATTESTATION_KINDS = {
    RecordKind.INSPECTION: AttestationKind.INSPECTION,
    RecordKind.SETPOINT: AttestationKind.SETPOINT,
    RecordKind.LAB_RESULT: AttestationKind.LAB_RESULT,
}

_FUNCTIONS = {
    AttestationKind.INSPECTION: "recordInspection",
    AttestationKind.SETPOINT: "recordSetpoint",
    AttestationKind.LAB_RESULT: "recordLabResult",
}
_DIGEST_VIEWS = {
    AttestationKind.INSPECTION: "inspectionDigest",
    AttestationKind.SETPOINT: "setpointDigest",
    AttestationKind.LAB_RESULT: "labResultDigest",
}


@dataclass(frozen=True)
class _EventShape:
    name: str
    data_types: tuple[str, ...]
    signature: str

    @property
    def topic(self) -> str:
        return "0x" + keccak(text=self.signature).hex()


_EVENTS = {
    AttestationKind.INSPECTION: _EventShape(
        "InspectionRecorded",
        ("address", "uint8", "bytes32"),
        "InspectionRecorded(bytes32,address,string,address,uint8,bytes32)",
    ),
    AttestationKind.SETPOINT: _EventShape(
        "SetpointRecorded",
        ("address", "bytes32"),
        "SetpointRecorded(bytes32,address,string,address,bytes32)",
    ),
    AttestationKind.LAB_RESULT: _EventShape(
        "LabResultRecorded",
        ("address", "uint8", "bytes32", "address[]"),
        "LabResultRecorded(bytes32,address,string,address,uint8,bytes32,address[])",
    ),
}


@dataclass(frozen=True)
class Attribution:
    """Who recorded a record, and when (``QualityLedger.attribution``)."""

    record_id: str
    kind: RecordKind
    member: str
    oracle: str
    relayer: str
    digest: str
    recorded_at: int
    block_number: int


@dataclass(frozen=True)
class LedgerRecord:
    """A record read back from the chain: the signed message, and a lab result's co-signers."""

    kind: AttestationKind
    message: Mapping[str, Any]
    co_signers: tuple[str, ...] = ()

    @property
    def record_id(self) -> str:
        return "0x" + bytes(self.message["recordId"]).hex()

    @property
    def value(self) -> Decimal:
        return from_fixed_point(int(self.message["value"]), int(self.message["decimals"]))


@dataclass(frozen=True)
class RecordedEvent:
    """One ``*Recorded`` log. ``key_hash`` is keccak256 of the subject, equipment or sample."""

    kind: AttestationKind
    record_id: str
    member: str
    key_hash: str
    oracle: str
    verdict: int | None
    digest: str
    co_signers: tuple[str, ...]
    block_number: int
    tx_hash: str
    log_index: int


AttestationLike = Attestation | Mapping[str, Any] | str


class QualityLedger:
    """The ledger, read and written through one member's sender (any member may relay)."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> QualityLedger:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls, sender: TransactionSender, consortium_address: str, lab_quorum: int = 1
    ) -> tuple[QualityLedger, Receipt]:
        binding, receipt = ContractBinding.deploy(
            sender,
            load_artifact(ARTIFACT_NAME),
            Web3.to_checksum_address(consortium_address),
            lab_quorum,
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    def domain(self) -> LedgerDomain:
        """The EIP-712 domain oracles sign under, as the contract reports it (ERC-5267)."""
        _fields, name, version, chain_id, contract, _salt, _extensions = self.binding.read(
            "eip712Domain"
        )
        return LedgerDomain(int(chain_id), str(contract), str(name), str(version))

    # -- recording ---------------------------------------------------------------------------

    def record_request(self, attestation: AttestationLike, *, gas: int | None = None) -> TxRequest:
        """The recording transaction, unsent (``sender.send`` it to pipeline several). A bundle is
        checked offline first (its signatures must match the signers it names)."""
        checked = _attestation(attestation)
        args: list[Any] = [checked.struct_values(), checked.signature]
        if checked.kind is AttestationKind.LAB_RESULT:
            args.append([c.signature for c in checked.co_signatures])
        return self.binding.request(_FUNCTIONS[checked.kind], *args, gas=gas)

    def record(self, attestation: AttestationLike, *, gas: int | None = None) -> Receipt:
        """Record an attestation of any kind and wait; a refusal raises its contract error."""
        return self.binding.sender.transact(self.record_request(attestation, gas=gas))

    def record_inspection(self, attestation: AttestationLike) -> Receipt:
        return self.record(_of_kind(attestation, AttestationKind.INSPECTION))

    def record_setpoint(self, attestation: AttestationLike) -> Receipt:
        return self.record(_of_kind(attestation, AttestationKind.SETPOINT))

    def record_lab_result(self, attestation: AttestationLike) -> Receipt:
        return self.record(_of_kind(attestation, AttestationKind.LAB_RESULT))

    # -- reads -------------------------------------------------------------------------------

    def consortium(self) -> str:
        return Web3.to_checksum_address(self.binding.read("consortium"))

    def lab_quorum(self) -> int:
        return int(self.binding.read("labQuorum"))

    def nonce_of(self, oracle: str) -> int:
        """The next nonce ``oracle`` must sign."""
        return int(self.binding.read("nonces", Web3.to_checksum_address(oracle)))

    def record_count(self) -> int:
        return int(self.binding.read("recordCount"))

    def is_recorded(self, record_id: Bytes32) -> bool:
        return bool(self.binding.read("isRecorded", to_bytes32(record_id, "record_id")))

    def attribution(self, record_id: Bytes32) -> Attribution:
        """``UnknownRecord`` if the id was never recorded."""
        key = to_bytes32(record_id, "record_id")
        kind, member, recorded_at, oracle, block_number, relayer, digest = self.binding.read(
            "attribution", key
        )
        return Attribution(
            record_id="0x" + key.hex(),
            kind=RecordKind(kind),
            member=Web3.to_checksum_address(member),
            oracle=Web3.to_checksum_address(oracle),
            relayer=Web3.to_checksum_address(relayer),
            digest="0x" + bytes(digest).hex(),
            recorded_at=int(recorded_at),
            block_number=int(block_number),
        )

    def inspection(self, record_id: Bytes32) -> LedgerRecord:
        """``UnknownRecord`` if the id holds no inspection result."""
        raw = self.binding.read("inspection", to_bytes32(record_id, "record_id"))
        return LedgerRecord(AttestationKind.INSPECTION, _message(AttestationKind.INSPECTION, raw))

    def setpoint(self, record_id: Bytes32) -> LedgerRecord:
        raw = self.binding.read("setpoint", to_bytes32(record_id, "record_id"))
        return LedgerRecord(AttestationKind.SETPOINT, _message(AttestationKind.SETPOINT, raw))

    def lab_result(self, record_id: Bytes32) -> LedgerRecord:
        raw, co_signers = self.binding.read("labResult", to_bytes32(record_id, "record_id"))
        return LedgerRecord(
            AttestationKind.LAB_RESULT,
            _message(AttestationKind.LAB_RESULT, raw),
            tuple(Web3.to_checksum_address(a) for a in co_signers),
        )

    def read_record(self, record_id: Bytes32) -> LedgerRecord:
        """Whatever kind of record the id holds; ``UnknownRecord`` if none."""
        kind = self.attribution(record_id).kind
        reader = {
            RecordKind.INSPECTION: self.inspection,
            RecordKind.SETPOINT: self.setpoint,
            RecordKind.LAB_RESULT: self.lab_result,
        }[kind]
        return reader(record_id)

    def digest(self, attestation: Attestation) -> bytes:
        """The EIP-712 digest of the attestation's message as the contract computes it."""
        view = _DIGEST_VIEWS[attestation.kind]
        return bytes(self.binding.read(view, attestation.struct_values()))

    # -- events ------------------------------------------------------------------------------

    def recorded_events(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        *,
        kinds: tuple[AttestationKind, ...] = tuple(AttestationKind),
        member: str | None = None,
        record_id: Bytes32 | None = None,
        key: str | None = None,
    ) -> list[RecordedEvent]:
        """``*Recorded`` logs in the block range (inclusive), in chain order, filtered on-chain by
        member, record id and ``key`` (the subject, equipment or sample URI; indexed as its hash).

        One ``eth_getLogs`` call per kind: keep ranges bounded on long chains.
        """
        events: list[RecordedEvent] = []
        for kind in kinds:
            shape = _EVENTS[kind]
            # Topics as 0x-hex strings: eth-tester silently matches nothing for bytes topics.
            topics: list[Any] = [
                shape.topic,
                None if record_id is None else "0x" + to_bytes32(record_id, "record_id").hex(),
                None if member is None else _address_topic(member),
                None if key is None else "0x" + keccak(text=key).hex(),
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
            events.extend(_event(kind, log) for log in logs)
        return sorted(events, key=lambda e: (e.block_number, e.log_index))


# --------------------------------------------------------------------------------------------------


def _attestation(value: AttestationLike) -> Attestation:
    return value if isinstance(value, Attestation) else parse_bundle(value)


def _of_kind(value: AttestationLike, kind: AttestationKind) -> Attestation:
    checked = _attestation(value)
    if checked.kind is not kind:
        raise AttestationError(f"expected a {kind.value} attestation, got a {checked.kind.value}")
    return checked


def _message(kind: AttestationKind, raw: Any) -> dict[str, Any]:
    schema = SCHEMAS[kind]
    message: dict[str, Any] = {}
    for (name, solidity_type), value in zip(schema.fields, raw, strict=True):
        if solidity_type == "bytes32":
            message[name] = bytes(value)
        elif solidity_type == "string":
            message[name] = str(value)
        else:
            message[name] = int(value)
    return message


def _address_topic(address: str) -> str:
    return "0x" + "00" * 12 + Web3.to_checksum_address(address)[2:].lower()


def _event(kind: AttestationKind, log: LogReceipt) -> RecordedEvent:
    topics = [bytes(topic) for topic in log["topics"]]
    decoded = abi_decode(list(_EVENTS[kind].data_types), bytes(log["data"]))
    oracle = Web3.to_checksum_address(decoded[0])
    verdict = None if kind is AttestationKind.SETPOINT else int(decoded[1])
    digest = bytes(decoded[-1] if kind is not AttestationKind.LAB_RESULT else decoded[2])
    co_signers: tuple[str, ...] = ()
    if kind is AttestationKind.LAB_RESULT:
        co_signers = tuple(Web3.to_checksum_address(a) for a in decoded[3])
    return RecordedEvent(
        kind=kind,
        record_id="0x" + topics[1].hex(),
        member=Web3.to_checksum_address(topics[2][12:]),
        key_hash="0x" + topics[3].hex(),
        oracle=oracle,
        verdict=verdict,
        digest="0x" + digest.hex(),
        co_signers=co_signers,
        block_number=int(log["blockNumber"]),
        tx_hash="0x" + bytes(log["transactionHash"]).hex(),
        log_index=int(log["logIndex"]),
    )
