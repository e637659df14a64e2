"""What a production chain changes, as far as this machine can show it: blocks come on a clock
(Hardhat with interval mining, as QBFT or Clique seal them), and a node that is not on BFT
finality waits for ``confirmations`` blocks before it treats a batch as anchored or acts on an
event. See README.md, "Production notes"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from node.chain.connection import ChainConnection, rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.line_control import CompensationRequestedEvent, LineControl
from node.chain.localnode import LocalChain, free_port
from node.chain.sender import TRANSFER_GAS, TransactionSender, TxRequest
from node.control.events import EventConsumer, Handled
from node.keys import hardhat_dev_key
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from tests.hardhat_node import require_hardhat

BLOCK_MS = 300
LINE = "0x" + keccak(text="urn:epc:id:giai:0950600013435.COATER01").hex()
BLADE = "0x" + keccak(text="blade_pressure").hex()


@pytest.fixture(scope="module")
def interval_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainConnection]:
    require_hardhat()
    chain = LocalChain(tmp_path_factory.mktemp("interval-chain"))
    status = chain.start(port=free_port(), mining="interval", interval_ms=BLOCK_MS)
    try:
        assert status.url is not None
        yield rpc_chain(status.url)
    finally:
        chain.stop()


@pytest.mark.hardhat
def test_blocks_come_on_a_clock_and_a_transaction_waits_for_the_next(
    interval_chain: ChainConnection,
) -> None:
    sender = TransactionSender(interval_chain, hardhat_dev_key(3))
    first = interval_chain.head_block()
    time.sleep(3 * BLOCK_MS / 1000)
    assert interval_chain.head_block() >= first + 2  # empty blocks too, like a QBFT network
    # automine would give each transaction a block of its own on arrival; on a clock they wait
    # and share the next one (ten sent within milliseconds cannot span ten 300 ms blocks)
    to = hardhat_dev_key(4).address
    sent = [sender.send(TxRequest(to=to, value=1, gas=TRANSFER_GAS)) for _ in range(10)]
    receipts = sender.wait_all(sent)
    assert min(r.block_number for r in receipts) > first
    assert len({r.block_number for r in receipts}) < len(receipts)


@pytest.mark.hardhat
def test_events_are_acted_on_only_under_enough_confirmations(
    interval_chain: ChainConnection, tmp_path: Path
) -> None:
    aster = TransactionSender(interval_chain, hardhat_dev_key(5))
    founders = [
        Founder(aster.address, Role.MANUFACTURER, "Aster Motors", "http://127.0.0.1:8601"),
        Founder(hardhat_dev_key(6).address, Role.SUPPLIER, "Borealis", "http://127.0.0.1:8602"),
    ]
    consortium, _ = Consortium.deploy(aster, founders, 1, 3600)
    control, deployed = LineControl.deploy(aster, consortium.address)
    control.register_line(LINE)
    control.configure_parameter(
        LINE, BLADE, baseline=1000, min_delta=-50, max_delta=50, max_abs_offset=200, decimals=3
    )
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", classification, BlobStore(tmp_path))
    try:
        consumer = EventConsumer(
            "production",
            store,
            interval_chain,
            [control.decoder],
            {CompensationRequestedEvent: lambda e: Handled(f"compensation:{e.request_id}")},
            confirmations=5,
            start_block=deployed.block_number,
        )
        requested = control.request_compensation(LINE, BLADE, -50, "0x" + "11" * 32)
        mined_in = requested.receipt.block_number
        assert consumer.poll().handled == ()  # not yet 5 blocks deep
        while interval_chain.head_block() < mined_in + 5:
            time.sleep(BLOCK_MS / 1000)
        assert consumer.poll().handled == ("compensation:1",)
        checkpoint = consumer.checkpoint()
        assert checkpoint is not None
        assert checkpoint.block_number <= interval_chain.head_block() - 5
    finally:
        store.close()
