"""Chain-writing executors and the members' event handlers, on the in-process chain: compensation
requests (idempotent after a crash, refused out of bounds), acknowledgements, lots that place a
hold, and the 8D from hold to release as each member's consumer and executors see it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from node.chain.connection import ChainConnection, embedded_chain
from node.chain.consortium import Consortium
from node.chain.corrective_action import CorrectiveAction
from node.chain.line_control import LineControl
from node.chain.sender import TransactionSender
from node.chain.supplier_quality import SupplierQuality, deploy_supplier_quality
from node.control.chain_actions import KINDS, ChainActions, text_hash
from node.control.events import EventConsumer
from node.control.handlers import CaseParties, member_handlers
from node.control.lines import Lines, parameter_id
from node.control.outbox import ActionOutbox, ActionStatus, PendingAction
from node.errors import ActionError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store, now_us
from node.settings import LOCAL_CHAIN_ID, LineParameterSettings, LineSettings

LINES = Lines(
    {
        "coater": LineSettings(
            uri="https://id.example.com/8004/0950600013435COATER01",
            parameters={
                "blade_pressure": LineParameterSettings(
                    decimals=3, baseline=1.2, min_delta=-0.05, max_delta=0.05, max_abs_offset=0.15
                )
            },
        )
    }
)


@pytest.fixture
def chain() -> ChainConnection:
    return embedded_chain(LOCAL_CHAIN_ID)


@pytest.fixture
def contracts(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> tuple[LineControl, SupplierQuality, CorrectiveAction]:
    aster = make_sender(dev_accounts[0])
    control, _ = LineControl.deploy(aster, consortium_2_of_3[0].address)
    coater = LINES.named("coater")
    control.register_line(coater.id)
    control.configure_parameter(
        coater.id,
        parameter_id("blade_pressure"),
        baseline=1200,
        min_delta=-50,
        max_delta=50,
        max_abs_offset=150,
        decimals=3,
    )
    pair = deploy_supplier_quality(aster, consortium_2_of_3[0].address)
    return control, pair.supplier_quality, pair.corrective_action


def member_stores(tmp_path: Path, names: tuple[str, ...]) -> Iterator[dict[str, Store]]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    stores = {
        name: Store.open(
            f"sqlite:///{tmp_path / f'{name}.db'}", classification, BlobStore(tmp_path / name)
        )
        for name in names
    }
    yield stores
    for store in stores.values():
        store.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, Store]]:
    yield from member_stores(tmp_path, ("aster", "borealis"))


def run(executor: ChainActions, kind: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    action = PendingAction(1, kind, f"{kind}:test", payload, ActionStatus.RUNNING, 0)
    return asyncio.run(executor.execute(action))


def executor_as(
    sender: TransactionSender, control: LineControl, quality: SupplierQuality
) -> ChainActions:
    return ChainActions(
        LINES,
        lambda: LineControl.at(sender, control.address),
        lambda: SupplierQuality.at(sender, quality.address),
    )


def test_a_compensation_request_is_sent_once_even_when_run_again(
    contracts: tuple[LineControl, SupplierQuality, CorrectiveAction],
) -> None:
    control, quality, _ = contracts
    mined: list[int] = []
    actions = ChainActions(LINES, lambda: control, lambda: quality, lambda: mined.append(1))
    payload = {
        "line": "coater",
        "parameter": "blade_pressure",
        "delta": -0.05,
        "decision_hash": text_hash("decision 1"),
        "since_block": 0,
    }
    first = run(actions, "line_compensation", payload)
    assert first["request_id"] == 1
    again = run(actions, "line_compensation", payload)  # the node crashed before marking it done
    assert (again["request_id"], again["resent"]) == (1, False)
    assert control.request_count() == 1 and len(mined) == 2
    request = control.request(1)
    assert (request.delta, request.decision_hash) == (-50, text_hash("decision 1"))


def test_a_compensation_out_of_its_on_chain_bounds_is_a_final_failure(
    contracts: tuple[LineControl, SupplierQuality, CorrectiveAction],
) -> None:
    control, quality, _ = contracts
    actions = ChainActions(LINES, lambda: control, lambda: quality)
    payload = {
        "line": "coater",
        "parameter": "blade_pressure",
        "delta": 0.08,
        "decision_hash": text_hash("too much"),
    }
    with pytest.raises(ActionError, match="DeltaOutOfBounds") as refused:
        run(actions, "line_compensation", payload)
    assert refused.value.retryable is False
    assert control.request_count() == 0


def test_an_acknowledgement_is_recorded_once(
    contracts: tuple[LineControl, SupplierQuality, CorrectiveAction],
) -> None:
    control, quality, _ = contracts
    actions = ChainActions(LINES, lambda: control, lambda: quality)
    control.request_compensation(
        LINES.named("coater").id, parameter_id("blade_pressure"), -50, text_hash("d")
    )
    ack = {"request_id": 1, "applied": True, "read_back": 1.15, "detail": "acked in 12 ms"}
    assert "tx_hash" in run(actions, "chain_compensation_ack", ack)
    assert run(actions, "chain_compensation_ack", ack) == {"already": "AlreadyAcknowledged"}
    assert control.offset(LINES.named("coater").id, parameter_id("blade_pressure")) == -50


def test_the_8d_from_hold_to_release_as_each_member_sees_it(
    contracts: tuple[LineControl, SupplierQuality, CorrectiveAction],
    stores: dict[str, Store],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    control, quality, corrective = contracts
    aster_account, borealis_account = dev_accounts[0], dev_accounts[1]
    aster_chain = executor_as(make_sender(aster_account), control, quality)
    borealis_8d = CorrectiveAction.at(make_sender(borealis_account), corrective.address)

    def parties(case_id: int) -> CaseParties:
        case = corrective.case(case_id)
        return CaseParties(case.customer, case.supplier)

    def consumer(name: str, account: LocalAccount) -> EventConsumer:
        handlers = member_handlers(account.address, LINES, parties, now_us)
        decoders = [control.decoder, quality.decoder, corrective.decoder]
        connection = control.binding.sender.connection
        return EventConsumer("closed-loop", stores[name], connection, decoders, handlers)

    aster, borealis = consumer("aster", aster_account), consumer("borealis", borealis_account)

    def owed(name: str) -> list[str]:
        return [a.key for a in ActionOutbox(stores[name]).actions()]

    lot = {
        "supplier": borealis_account.address,
        "part": "cathode-can",
        "characteristic": "diameter",
        "value": 18.31,
        "lsl": 18.1,
        "usl": 18.3,
        "decimals": 3,
    }
    outcomes = [run(aster_chain, "incoming_lot", lot | {"lot": f"L{n}"}) for n in range(5)]
    assert [o["consecutive"] for o in outcomes] == [1, 2, 3, 4, 5]
    hold_id, case_id = outcomes[-1]["hold_id"], outcomes[-1]["case_id"]
    assert hold_id == 1 and case_id == 1

    aster.poll()
    borealis.poll()
    assert owed("aster") == ["erp_po_pause:1"]
    assert owed("borealis") == ["supplier_task:1:D0"]

    for discipline in range(9):
        borealis_8d.submit(case_id, discipline, text_hash(f"D{discipline} report"))
        aster.poll()
        assert f"review:{case_id}:D{discipline}:{text_hash(f'D{discipline} report')}" in owed(
            "aster"
        )
        if discipline == 7:
            corrective.approve(case_id, 7)
            corrective.verify_effectiveness(case_id, text_hash("90 days without escapes"))
            continue
        corrective.approve(case_id, discipline)
        borealis.poll()
        if discipline < 8:
            assert owed("borealis")[-1] == f"supplier_task:1:D{discipline + 1}"
    assert corrective.is_closed(case_id)

    aster.poll()
    assert owed("aster")[-1] == "supplier_release:1"
    run(aster_chain, "supplier_release", {"hold_id": hold_id})
    assert not quality.is_on_hold(aster_account.address, borealis_account.address)
    aster.poll()
    assert owed("aster")[-1] == "erp_po_release:1"
    assert run(aster_chain, "supplier_release", {"hold_id": hold_id}) == {
        "already": "HoldNotActive"
    }


def test_every_kind_has_its_method() -> None:
    assert all(callable(getattr(ChainActions, f"_{kind}", None)) for kind in KINDS)
