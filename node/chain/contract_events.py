"""Contract logs decoded by the artifact's ABI into typed, frozen event dataclasses.

A binding declares one frozen dataclass per event, subclassing :class:`LoggedEvent`, whose fields
are the event's arguments in snake case (``requestId`` is ``request_id``); :class:`EventDecoder`
turns the logs of a receipt, or of a block range, into instances of them. Argument values are
normalised as :mod:`node.chain.abi_values` returns them (checksummed addresses, ``bytes32`` as
``0x`` hex, ``int``, ``bool``). Indexed arguments of dynamic types (hashed into their topic) are
given as the topic's ``0x`` hex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import FilterParams, LogReceipt

from node.chain.abi_values import bytes32_out
from node.chain.bindings import ContractBinding
from node.chain.connection import translate_chain_errors
from node.chain.sender import Receipt
from node.errors import ArtifactError

__all__ = ["EventDecoder", "LoggedEvent", "of_type"]


@dataclass(frozen=True, kw_only=True)
class LoggedEvent:
    """Where an event was logged. Subclasses add the event's arguments."""

    block_number: int
    tx_hash: str
    log_index: int


E = TypeVar("E", bound=LoggedEvent)
T = TypeVar("T", bound=LoggedEvent)


def of_type(events: Iterable[LoggedEvent], kind: type[T]) -> list[T]:
    """The events of one class, in their order."""
    return [event for event in events if isinstance(event, kind)]


@dataclass(frozen=True)
class _EventShape:
    name: str
    topic: str
    indexed: tuple[tuple[str, str], ...]  # (snake name, canonical type)
    data: tuple[tuple[str, str], ...]


class EventDecoder(Generic[E]):
    """Decodes one contract's logs into the event classes a binding declares."""

    def __init__(self, binding: ContractBinding, classes: Mapping[str, Callable[..., E]]) -> None:
        self.binding = binding
        self._classes = dict(classes)
        shapes = {shape.name: shape for shape in _shapes(binding.artifact.abi)}
        missing = sorted(set(self._classes) - set(shapes))
        if missing:
            raise ArtifactError(f"{binding.name} artifact has no event {', '.join(missing)}")
        self._by_topic = {shapes[name].topic: shapes[name] for name in self._classes}

    def in_receipt(self, receipt: Receipt) -> list[E]:
        """The events this contract logged in ``receipt``, in log order."""
        logs = receipt.receipt["logs"]
        return [event for event in map(self.decode, logs) if event is not None]

    def between(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        names: Collection[str] | None = None,
    ) -> list[E]:
        """The events this contract logged in the block range (inclusive), in chain order,
        optionally only those named in ``names``.

        One ``eth_getLogs`` call filtered by address: keep ranges bounded on long chains (nodes cap
        the range or the result size; the embedded chain's log queries slow down as blocks grow).
        """
        unknown = sorted(set(names or ()) - set(self._classes))
        if unknown:
            raise ValueError(f"{self.binding.name} has no event {', '.join(unknown)}")
        params: FilterParams = {
            "address": Web3.to_checksum_address(self.binding.address),
            "fromBlock": from_block,
            "toBlock": to_block,
        }
        connection = self.binding.sender.connection
        with translate_chain_errors(connection.url):
            logs = connection.w3.eth.get_logs(params)
        decoded = (self._decode(log) for log in logs)
        return [event for name, event in filter(None, decoded) if names is None or name in names]

    def decode(self, log: LogReceipt) -> E | None:
        """The event of one log, or ``None`` if another contract logged it or it is not one of the
        declared events."""
        decoded = self._decode(log)
        return None if decoded is None else decoded[1]

    def _decode(self, log: LogReceipt) -> tuple[str, E] | None:
        if Web3.to_checksum_address(log["address"]) != self.binding.address:
            return None
        topics = [bytes(topic) for topic in log["topics"]]
        if not topics:
            return None
        shape = self._by_topic.get("0x" + topics[0].hex())
        if shape is None:
            return None
        args: dict[str, Any] = {}
        for (name, kind), topic in zip(shape.indexed, topics[1:], strict=True):
            if _static(kind):
                args[name] = _normalise(kind, abi_decode([kind], topic)[0])
            else:  # a dynamic indexed argument is only its hash: keep the topic
                args[name] = "0x" + topic.hex()
        values = abi_decode([kind for _, kind in shape.data], bytes(log["data"]))
        for (name, kind), value in zip(shape.data, values, strict=True):
            args[name] = _normalise(kind, value)
        event = self._classes[shape.name](
            **args,
            block_number=int(log["blockNumber"]),
            tx_hash=bytes32_out(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )
        return shape.name, event


def _shapes(abi: list[dict[str, Any]]) -> list[_EventShape]:
    shapes = []
    for entry in abi:
        if entry.get("type") != "event" or entry.get("anonymous"):
            continue
        inputs = entry.get("inputs", [])
        types = [_canonical(param) for param in inputs]
        signature = f"{entry['name']}({','.join(types)})"
        indexed: list[tuple[str, str]] = []
        data: list[tuple[str, str]] = []
        for param, kind in zip(inputs, types, strict=True):
            target = indexed if param.get("indexed") else data
            target.append((_snake(str(param["name"])), kind))
        shapes.append(
            _EventShape(
                name=str(entry["name"]),
                topic="0x" + keccak(text=signature).hex(),
                indexed=tuple(indexed),
                data=tuple(data),
            )
        )
    return shapes


def _canonical(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(component) for component in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


_DYNAMIC = re.compile(r"^(string|bytes)$|\[\]|^\(")


def _static(kind: str) -> bool:
    return _DYNAMIC.search(kind) is None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name.rstrip("_")).lower()


def _normalise(kind: str, value: Any) -> Any:
    if kind == "address":
        return Web3.to_checksum_address(value)
    if kind == "bytes32":
        return bytes32_out(value)
    if kind == "bool":
        return bool(value)
    if kind.startswith(("uint", "int")) and "[" not in kind:
        return int(value)
    return value
