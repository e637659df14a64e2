"""Local signing with a local nonce manager: pipelined raw transactions that recover on their own.

``send`` signs and broadcasts without waiting, so many transactions can be in flight; ``wait`` and
``wait_all`` collect checked receipts. Recovery:

* "nonce too low/high", "replacement underpriced": the local counter is resynchronised from the
  chain's pending count and the transaction re-signed (another process used the key, or the chain
  node restarted and forgot its state);
* "already known": the node already has this exact transaction, which is success;
* a transaction that disappears (dropped from the pool, or lost in a node restart) is broadcast
  again, or re-signed with a fresh nonce when the chain no longer accepts its nonce.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from hexbytes import HexBytes
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from node.chain.connection import ChainConnection, translate_chain_errors
from node.chain.revert import contract_error_from_exception, decode_revert
from node.errors import (
    ChainError,
    ContractRevertError,
    RpcError,
    TransactionError,
    TransactionTimeoutError,
)

GAS_MARGIN = 1.2
TRANSFER_GAS = 21_000
FEE_CACHE_SECONDS = 2.0
MAX_SEND_ATTEMPTS = 4

_NONCE_PATTERNS = re.compile(
    r"nonce too (low|high)|invalid transaction nonce|replacement transaction underpriced|"
    r"replacement_underpriced|nonce_too_low|nonce_too_high|incorrect_nonce",
    re.IGNORECASE,
)
_KNOWN_PATTERNS = re.compile(r"already known|known transaction|already_known", re.IGNORECASE)
_REVERT_PATTERNS = re.compile(r"revert", re.IGNORECASE)
_FEE_PATTERNS = re.compile(r"underpriced|fee cap|feecap|max fee per gas less", re.IGNORECASE)


@dataclass(frozen=True)
class TxRequest:
    """What to send. ``gas=None`` estimates it (and surfaces a revert before anything is sent)."""

    to: str | None
    data: bytes = b""
    value: int = 0
    gas: int | None = None
    label: str = "transaction"


@dataclass(frozen=True)
class SentTx:
    request: TxRequest
    tx_hash: str
    nonce: int
    gas: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class Receipt:
    """A successful, checked receipt."""

    tx_hash: str
    block_number: int
    gas_used: int
    contract_address: str | None
    receipt: TxReceipt = field(repr=False)


@dataclass(frozen=True)
class SenderOptions:
    receipt_timeout: float = 120.0
    confirmations: int = 0
    drop_check_after: float = 5.0
    poll_interval: float = 0.05
    max_poll_interval: float = 0.1
    """Receipt polls back off from ``poll_interval`` to this: on a chain with 1 s blocks a
    receipt is noticed within 0.1 s of its block (the closed loop's latency depends on it)."""


class NonceManager:
    """The next nonce for one account, kept locally and resynchronised from the chain on demand."""

    def __init__(self, fetch_pending_count: Callable[[], int]) -> None:
        self._fetch = fetch_pending_count
        self._next: int | None = None

    def take(self) -> int:
        if self._next is None:
            self._next = self._fetch()
        nonce = self._next
        self._next += 1
        return nonce

    def forget(self) -> None:
        """Drop the local counter; the next ``take`` asks the chain again."""
        self._next = None

    @property
    def next_nonce(self) -> int | None:
        return self._next


class FeeOracle:
    """EIP-1559 fees when the chain has a base fee, a legacy gas price otherwise; briefly cached."""

    def __init__(self, connection: ChainConnection, ttl: float = FEE_CACHE_SECONDS) -> None:
        self._connection = connection
        self._ttl = ttl
        self._cached: dict[str, int] = {}
        self._fetched_at = -1e9

    def fields(self) -> dict[str, int]:
        if time.monotonic() - self._fetched_at > self._ttl:
            self.refresh()
        return self._cached

    def refresh(self) -> None:
        block = self._connection.rpc("eth_getBlockByNumber", ["latest", False])
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            self._cached = {"gasPrice": _int(self._connection.rpc("eth_gasPrice"))}
        else:
            tip = self._priority_fee()
            self._cached = {
                "maxFeePerGas": 2 * _int(base_fee) + tip,
                "maxPriorityFeePerGas": tip,
            }
        self._fetched_at = time.monotonic()

    def _priority_fee(self) -> int:
        try:
            return _int(self._connection.rpc("eth_maxPriorityFeePerGas"))
        except RpcError:
            return 0  # permissioned chains without the method run on free gas


class TransactionSender:
    """Signs with a local key, manages its nonce, pipelines raw transactions, checks receipts."""

    def __init__(
        self,
        connection: ChainConnection,
        account: LocalAccount,
        options: SenderOptions | None = None,
    ) -> None:
        self.connection = connection
        self.account = account
        self.address: str = account.address
        self.options = options or SenderOptions()
        self.nonces = NonceManager(self._pending_count)
        self.fees = FeeOracle(connection)
        self._lock = threading.Lock()

    # -- sending ----------------------------------------------------------------------------

    def send(self, request: TxRequest) -> SentTx:
        """Sign and broadcast ``request`` without waiting for it to be mined."""
        gas = request.gas if request.gas is not None else self.estimate_gas(request)
        with self._lock:
            return self._send_locked(request, gas)

    def transact(self, request: TxRequest) -> Receipt:
        return self.wait(self.send(request))

    def transfer(self, to: str, wei: int, label: str = "transfer") -> Receipt:
        """Send ``wei`` to ``to`` (e.g. gas money for an oracle key) and wait for it."""
        return self.transact(TxRequest(to=to, value=wei, gas=TRANSFER_GAS, label=label))

    def estimate_gas(self, request: TxRequest) -> int:
        with self.reverts_decoded(request.label):
            estimate = self.connection.w3.eth.estimate_gas(self._call_fields(request))  # type: ignore[arg-type]
        return int(estimate * GAS_MARGIN)

    def call(self, request: TxRequest, block: int | str = "latest") -> bytes:
        """Run ``request`` as an eth_call; a revert is raised as its decoded contract error."""
        with self.reverts_decoded(request.label):
            result = self.connection.w3.eth.call(self._call_fields(request), block)  # type: ignore[arg-type]
        return bytes(result)

    @contextmanager
    def reverts_decoded(self, label: str) -> Iterator[None]:
        """Raise a revert as its decoded contract error, anything else as a ChainError."""
        with translate_chain_errors(self.connection.url):
            try:
                yield
            except (ContractLogicError, Web3RPCError, TransactionFailed, ValueError) as exc:
                error = contract_error_from_exception(exc, context=label)
                if error is None:
                    raise
                raise error from exc

    def _send_locked(self, request: TxRequest, gas: int) -> SentTx:
        last_error: RpcError | None = None
        for _attempt in range(MAX_SEND_ATTEMPTS):
            sent = self._sign(request, gas, self.nonces.take())
            try:
                self.connection.rpc("eth_sendRawTransaction", [_hex(sent.raw)])
                return sent
            except RpcError as exc:
                last_error = exc
                if _KNOWN_PATTERNS.search(exc.message):
                    return sent
                self.nonces.forget()  # whatever went wrong, the chain's count is the truth now
                if _REVERT_PATTERNS.search(exc.message):
                    # some development chains mine a reverting transaction and report it at once
                    error = contract_error_from_exception(exc, context=request.label)
                    raise error or decode_revert(None, context=request.label) from exc
                if _FEE_PATTERNS.search(exc.message):
                    self.fees.refresh()
                elif not _NONCE_PATTERNS.search(exc.message):
                    raise TransactionError(
                        f"{request.label}: the chain refused it: {exc.message}"
                    ) from exc
            except ChainError:
                self.nonces.forget()  # unknown whether it arrived: never leave a gap behind
                raise
        raise TransactionError(
            f"{request.label}: still refused after {MAX_SEND_ATTEMPTS} attempts: "
            f"{last_error.message if last_error else 'unknown'}"
        )

    def _sign(self, request: TxRequest, gas: int, nonce: int) -> SentTx:
        tx: dict[str, Any] = {
            "chainId": self.connection.chain_id,
            "nonce": nonce,
            "gas": gas,
            "value": request.value,
            "data": request.data,
            **self.fees.fields(),
        }
        if request.to is not None:
            tx["to"] = request.to
        signed = self.account.sign_transaction(tx)
        return SentTx(request, _hex(signed.hash), nonce, gas, bytes(signed.raw_transaction))

    def _call_fields(self, request: TxRequest) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "from": self.address,
            "value": request.value,
            "data": request.data,
        }
        if request.to is not None:
            fields["to"] = request.to
        return fields

    def _pending_count(self) -> int:
        return _int(self.connection.rpc("eth_getTransactionCount", [self.address, "pending"]))

    def _latest_count(self) -> int:
        return _int(self.connection.rpc("eth_getTransactionCount", [self.address, "latest"]))

    # -- receipts ----------------------------------------------------------------------------

    def wait(self, sent: SentTx, timeout: float | None = None) -> Receipt:
        """Wait for ``sent`` to be mined (and confirmed); raise its decoded revert if it failed."""
        deadline = time.monotonic() + (timeout or self.options.receipt_timeout)
        current = sent
        last_seen = time.monotonic()
        delay = 0.0
        while True:
            receipt = self._receipt(current.tx_hash)
            if receipt is not None:
                return self._checked(current, receipt, deadline)
            now = time.monotonic()
            if now >= deadline:
                raise TransactionTimeoutError(
                    f"{sent.request.label}: no receipt for {current.tx_hash} after "
                    f"{timeout or self.options.receipt_timeout:.0f} s"
                )
            if now - last_seen >= self.options.drop_check_after:
                current = self._recover_if_dropped(current)
                last_seen = now
            time.sleep(delay)
            delay = min(max(delay * 2, self.options.poll_interval), self.options.max_poll_interval)

    def wait_all(self, sent: Sequence[SentTx], timeout: float | None = None) -> list[Receipt]:
        return [self.wait(item, timeout) for item in sent]

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        with translate_chain_errors(self.connection.url):
            try:
                return self.connection.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None

    def _recover_if_dropped(self, sent: SentTx) -> SentTx:
        """Rebroadcast a transaction the chain no longer knows; re-sign it if its nonce is gone."""
        if self.connection.rpc("eth_getTransactionByHash", [sent.tx_hash]) is not None:
            return sent  # still pending: just slow
        if self._receipt(sent.tx_hash) is not None:
            return sent
        with self._lock:
            if self._latest_count() > sent.nonce:
                raise TransactionError(
                    f"{sent.request.label}: transaction {sent.tx_hash} was dropped and its nonce "
                    f"{sent.nonce} was used by another transaction"
                )
            try:
                self.connection.rpc("eth_sendRawTransaction", [_hex(sent.raw)])
                return sent
            except RpcError as exc:
                if _KNOWN_PATTERNS.search(exc.message):
                    return sent
                if not _NONCE_PATTERNS.search(exc.message):
                    raise TransactionError(
                        f"{sent.request.label}: rebroadcast of dropped {sent.tx_hash} refused: "
                        f"{exc.message}"
                    ) from exc
                self.nonces.forget()  # the chain lost earlier nonces too: sign again from its view
                return self._send_locked(sent.request, sent.gas)

    def _checked(self, sent: SentTx, receipt: TxReceipt, deadline: float) -> Receipt:
        if receipt["status"] != 1:
            raise self._failure(sent, receipt)
        block_number = int(receipt["blockNumber"])
        self._await_confirmations(block_number, deadline, sent)
        address = receipt.get("contractAddress")
        return Receipt(
            tx_hash=sent.tx_hash,
            block_number=block_number,
            gas_used=int(receipt["gasUsed"]),
            contract_address=str(address) if address else None,
            receipt=receipt,
        )

    def _await_confirmations(self, block_number: int, deadline: float, sent: SentTx) -> None:
        target = block_number + self.options.confirmations
        while self.options.confirmations and self.connection.head_block() < target:
            if time.monotonic() >= deadline:
                raise TransactionTimeoutError(
                    f"{sent.request.label}: {sent.tx_hash} mined in block {block_number} but not "
                    f"{self.options.confirmations} blocks deep in time"
                )
            time.sleep(self.options.poll_interval)

    def _failure(self, sent: SentTx, receipt: TxReceipt) -> TransactionError:
        """Explain a failed receipt: replay it just before its block to recover the revert data."""
        if int(receipt["gasUsed"]) >= sent.gas:
            return TransactionError(
                f"{sent.request.label}: {sent.tx_hash} ran out of gas ({sent.gas} gas)"
            )
        block = max(int(receipt["blockNumber"]) - 1, 0)
        try:
            self.call(sent.request, block)
        except ContractRevertError as exc:
            return exc
        except ChainError:
            pass
        return TransactionError(
            f"{sent.request.label}: {sent.tx_hash} reverted in block {receipt['blockNumber']}"
        )


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()
