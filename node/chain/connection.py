"""One connection type for every chain a node talks to.

``connect(settings.chain)`` gives a :class:`ChainConnection` over either the in-process py-evm chain
(``rpc_url = "embedded"``, for tests and demos) or a JSON-RPC URL (Hardhat locally; Besu QBFT,
GoQuorum or any PoA chain in production, whose long ``extraData`` is handled by web3's PoA
middleware). The chainId is checked when connecting.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import requests
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils.exceptions import ValidationError as EthUtilsValidationError
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return

from node.errors import ChainError, ChainUnavailableError, RpcError, WrongChainError
from node.keys import HARDHAT_DEV_ACCOUNT_COUNT, HARDHAT_DEV_MNEMONIC
from node.settings import EMBEDDED_RPC, ChainSettings

# py_ecc (imported with py-evm) raises the recursion limit to 100,000 for every thread of the
# process; at that depth a deeply nested JSON document (e.g. an API body of 200 KB of "[")
# overflows the C stack and kills the process instead of raising RecursionError. py-evm itself
# needs 12,288 (1,024 EVM call frames).
SAFE_RECURSION_LIMIT = 12_288
sys.setrecursionlimit(SAFE_RECURSION_LIMIT)

HARDHAT_HD_PATH = "m/44'/60'/0'/0"
POA_EXTRA_DATA_BYTES = 32
"""Ethereum mainnet's extraData limit; PoA chains (Clique, IBFT, QBFT) put more there."""


@dataclass(frozen=True)
class ChainStatus:
    url: str
    chain_id: int
    head_block: int
    head_timestamp: int
    client: str
    poa: bool


class ChainConnection:
    """A web3 connection whose chainId is known to match the configuration."""

    def __init__(
        self,
        w3: Web3,
        url: str,
        chain_id: int,
        *,
        poa: bool = False,
        tester: EthereumTester | None = None,
    ) -> None:
        self.w3 = w3
        self.url = url
        self.chain_id = chain_id
        self.poa = poa
        self.tester = tester

    @property
    def embedded(self) -> bool:
        return self.tester is not None

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A raw JSON-RPC call; errors become ChainError subclasses."""
        with translate_chain_errors(self.url):
            try:
                response = self.w3.provider.make_request(cast(Any, method), params or [])
            except (EthUtilsValidationError, TransactionFailed) as exc:
                if self.tester is None:
                    raise
                raise RpcError(method, str(exc)) from exc  # eth-tester raises instead of answering
        error = response.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise RpcError(
                    method, str(error.get("message", error)), error.get("code"), error.get("data")
                )
            raise RpcError(method, str(error))
        return response["result"]

    def head_block(self) -> int:
        with translate_chain_errors(self.url):
            return int(self.w3.eth.block_number)

    def status(self) -> ChainStatus:
        with translate_chain_errors(self.url):
            head = self.w3.eth.get_block("latest")
            client = str(self.w3.client_version)
        return ChainStatus(
            url=self.url,
            chain_id=self.chain_id,
            head_block=int(head["number"]),
            head_timestamp=int(head["timestamp"]),
            client=client,
            poa=self.poa,
        )

    def has_code(self, address: str) -> bool:
        with translate_chain_errors(self.url):
            return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def advance_time(self, seconds: int) -> None:
        """Move a local development chain's clock forward and mine a block (tests, demos)."""
        if self.tester is not None:
            latest = self.w3.eth.get_block("latest")
            self.tester.time_travel(int(latest["timestamp"]) + seconds)
            return
        try:
            self.rpc("evm_increaseTime", [seconds])
            self.rpc("evm_mine", [])
        except ChainError as exc:
            raise ChainError(f"{self.url} is not a development chain: {exc}") from exc


@contextmanager
def translate_chain_errors(url: str) -> Iterator[None]:
    """Turn transport and RPC failures into the node's error tree."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
        raise ChainUnavailableError(f"cannot reach the chain at {url}: {_reason(exc)}") from exc
    except Web3RPCError as exc:
        raise ChainError(f"the chain at {url} answered with an error: {exc}") from exc
    except requests.HTTPError as exc:
        raise ChainUnavailableError(f"the chain at {url} answered HTTP error: {exc}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def connect(settings: ChainSettings) -> ChainConnection:
    """Connect as configured and check the chainId; raise a ChainError naming the cause."""
    if settings.rpc_url == EMBEDDED_RPC:
        connection = embedded_chain(settings.chain_id)
    else:
        connection = rpc_chain(settings.rpc_url, settings.poa, settings.request_timeout)
    ensure_chain_id(connection, settings.chain_id)
    return connection


def ensure_chain_id(connection: ChainConnection, expected: int) -> None:
    if connection.chain_id != expected:
        raise WrongChainError(
            f"the chain at {connection.url} has chainId {connection.chain_id}, "
            f"but the configuration expects {expected}"
        )


def embedded_chain(chain_id: int) -> ChainConnection:
    """A fresh in-process py-evm chain whose prefunded accounts are Hardhat's demo accounts."""
    backend = PyEVMBackend.from_mnemonic(
        HARDHAT_DEV_MNEMONIC, num_accounts=HARDHAT_DEV_ACCOUNT_COUNT, hd_path=HARDHAT_HD_PATH
    )
    type(backend.chain).chain_id = chain_id  # the tester chain class is made per backend
    tester = EthereumTester(backend)
    endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
    endpoints["eth"]["chainId"] = static_return(chain_id)
    w3 = Web3(_SerialTesterProvider(tester, api_endpoints=endpoints))
    return ChainConnection(w3, EMBEDDED_RPC, chain_id, tester=tester)


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe (two threads mining at once corrupt its canonical chain):
    requests from a node's worker threads are served one at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            return super().make_request(method, params)


def rpc_chain(url: str, poa: str = "auto", timeout: float = 10.0) -> ChainConnection:
    """Connect to a JSON-RPC node; ``poa`` is "on", "off" or "auto" (look at the genesis block)."""
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
    with translate_chain_errors(url):
        try:
            chain_id = int(w3.eth.chain_id)
        except Web3Exception as exc:
            raise ChainUnavailableError(f"{url} does not answer eth_chainId: {exc}") from exc
    use_poa = poa == "on" or (poa == "auto" and _has_long_extra_data(w3, url))
    if use_poa:
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return ChainConnection(w3, url, chain_id, poa=use_poa)


def _has_long_extra_data(w3: Web3, url: str) -> bool:
    with translate_chain_errors(url):
        response = w3.provider.make_request(cast(Any, "eth_getBlockByNumber"), ["latest", False])
    block = response.get("result") or {}
    extra = str(block.get("extraData", "0x"))
    return is_poa_extra_data(extra)


def is_poa_extra_data(extra_data_hex: str) -> bool:
    return (len(extra_data_hex.removeprefix("0x")) // 2) > POA_EXTRA_DATA_BYTES
