"""The consortium's contracts by address, and their calls and logs decoded by the artifacts' ABIs.

A :class:`ContractDirectory` knows which deployed address is which of the node's contracts
(Consortium, AnchorRegistry, QualityLedger, LineControl, SupplierQuality, CorrectiveAction).
Calldata sent to one of them is decoded by the function whose selector it starts with, a contract
creation by the artifact whose creation bytecode it starts with, and a log by the event whose
topic it carries. What is not recognised stays raw (the page shows its hex). Values come out as
JSON data: checksummed addresses, bytes as ``0x`` hex, integers, booleans, strings, structs as
objects keyed by component name, arrays as lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak
from web3 import Web3

from node.chain.artifacts import Artifact, load_artifact
from node.errors import ArtifactError

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = [
    "CONTRACT_NAMES",
    "Argument",
    "ContractDirectory",
    "ContractRef",
    "DecodedCall",
    "DecodedEvent",
    "decode_creation",
    "json_value",
]

CONTRACT_NAMES = (
    "Consortium",
    "AnchorRegistry",
    "QualityLedger",
    "LineControl",
    "SupplierQuality",
    "CorrectiveAction",
)
"""The node's contracts, by artifact name."""

_CONFIG_KEYS = {
    "Consortium": "consortium",
    "AnchorRegistry": "anchor_registry",
    "QualityLedger": "quality_ledger",
    "LineControl": "line_control",
    "SupplierQuality": "supplier_quality",
    "CorrectiveAction": "corrective_action",
}


@dataclass(frozen=True)
class Argument:
    """One decoded argument: its ABI name, canonical type and JSON value."""

    name: str
    type: str
    value: Any
    indexed: bool = False


@dataclass(frozen=True)
class DecodedCall:
    """A call (or ``constructor``) of a known contract with its decoded arguments."""

    contract: str
    function: str
    signature: str
    args: tuple[Argument, ...]


@dataclass(frozen=True)
class DecodedEvent:
    contract: str
    event: str
    signature: str
    args: tuple[Argument, ...]


@dataclass(frozen=True)
class ContractRef:
    """A known contract: its artifact name, address and, when known, where it was deployed."""

    name: str
    address: str
    block: int | None = None
    tx_hash: str | None = None


@dataclass(frozen=True)
class _Function:
    name: str
    signature: str
    inputs: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class _Event:
    name: str
    signature: str
    inputs: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class _Abi:
    artifact: Artifact
    functions: Mapping[bytes, _Function]
    events: Mapping[bytes, _Event]
    constructor: tuple[Mapping[str, Any], ...]


@cache
def _abi(name: str) -> _Abi:
    artifact = load_artifact(name)
    functions: dict[bytes, _Function] = {}
    events: dict[bytes, _Event] = {}
    constructor: tuple[Mapping[str, Any], ...] = ()
    for entry in artifact.abi:
        inputs = tuple(entry.get("inputs", ()))
        signature = f"{entry.get('name', '')}({','.join(_canonical(p) for p in inputs)})"
        if entry.get("type") == "function":
            functions[keccak(text=signature)[:4]] = _Function(entry["name"], signature, inputs)
        elif entry.get("type") == "event" and not entry.get("anonymous"):
            events[keccak(text=signature)] = _Event(entry["name"], signature, inputs)
        elif entry.get("type") == "constructor":
            constructor = inputs
    return _Abi(artifact, functions, events, constructor)


