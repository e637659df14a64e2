"""Connecting: chainId checked, unreachable endpoints named, PoA blocks read, dev keys refused."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from web3.exceptions import ExtraDataLengthError

from node.chain.connection import connect, embedded_chain, is_poa_extra_data, rpc_chain
from node.chain.localnode import free_port
from node.chain.sender import TransactionSender
from node.errors import ChainUnavailableError, ForbiddenKeyError, WrongChainError
from node.keys import hardhat_dev_key
from node.runtime import Node
from node.settings import LOCAL_CHAIN_ID, ChainSettings, settings_from_values
from tests.hardhat_node import HardhatChain

ZERO_ADDRESS = "0x" + "00" * 20
QBFT_EXTRA_DATA = "0x" + "f8" * 97  # QBFT/IBFT put validators and seals in extraData


def test_embedded_chain_reports_the_local_chain_id() -> None:
    connection = connect(ChainSettings(rpc_url="embedded"))
    assert connection.chain_id == LOCAL_CHAIN_ID
    assert connection.status().head_block == 0


def test_hardhat_reports_the_local_chain_id(hardhat_chain: HardhatChain) -> None:
    connection = connect(ChainSettings(rpc_url=hardhat_chain.url))
    assert (connection.chain_id, connection.poa) == (LOCAL_CHAIN_ID, False)


def test_hardhat_on_another_chain_id_is_refused(hardhat_chain: HardhatChain) -> None:
    with pytest.raises(
        WrongChainError, match=f"has chainId {LOCAL_CHAIN_ID}, but the configuration expects 1$"
    ):
        connect(ChainSettings(rpc_url=hardhat_chain.url, chain_id=1))


def test_a_node_refuses_a_connection_to_another_chain(tmp_path: Path) -> None:
    settings = settings_from_values(
        {
            "base_dir": str(tmp_path),
            "member": {"name": "Aster Motors", "role": "manufacturer"},
            "chain": {"rpc_url": "embedded", "chain_id": 1},
        }
    )
    with pytest.raises(WrongChainError, match="expects 1"):
        Node(settings, embedded_chain(LOCAL_CHAIN_ID), hardhat_dev_key(0))


def test_an_unreachable_endpoint_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        ChainUnavailableError, match=f"cannot reach the chain at {url}: connection refused"
    ):
        connect(ChainSettings(rpc_url=url, request_timeout=2))


def test_dev_keys_are_refused_off_the_local_chain(tmp_path: Path) -> None:
    settings = settings_from_values(
        {
            "base_dir": str(tmp_path),
            "member": {"name": "Aster Motors", "role": "manufacturer"},
            "chain": {"rpc_url": "embedded", "chain_id": 1337},
        }
    )
    production_like = embedded_chain(1337)  # any chainId other than the local one
    with pytest.raises(ForbiddenKeyError, match="refusing the public development key"):
        Node(settings, production_like, hardhat_dev_key(0))
    local = settings_from_values(
        {"base_dir": str(tmp_path), "member": {"name": "Aster Motors", "role": "manufacturer"}}
    )
    assert Node(local, embedded_chain(LOCAL_CHAIN_ID), hardhat_dev_key(0)).address


def test_poa_extra_data_detection() -> None:
    assert is_poa_extra_data(QBFT_EXTRA_DATA)
    assert not is_poa_extra_data("0x" + "00" * 32)
    assert not is_poa_extra_data("0x")


class _ExtraDataProxy(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to Hardhat and gives every block a QBFT-sized extraData."""

    upstream = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.loads(response.read())
        _lengthen_extra_data(payload)
        encoded = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _lengthen_extra_data(payload: Any) -> None:
    for item in payload if isinstance(payload, list) else [payload]:
        result = item.get("result")
        if isinstance(result, dict) and "extraData" in result:
            result["extraData"] = QBFT_EXTRA_DATA


@pytest.fixture
def poa_proxy(hardhat_chain: HardhatChain) -> Iterator[str]:
    handler = type("Proxy", (_ExtraDataProxy,), {"upstream": hardhat_chain.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_poa_chain_is_detected_and_its_blocks_read(poa_proxy: str) -> None:
    connection = rpc_chain(poa_proxy, poa="auto")
    assert connection.poa
    block = connection.w3.eth.get_block("latest")
    assert len(block["proofOfAuthorityData"]) == 97
    assert connection.status().poa


def test_without_the_poa_middleware_such_blocks_are_unreadable(poa_proxy: str) -> None:
    connection = rpc_chain(poa_proxy, poa="off")
    with pytest.raises(ExtraDataLengthError):
        connection.w3.eth.get_block("latest")


def test_embedded_chain_serves_several_threads_at_once() -> None:
    """eth-tester mines a block per transaction; two threads mining at once broke its canonical
    chain (BlockNotFound) before the provider served requests one at a time."""
    connection = embedded_chain(LOCAL_CHAIN_ID)
    senders = [TransactionSender(connection, hardhat_dev_key(index)) for index in range(4)]
    errors: list[BaseException] = []

    def send_transfers(sender: TransactionSender) -> None:
        try:
            for _ in range(15):
                sender.transfer(ZERO_ADDRESS, 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send_transfers, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert connection.head_block() == 60


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    """py_ecc raises the recursion limit so high that json.loads of 200 KB of "[" segfaulted."""
    program = (
        "import json, node.chain.connection\n"
        "try:\n    json.loads('[' * 200_000)\n"
        "except RecursionError:\n    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "refused"), result.stderr
