"""Blocks and transactions as an auditor reads them: the latest blocks, one block with its
transactions, one transaction with its decoded call and decoded (or raw) logs.

Lookups of something the chain does not have return ``None`` (the page answers 404); a chain that
cannot be reached raises :class:`~node.errors.ChainUnavailableError` as everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from node.chain.connection import ChainConnection, translate_chain_errors
from node.explorer.abi import ContractDirectory, DecodedCall, DecodedEvent

__all__ = [
    "BlockDetail",
    "BlockSummary",
    "LogEntry",
    "TransactionDetail",
    "TransactionSummary",
    "block_detail",
    "latest_blocks",
    "log_entry",
    "transaction_detail",
]

MAX_BLOCKS = 200
"""The most blocks one ``latest_blocks`` call returns."""


@dataclass(frozen=True)
class BlockSummary:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    transaction_count: int
    gas_used: int
    gas_limit: int
    miner: str


@dataclass(frozen=True)
class TransactionSummary:
    """A transaction in a block list: who called which known contract's function, and how it
    ended (``success``, ``failed``, or ``pending`` without a receipt)."""

    hash: str
    block_number: int | None
    index: int | None
    sender: str
    to: str | None
    contract: str | None
    """The known contract called or created (its artifact name); None for others."""
    function: str | None
    """The decoded function (``constructor`` for a deployment); None if not decoded."""
    value: int
    status: str


@dataclass(frozen=True)
class BlockDetail:
    block: BlockSummary
    transactions: tuple[TransactionSummary, ...]


@dataclass(frozen=True)
class LogEntry:
    """A log: always its raw topics and data; ``decoded`` when a known contract emitted it."""

    log_index: int
    address: str
    topics: tuple[str, ...]
    data: str
    decoded: DecodedEvent | None
    block_number: int | None = None
    tx_hash: str | None = None

    @property
    def contract(self) -> str | None:
        return None if self.decoded is None else self.decoded.contract

    @property
    def event(self) -> str | None:
        return None if self.decoded is None else self.decoded.event


@dataclass(frozen=True)
class TransactionDetail:
    summary: TransactionSummary
    nonce: int
    gas: int
    gas_used: int | None
    gas_price: int | None
    input: str
    """The calldata as ``0x`` hex, always (the decoded call is in ``call``)."""
    call: DecodedCall | None
    created: str | None
    """The address of the contract this transaction created."""
    logs: tuple[LogEntry, ...]
    block_timestamp: int | None


def latest_blocks(
    connection: ChainConnection, count: int = 20, before: int | None = None
) -> list[BlockSummary]:
    """Up to ``count`` blocks, newest first, ending at the head (or below block ``before``)."""
    count = max(0, min(count, MAX_BLOCKS))
    head = connection.head_block()
    top = head if before is None else min(head, before - 1)
    blocks = []
    with translate_chain_errors(connection.url):
        for number in range(top, max(top - count, -1), -1):
            blocks.append(_summary(connection.w3.eth.get_block(number)))
    return blocks


def block_detail(
    connection: ChainConnection, directory: ContractDirectory, block: int | str
) -> BlockDetail | None:
    """One block (by number or ``0x`` hash) with a summary of each of its transactions."""
    with translate_chain_errors(connection.url):
        try:
            raw = connection.w3.eth.get_block(_block_id(block))
        except (BlockNotFound, ValueError):
            return None
        hashes = [_hex(h) for h in raw["transactions"]]
    summaries = []
    for tx_hash in hashes:
        detail = transaction_detail(connection, directory, tx_hash)
        if detail is not None:
            summaries.append(detail.summary)
    return BlockDetail(_summary(raw), tuple(summaries))


def transaction_detail(
    connection: ChainConnection, directory: ContractDirectory, tx_hash: str
) -> TransactionDetail | None:
    """One transaction with its decoded call and its logs (decoded where known, else raw)."""
    if not _is_hash(tx_hash):
        return None
    with translate_chain_errors(connection.url):
        try:
            tx = connection.w3.eth.get_transaction(HexBytes(tx_hash))
        except (TransactionNotFound, ValueError):
            return None
        receipt: Mapping[str, Any] | None
        try:
            receipt = connection.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except (TransactionNotFound, ValueError):
            receipt = None
        block_number = _int_or_none(tx.get("blockNumber"))
        timestamp = None
        if block_number is not None:
            timestamp = int(connection.w3.eth.get_block(block_number)["timestamp"])
    to = Web3.to_checksum_address(tx["to"]) if tx.get("to") else None
    data = bytes(tx.get("input", b"") or b"")
    call = directory.decode_call(to, data)
    created: str | None = None
    if receipt is not None and receipt.get("contractAddress"):
        created = Web3.to_checksum_address(str(receipt["contractAddress"]))
    status = "pending"
    if receipt is not None:
        status = "success" if int(receipt.get("status", 1)) == 1 else "failed"
    contract = directory.at(to or created)
    summary = TransactionSummary(
        hash=_hex(tx["hash"]),
        block_number=block_number,
        index=_int_or_none(tx.get("transactionIndex")),
        sender=Web3.to_checksum_address(tx["from"]),
        to=to,
        contract=(contract.name if contract else None) or (call.contract if call else None),
        function=call.function if call else None,
        value=int(tx.get("value", 0)),
        status=status,
    )
    raw_logs: Sequence[Mapping[str, Any]] = () if receipt is None else receipt.get("logs", ())
    logs = tuple(log_entry(directory, log) for log in raw_logs)
    gas_price = tx.get("gasPrice")
    if receipt is not None and receipt.get("effectiveGasPrice") is not None:
        gas_price = receipt["effectiveGasPrice"]
    return TransactionDetail(
        summary=summary,
        nonce=int(tx["nonce"]),
        gas=int(tx["gas"]),
        gas_used=_int_or_none(receipt.get("gasUsed")) if receipt is not None else None,
        gas_price=_int_or_none(gas_price),
        input="0x" + data.hex(),
        call=call,
        created=created,
        logs=logs,
        block_timestamp=timestamp,
    )


def log_entry(directory: ContractDirectory, log: Mapping[str, Any]) -> LogEntry:
    """A receipt's (or ``eth_getLogs``') log, decoded if a known contract emitted it."""
    topics = [bytes(topic) for topic in log.get("topics", ())]
    data = bytes(log.get("data", b"") or b"")
    address = Web3.to_checksum_address(log["address"])
    return LogEntry(
        log_index=int(log.get("logIndex", 0)),
        address=address,
        topics=tuple("0x" + t.hex() for t in topics),
        data="0x" + data.hex(),
        decoded=directory.decode_log(address, topics, data),
        block_number=_int_or_none(log.get("blockNumber")),
        tx_hash=_hex(log["transactionHash"]) if log.get("transactionHash") else None,
    )


def _summary(raw: Mapping[str, Any]) -> BlockSummary:
    transactions: Sequence[Any] = raw.get("transactions", ())
    return BlockSummary(
        number=int(raw["number"]),
        hash=_hex(raw["hash"]),
        parent_hash=_hex(raw["parentHash"]),
        timestamp=int(raw["timestamp"]),
        transaction_count=len(transactions),
        gas_used=int(raw.get("gasUsed", 0)),
        gas_limit=int(raw.get("gasLimit", 0)),
        miner=Web3.to_checksum_address(raw.get("miner") or "0x" + "00" * 20),
    )


def _block_id(block: int | str) -> Any:
    if isinstance(block, int):
        if block < 0:
            raise ValueError("negative block number")
        return block
    text = block.strip()
    if text.isdigit():
        return int(text)
    if _is_hash(text):
        return HexBytes(text)
    raise ValueError(f"{block!r} is neither a block number nor a block hash")


def _is_hash(text: str) -> bool:
    if not isinstance(text, str) or len(text) != 66 or not text.startswith("0x"):
        return False
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        return False
    return True


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
