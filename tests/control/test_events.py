"""The contract-event consumer: exactly once from a checkpoint, atomic with its actions, across a
crash mid-pass, confirmations and a reorganised chain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3

from node.chain.connection import ChainConnection, embedded_chain, rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.line_control import CompensationRequestedEvent, LineControl
from node.chain.localnode import free_port
from node.chain.sender import TransactionSender
from node.control.events import EventConsumer, Handled
from node.control.outbox import ActionOutbox, ActionRequest
from node.errors import ChainUnavailableError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from node.settings import LOCAL_CHAIN_ID
from tests.hardhat_node import HardhatChain


def _id(text: str) -> str:
    return "0x" + keccak(text=text).hex()


COATER = _id("urn:epc:id:giai:0950600013435.COATER01")
BLADE = _id("blade_pressure")
BOUNDS = {"baseline": 120, "min_delta": -5, "max_delta": 5, "max_abs_offset": 50, "decimals": 2}


@pytest.fixture
def chain() -> ChainConnection:
    return embedded_chain(LOCAL_CHAIN_ID)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    opened = Store.open(
        f"sqlite:///{tmp_path / 'store.db'}", classification, BlobStore(tmp_path / "blobs")
    )
    yield opened
    opened.close()


@pytest.fixture
def coater(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> LineControl:
    control, _ = LineControl.deploy(make_sender(dev_accounts[0]), consortium_2_of_3[0].address)
    control.register_line(COATER)
    control.configure_parameter(COATER, BLADE, **BOUNDS)
    return control


def on_request(event: CompensationRequestedEvent) -> Handled:
    key = f"compensation:{event.request_id}:{event.decision_hash}"
    payload = {"request_id": event.request_id, "delta": event.delta}
    return Handled(key, [ActionRequest("plc_compensation", f"plc:{key}", payload)])


def consumer(store: Store, control: LineControl, **options: int) -> EventConsumer:
    return EventConsumer(
        "line-control",
        store,
        control.binding.sender.connection,
        [control.decoder],
        {CompensationRequestedEvent: on_request},
        **options,
    )


def request(control: LineControl, decision: str, delta: int = -1) -> None:
    control.request_compensation(COATER, BLADE, delta, _id(decision))
    control.record_acknowledgement(
        control.request_count(), applied=True, read_back=0, detail_hash=_id("ack")
    )


def mine(chain: ChainConnection) -> None:
    assert chain.tester is not None
    chain.tester.mine_blocks(1)


def planned(store: Store) -> list[tuple[int, int]]:
    return [(a.payload["request_id"], a.payload["delta"]) for a in ActionOutbox(store).actions()]


def test_each_event_is_acted_on_once(coater: LineControl, store: Store) -> None:
    events = consumer(store, coater)
    request(coater, "d1")
    request(coater, "d2", delta=2)

    first = events.poll()
    assert len(first.handled) == 2 and first.actions == 2
    assert planned(store) == [(1, -1), (2, 2)]
    checkpoint = events.checkpoint()
    assert checkpoint is not None
    assert checkpoint.block_number == coater.binding.sender.connection.head_block()

    again = events.poll()
    assert (again.handled, again.actions) == ((), 0)
    request(coater, "d3")
    assert len(events.poll().handled) == 1
    assert [r for r, _ in planned(store)] == [1, 2, 3]


def test_a_pass_that_fails_midway_records_nothing(coater: LineControl, store: Store) -> None:
    request(coater, "d1")
    request(coater, "d2")
    calls: list[int] = []

    def crashing(event: CompensationRequestedEvent) -> Handled:
        calls.append(event.request_id)
        if event.request_id == 2:
            raise RuntimeError("the node died here")
        return on_request(event)

    broken = EventConsumer(
        "line-control",
        store,
        coater.binding.sender.connection,
        [coater.decoder],
        {CompensationRequestedEvent: crashing},
    )
    with pytest.raises(RuntimeError):
        broken.poll()
    assert broken.checkpoint() is None and planned(store) == []

    result = consumer(store, coater).poll()
    assert len(result.handled) == 2
    assert planned(store) == [(1, -1), (2, -1)]


def test_confirmations_hold_back_the_newest_blocks(coater: LineControl, store: Store) -> None:
    events = consumer(store, coater, confirmations=2)
    request(coater, "d1")  # two blocks: the request, then its acknowledgement
    assert events.poll().handled == ()
    mine(coater.binding.sender.connection)
    assert [key.split(":")[1] for key in events.poll().handled] == ["1"]


def test_a_reorganised_chain_is_read_again_without_acting_twice(
    coater: LineControl,
    store: Store,
    chain: ChainConnection,
    dev_accounts: list[LocalAccount],
) -> None:
    events = consumer(store, coater)
    events.poll()  # the block before the fork is kept
    tester = chain.tester
    assert tester is not None
    fork = tester.take_snapshot()
    request(coater, "d1")  # request 1, decision d1
    assert [k.split(":")[1] for k in events.poll().handled] == ["1"]
    orphaned_checkpoint = events.checkpoint()

    tester.revert_to_snapshot(fork)
    # The new branch: the same decision mined again (request 1 again), then another one.
    again = LineControl.at(TransactionSender(chain, dev_accounts[0]), coater.address)
    request(again, "d1")
    request(again, "d2", delta=3)
    mine(chain)

    result = events.poll()
    assert result.rewound_to is not None
    assert orphaned_checkpoint is not None and result.rewound_to < orphaned_checkpoint.block_number
    assert result.skipped == (f"compensation:1:{_id('d1')}",)
    assert result.handled == (f"compensation:2:{_id('d2')}",)
    assert planned(store) == [(1, -1), (2, 3)]


def test_a_chain_that_is_down_raises_and_moves_nothing(coater: LineControl, store: Store) -> None:
    request(coater, "d1")
    consumer(store, coater).poll()
    before = consumer(store, coater).checkpoint()
    request(coater, "d2")
    cut_off = EventConsumer(
        "line-control",
        store,
        _unreachable_chain(),
        [coater.decoder],
        {CompensationRequestedEvent: on_request},
    )
    with pytest.raises(ChainUnavailableError, match="cannot reach the chain"):
        cut_off.poll()
    assert consumer(store, coater).checkpoint() == before
    assert len(consumer(store, coater).poll().handled) == 1


def _unreachable_chain() -> ChainConnection:
    url = f"http://127.0.0.1:{free_port()}"
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 2}))
    return ChainConnection(w3, url, LOCAL_CHAIN_ID)


@pytest.mark.hardhat
def test_the_consumer_follows_a_json_rpc_chain(
    hardhat_chain: HardhatChain, tmp_path: Path, dev_accounts: list[LocalAccount]
) -> None:
    connection = rpc_chain(hardhat_chain.url)
    sender = TransactionSender(connection, dev_accounts[0])
    founders = [
        Founder(dev_accounts[0].address, Role.MANUFACTURER, "Aster Motors", "http://127.0.0.1:1"),
        Founder(dev_accounts[1].address, Role.SUPPLIER, "Borealis Cells", "http://127.0.0.1:2"),
    ]
    consortium, _ = Consortium.deploy(sender, founders, 1, 3600)
    control, deployed = LineControl.deploy(sender, consortium.address)
    control.register_line(COATER)
    control.configure_parameter(COATER, BLADE, **BOUNDS)
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", classification, BlobStore(tmp_path))
    try:
        events = consumer(store, control, start_block=deployed.block_number)
        request(control, "d1")
        assert [k.split(":")[1] for k in events.poll().handled] == ["1"]
        assert planned(store) == [(1, -1)]
    finally:
        store.close()