class ContractDirectory:
    """The known contracts of one chain, by address (checksummed)."""

    def __init__(self, contracts: Iterable[ContractRef] = ()) -> None:
        self._by_address: dict[str, ContractRef] = {}
        for contract in contracts:
            self.add(contract)

    @classmethod
    def of(cls, addresses: Mapping[str, str | None]) -> ContractDirectory:
        """From ``{artifact name: address}`` (``None`` addresses are skipped)."""
        return cls(ContractRef(name, address) for name, address in addresses.items() if address)

    @classmethod
    def of_node(cls, node: Node) -> ContractDirectory:
        """The contracts a :class:`~node.runtime.Node` knows: its ``[contracts]`` settings, else
        the deployments it recorded on the connected chain."""
        refs = []
        for name in CONTRACT_NAMES:
            configured = getattr(node.settings.contracts, _CONFIG_KEYS[name])
            recorded = node.deployment(name)
            if configured:
                same = recorded is not None and recorded.address.lower() == configured.lower()
                block = recorded.block if same and recorded else None
                tx = recorded.tx_hash if same and recorded else None
                refs.append(ContractRef(name, configured, block, tx))
            elif recorded is not None:
                refs.append(ContractRef(name, recorded.address, recorded.block, recorded.tx_hash))
        return cls(refs)

    def add(self, contract: ContractRef) -> None:
        if contract.name not in CONTRACT_NAMES:
            raise ArtifactError(f"{contract.name} is not one of the node's contracts")
        address = Web3.to_checksum_address(contract.address)
        self._by_address[address] = ContractRef(
            contract.name, address, contract.block, contract.tx_hash
        )

    def __iter__(self) -> Iterator[ContractRef]:
        return iter(self._by_address.values())

    def __len__(self) -> int:
        return len(self._by_address)

    def at(self, address: str | None) -> ContractRef | None:
        if not address or not Web3.is_address(address):
            return None
        return self._by_address.get(Web3.to_checksum_address(address))

    def named(self, name: str) -> ContractRef | None:
        """The (last added) contract of an artifact name."""
        found = [ref for ref in self._by_address.values() if ref.name == name]
        return found[-1] if found else None

    @property
    def earliest_block(self) -> int:
        """The first block any known contract was deployed in (0 if unknown)."""
        blocks = [ref.block for ref in self._by_address.values() if ref.block is not None]
        return min(blocks) if blocks and len(blocks) == len(self._by_address) else 0

    # -- decoding ---------------------------------------------------------------------------

    def decode_call(self, to: str | None, data: bytes) -> DecodedCall | None:
        """The decoded call of a transaction to ``to`` (``None``: a contract creation), or
        ``None`` if the contract, function or arguments are not recognised."""
        if to is None:
            return decode_creation(data)
        contract = self.at(to)
        if contract is None or len(data) < 4:
            return None
        abi = _abi(contract.name)
        function = abi.functions.get(bytes(data[:4]))
        if function is None:
            return None
        args = _decode_args(function.inputs, bytes(data[4:]))
        if args is None:
            return None
        return DecodedCall(contract.name, function.name, function.signature, args)

    def decode_log(self, address: str, topics: Sequence[bytes], data: bytes) -> DecodedEvent | None:
        """The decoded event of a log, or ``None`` if it is not one of a known contract's."""
        contract = self.at(address)
        if contract is None or not topics:
            return None
        event = _abi(contract.name).events.get(bytes(topics[0]))
        if event is None:
            return None
        indexed = [p for p in event.inputs if p.get("indexed")]
        plain = [p for p in event.inputs if not p.get("indexed")]
        if len(indexed) != len(topics) - 1:
            return None
        values: dict[str, Argument] = {}
        for param, topic in zip(indexed, topics[1:], strict=True):
            kind = _canonical(param)
            if _dynamic(kind):  # only its hash is in the topic
                value: Any = "0x" + bytes(topic).hex()
            else:
                try:
                    value = json_value(param, abi_decode([kind], bytes(topic))[0])
                except (DecodingError, ValueError, OverflowError):
                    return None
            values[str(param["name"])] = Argument(str(param["name"]), kind, value, True)
        decoded = _decode_args(tuple(plain), bytes(data))
        if decoded is None:
            return None
        for argument in decoded:
            values[argument.name] = argument
        ordered = tuple(values[str(p["name"])] for p in event.inputs)
        return DecodedEvent(contract.name, event.name, event.signature, ordered)


def decode_creation(data: bytes) -> DecodedCall | None:
    """A deployment of one of the node's contracts: its constructor arguments decoded."""
    for name in CONTRACT_NAMES:
        abi = _abi(name)
        code = bytes.fromhex(abi.artifact.bytecode.removeprefix("0x"))
        if bytes(data).startswith(code):
            args = _decode_args(abi.constructor, bytes(data)[len(code) :])
            if args is not None:
                types = ",".join(_canonical(p) for p in abi.constructor)
                return DecodedCall(name, "constructor", f"constructor({types})", args)
    return None


def _decode_args(params: Sequence[Mapping[str, Any]], data: bytes) -> tuple[Argument, ...] | None:
    kinds = [_canonical(p) for p in params]
    try:
        values = abi_decode(kinds, data)
    except (DecodingError, ValueError, OverflowError, TypeError):
        return None
    return tuple(
        Argument(str(p.get("name", "")), kind, json_value(p, value))
        for p, kind, value in zip(params, kinds, values, strict=True)
    )


def json_value(param: Mapping[str, Any], value: Any) -> Any:
    """A decoded ABI value as JSON data, following the parameter's ABI type."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [json_value(inner, item) for item in value]
    if kind == "tuple":
        components = param.get("components", [])
        return {
            str(c.get("name") or i): json_value(c, item)
            for i, (c, item) in enumerate(zip(components, value, strict=True))
        }
    if kind == "address":
        return Web3.to_checksum_address(value)
    if kind.startswith("bytes"):
        return "0x" + bytes(value).hex()
    if kind == "bool":
        return bool(value)
    if kind.startswith(("uint", "int")):
        return int(value)
    return value


def _canonical(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _dynamic(kind: str) -> bool:
    """Whether an indexed argument of this type is logged as its hash (reference types are)."""
    return kind in ("string", "bytes") or "[" in kind or kind.startswith("(")
