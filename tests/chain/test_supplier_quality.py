"""SupplierQuality.sol (lots, counters, holds) with CorrectiveAction.sol, through the bindings, on
the in-process chain; one smoke test of the three closed-loop contracts on Hardhat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.artifacts import check_fresh, default_node_modules, load_artifact
from node.chain.connection import ChainConnection, embedded_chain, rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.contract_errors import (
    AlreadyOnHold,
    CaseNotClosed,
    HoldNotActive,
    InactiveMember,
    InvalidConsortium,
    InvalidCorrectiveAction,
    InvalidLimits,
    LineIsStopped,
    LotAlreadyRecorded,
    MemberAccountRequired,
    MissingJustification,
    NotHoldCustomer,
    NotMemberOrOracle,
    NotSupplierQuality,
    UnknownHold,
    UnknownLot,
    WrongRole,
)
from node.chain.contract_events import of_type
from node.chain.corrective_action import CaseOpenedEvent, CorrectiveAction, Discipline
from node.chain.line_control import LineControl
from node.chain.sender import SenderOptions, TransactionSender
from node.chain.supplier_quality import (
    ARTIFACT_NAME,
    DEFAULT_HOLD_THRESHOLD,
    HoldReleasedEvent,
    HoldStatus,
    HoldThresholdSetEvent,
    LotOutcome,
    LotRecordedEvent,
    SupplierHeldEvent,
    SupplierQuality,
    SupplierQualityDeployment,
    deploy_supplier_quality,
)
from node.settings import LOCAL_CHAIN_ID
from tests.conftest import PROPOSAL_TTL
from tests.hardhat_node import HardhatChain

SUPPLIER_QUALITY_DEPLOY_GAS_LIMIT = 1_700_000
LOT_GAS_LIMIT = 300_000
HOLD_LOT_GAS_LIMIT = 600_000

OracleSenderFactory = Callable[[Consortium], TransactionSender]  # fixture new_oracle_sender
AdmitFactory = Callable[[LocalAccount, Role, str], Consortium]  # fixture admit


def _id(text: str) -> str:
    return "0x" + keccak(text=text).hex()


PART = _id("urn:epc:idpat:sgtin:0950600.013435.*")
BORE = _id("bore_diameter")
FLATNESS = _id("flatness")
# Bore diameter in mm, 3 decimals: 12.000 +/- 0.020 mm.
LIMITS = {"lsl": 11_980, "usl": 12_020, "decimals": 3}
IN_SPEC, ABOVE_USL = 12_004, 12_031


@pytest.fixture
def chain() -> ChainConnection:
    """These tests run on the in-process chain only (one Hardhat smoke test covers the RPC path)."""
    return embedded_chain(LOCAL_CHAIN_ID)


# --------------------------------------------------------------------------------------------------
# The artifact


@pytest.mark.skipif(
    not (default_node_modules() / "@openzeppelin" / "contracts").is_dir(),
    reason="hardhat-local/node_modules/@openzeppelin/contracts is absent (npm ci in hardhat-local)",
)
def test_committed_artifact_is_fresh() -> None:
    artifact = load_artifact(ARTIFACT_NAME)
    check_fresh(artifact)
    assert {
        "contracts/SupplierQuality.sol",
        "contracts/ConsortiumGated.sol",
        "contracts/interfaces/ISupplierQuality.sol",
        "contracts/interfaces/ICorrectiveAction.sol",
    } <= set(artifact.sources)


def test_events_are_past_tense_with_at_most_three_indexed_keys() -> None:
    abi = load_artifact(ARTIFACT_NAME).abi
    events = {e["name"]: e for e in abi if e["type"] == "event"}
    assert set(events) == {"LotRecorded", "HoldThresholdSet", "SupplierHeld", "HoldReleased"}
    for event in events.values():
        assert sum(1 for i in event["inputs"] if i["indexed"]) <= 3
    held = [(i["name"], i["indexed"]) for i in events["SupplierHeld"]["inputs"]]
    assert held[:6] == [
        ("holdId", True),
        ("customer", True),
        ("supplier", True),
        ("partId", False),
        ("characteristicId", False),
        ("consecutive", False),
    ]


# --------------------------------------------------------------------------------------------------
# Fixtures


@dataclass(frozen=True)
class Loop:
    """The deployed pair, as each party sees it."""

    deployment: SupplierQualityDeployment
    customer: SupplierQuality  # an oracle key of Aster (manufacturer)
    customer_account: SupplierQuality  # Aster's own account
    supplier: SupplierQuality  # Borealis's account
    outsider: SupplierQuality  # dev account 5, not a member
    action_customer: CorrectiveAction
    action_supplier: CorrectiveAction
    action_lab: CorrectiveAction

    @property
    def customer_address(self) -> str:
        return self.customer_account.binding.sender.address

    @property
    def supplier_address(self) -> str:
        return self.supplier.binding.sender.address


@pytest.fixture
def loop(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
    new_oracle_sender: OracleSenderFactory,
) -> Loop:
    aster, borealis = consortium_2_of_3[:2]
    deployment = deploy_supplier_quality(make_sender(dev_accounts[0]), aster.address)
    assert deployment.supplier_quality_receipt.gas_used <= SUPPLIER_QUALITY_DEPLOY_GAS_LIMIT
    quality, action = deployment.supplier_quality.address, deployment.corrective_action.address
    customer_oracle = new_oracle_sender(aster)
    supplier_oracle = new_oracle_sender(borealis)
    return Loop(
        deployment=deployment,
        customer=SupplierQuality.at(customer_oracle, quality),
        customer_account=deployment.supplier_quality,
        supplier=SupplierQuality.at(make_sender(dev_accounts[1]), quality),
        outsider=SupplierQuality.at(make_sender(dev_accounts[5]), quality),
        action_customer=CorrectiveAction.at(customer_oracle, action),
        action_supplier=CorrectiveAction.at(supplier_oracle, action),
        action_lab=CorrectiveAction.at(make_sender(dev_accounts[2]), action),
    )


def _lot(
    loop: Loop,
    name: str,
    measured: int,
    characteristic: str = BORE,
    quality: SupplierQuality | None = None,
) -> tuple[str, LotOutcome]:
    lot_id = _id(name)
    recorder = quality or loop.customer
    outcome = recorder.record_lot(
        loop.supplier_address, PART, characteristic, lot_id, measured=measured, **LIMITS
    )
    return lot_id, outcome


def _out_of_spec_lots(
    loop: Loop, count: int, prefix: str, characteristic: str = BORE
) -> list[LotOutcome]:
    return [_lot(loop, f"{prefix}-{i}", ABOVE_USL, characteristic)[1] for i in range(count)]


def _close_case(loop: Loop, case_id: int) -> None:
    for discipline in Discipline:
        loop.action_supplier.submit(case_id, discipline, _id(f"case {case_id} D{discipline}"))
        if discipline is Discipline.D8:
            loop.action_lab.verify_effectiveness(case_id, _id("lab: effective"))
        loop.action_customer.approve(case_id, discipline)


# --------------------------------------------------------------------------------------------------
# Deployment


def test_deployment_checks_the_consortium_and_the_corrective_action(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    sender = make_sender(dev_accounts[0])
    consortium = consortium_2_of_3[0].address
    action, _ = CorrectiveAction.deploy(sender, consortium)
    with pytest.raises(InvalidConsortium):
        SupplierQuality.deploy(sender, dev_accounts[7].address, action.address)
    with pytest.raises(InvalidCorrectiveAction) as no_code:
        SupplierQuality.deploy(sender, consortium, dev_accounts[7].address)
    assert no_code.value.args_by_name == {"correctiveAction": dev_accounts[7].address}
    other = Consortium.deploy(
        sender, [Founder(dev_accounts[0].address, Role.MANUFACTURER, "Solo", "")], 1, PROPOSAL_TTL
    )[0]
    foreign, _ = CorrectiveAction.deploy(sender, other.address)
    with pytest.raises(InvalidCorrectiveAction):  # the 8D workflow of another consortium
        SupplierQuality.deploy(sender, consortium, foreign.address)


def test_deploy_supplier_quality_wires_the_pair(
    loop: Loop, consortium_2_of_3: list[Consortium]
) -> None:
    deployment = loop.deployment
    quality, action = deployment.supplier_quality, deployment.corrective_action
    assert quality.consortium() == action.consortium() == consortium_2_of_3[0].address
    assert quality.corrective_action() == action.address
    assert action.supplier_quality() == quality.address
    with pytest.raises(NotSupplierQuality):  # wired: still nobody else opens cases for holds
        loop.action_customer.binding.transact(
            "openForHold", loop.customer_address, loop.supplier_address, 1, bytes(32)
        )


# --------------------------------------------------------------------------------------------------
# Lots and counters


def test_a_customer_records_an_in_spec_lot(
    chain: ChainConnection, loop: Loop, dev_accounts: list[LocalAccount]
) -> None:
    lot_id, outcome = _lot(loop, "LOT-0001", IN_SPEC)
    assert (outcome.in_spec, outcome.consecutive, outcome.hold_id, outcome.case_id) == (
        True,
        0,
        None,
        None,
    )
    receipt = outcome.receipt
    assert receipt.gas_used <= LOT_GAS_LIMIT
    (event,) = loop.customer.events(receipt)
    assert event == LotRecordedEvent(
        lot_id=lot_id,
        customer=dev_accounts[0].address,
        supplier=dev_accounts[1].address,
        part_id=PART,
        characteristic_id=BORE,
        measured=IN_SPEC,
        in_spec=True,
        consecutive=0,
        block_number=receipt.block_number,
        tx_hash=receipt.tx_hash,
        log_index=0,
    )
    lot = loop.outsider.lot(lot_id)
    block = chain.w3.eth.get_block(receipt.block_number)
    assert (lot.customer, lot.supplier, lot.part_id, lot.characteristic_id) == (
        dev_accounts[0].address,
        dev_accounts[1].address,
        PART,
        BORE,
    )
    assert (lot.measured, lot.lsl, lot.usl, lot.decimals, lot.in_spec) == (
        IN_SPEC,
        11_980,
        12_020,
        3,
        True,
    )
    assert lot.recorded_at == int(block["timestamp"])
    # The limits are inclusive.
    for name, measured in (("at-lsl", 11_980), ("at-usl", 12_020)):
        assert _lot(loop, name, measured)[1].in_spec
    assert not _lot(loop, "just-above", 12_021)[1].in_spec


def test_the_fifth_consecutive_out_of_spec_lot_places_a_hold_and_opens_an_8d(
    loop: Loop, dev_accounts: list[LocalAccount]
) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    assert loop.customer.hold_threshold(customer, supplier, PART, BORE) == DEFAULT_HOLD_THRESHOLD
    outcomes = _out_of_spec_lots(loop, 4, "LOT-A")
    assert [o.consecutive for o in outcomes] == [1, 2, 3, 4]
    assert all(o.hold_id is None for o in outcomes)
    assert not loop.outsider.is_on_hold(customer, supplier)
    assert loop.outsider.consecutive_out_of_spec(customer, supplier, PART, BORE) == 4

    lot_id, fifth = _lot(loop, "LOT-A-4", ABOVE_USL)
    assert (fifth.consecutive, fifth.hold_id, fifth.case_id) == (5, 1, 1)
    receipt = fifth.receipt
    assert receipt.gas_used <= HOLD_LOT_GAS_LIMIT
    (held,) = of_type(loop.customer.events(receipt), SupplierHeldEvent)
    assert (held.hold_id, held.customer, held.supplier) == (1, customer, supplier)
    assert (held.part_id, held.characteristic_id, held.consecutive) == (PART, BORE, 5)
    assert (held.case_id, held.reason_hash) == (1, lot_id)
    (opened,) = of_type(loop.action_lab.events(receipt), CaseOpenedEvent)
    assert (opened.case_id, opened.hold_id, opened.problem_hash) == (1, 1, lot_id)
    assert (opened.customer, opened.supplier) == (customer, supplier)

    assert loop.outsider.is_on_hold(customer, supplier)
    assert loop.outsider.active_hold(customer, supplier) == 1
    hold = loop.outsider.hold(1)
    assert (hold.status, hold.active, hold.case_id, hold.consecutive) == (
        HoldStatus.ACTIVE,
        True,
        1,
        5,
    )
    assert (hold.customer, hold.supplier, hold.reason_hash) == (customer, supplier, lot_id)
    assert (hold.released_at, hold.justification_hash) == (0, "0x" + "00" * 32)
    case = loop.action_lab.case(1)
    assert (case.hold_id, case.customer, case.supplier, case.closed) == (
        1,
        dev_accounts[0].address,
        dev_accounts[1].address,
        False,
    )
    assert loop.outsider.hold_count() == 1


def test_an_in_spec_lot_resets_the_counter(loop: Loop) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    _out_of_spec_lots(loop, 4, "LOT-B")
    _, in_spec = _lot(loop, "LOT-B-ok", IN_SPEC)
    assert in_spec.consecutive == 0
    assert loop.customer.consecutive_out_of_spec(customer, supplier, PART, BORE) == 0
    outcomes = _out_of_spec_lots(loop, 4, "LOT-C")
    assert [o.consecutive for o in outcomes] == [1, 2, 3, 4]
    assert not loop.customer.is_on_hold(customer, supplier)
    assert _out_of_spec_lots(loop, 1, "LOT-D")[0].hold_id == 1


def test_counters_are_kept_per_characteristic(loop: Loop) -> None:
    for i in range(4):
        _lot(loop, f"bore-{i}", ABOVE_USL, BORE)
        _lot(loop, f"flat-{i}", ABOVE_USL, FLATNESS)
    customer, supplier = loop.customer_address, loop.supplier_address
    assert loop.customer.consecutive_out_of_spec(customer, supplier, PART, BORE) == 4
    assert loop.customer.consecutive_out_of_spec(customer, supplier, PART, FLATNESS) == 4
    assert not loop.customer.is_on_hold(customer, supplier)
    _, fifth = _lot(loop, "flat-4", ABOVE_USL, FLATNESS)
    assert fifth.hold_id == 1
    assert loop.customer.hold(1).characteristic_id == FLATNESS


def test_a_supplier_on_hold_is_not_held_twice_and_is_held_again_if_lots_stay_bad(
    loop: Loop,
) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    hold_id = _out_of_spec_lots(loop, 5, "LOT-E")[-1].hold_id
    assert hold_id is not None
    later = _out_of_spec_lots(loop, 2, "LOT-F", FLATNESS) + _out_of_spec_lots(loop, 1, "LOT-G")
    assert [o.hold_id for o in later] == [None, None, None]  # counting goes on, no second hold
    assert later[-1].consecutive == 6
    loop.customer_account.override_release(hold_id, _id("accepted under deviation"))
    # Still out of spec after the release: the count is above the threshold, back on hold.
    again = _out_of_spec_lots(loop, 1, "LOT-H")[0]
    assert (again.consecutive, again.hold_id) == (7, 2)
    assert loop.customer.active_hold(customer, supplier) == 2


def test_a_customer_sets_its_threshold_with_its_own_account(
    loop: Loop, dev_accounts: list[LocalAccount]
) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    receipt = loop.customer_account.set_hold_threshold(supplier, PART, BORE, 3)
    (event,) = loop.customer_account.events(receipt)
    assert isinstance(event, HoldThresholdSetEvent)
    assert (event.customer, event.supplier, event.part_id, event.characteristic_id) == (
        customer,
        supplier,
        PART,
        BORE,
    )
    assert event.threshold == 3
    assert loop.customer.hold_threshold(customer, supplier, PART, BORE) == 3
    assert loop.customer.hold_threshold(customer, supplier, PART, FLATNESS) == 5
    assert [o.hold_id for o in _out_of_spec_lots(loop, 3, "LOT-T")] == [None, None, 1]

    loop.customer_account.set_hold_threshold(supplier, PART, BORE, 0)
    assert loop.customer.hold_threshold(customer, supplier, PART, BORE) == DEFAULT_HOLD_THRESHOLD

    with pytest.raises(MemberAccountRequired) as oracle:
        loop.customer.set_hold_threshold(supplier, PART, BORE, 1)
    assert oracle.value.args_by_name == {"caller": loop.customer.binding.sender.address}
    with pytest.raises(WrongRole):
        loop.supplier.set_hold_threshold(supplier, PART, BORE, 1)
    with pytest.raises(WrongRole):  # the threshold is for a supplier
        loop.customer_account.set_hold_threshold(dev_accounts[2].address, PART, BORE, 1)
    with pytest.raises(ValueError, match="threshold 4294967296 does not fit a uint32"):
        loop.customer_account.set_hold_threshold(supplier, PART, BORE, 2**32)


def test_lots_are_unique_with_ordered_limits(loop: Loop) -> None:
    lot_id, _ = _lot(loop, "LOT-U", IN_SPEC)
    with pytest.raises(LotAlreadyRecorded) as twice:
        _lot(loop, "LOT-U", ABOVE_USL, quality=loop.customer_account)
    assert twice.value.args_by_name == {"lotId": bytes.fromhex(lot_id[2:])}
    with pytest.raises(InvalidLimits) as limits:
        loop.customer.record_lot(
            loop.supplier_address, PART, BORE, _id("LOT-V"), measured=1, lsl=2, usl=1, decimals=0
        )
    assert limits.value.args_by_name == {
        "lotId": bytes.fromhex(_id("LOT-V")[2:]),
        "lsl": 2,
        "usl": 1,
    }
    with pytest.raises(UnknownLot):
        loop.customer.lot(_id("LOT-V"))


def test_only_manufacturers_record_lots_and_only_of_supplier_members(
    loop: Loop, dev_accounts: list[LocalAccount]
) -> None:
    with pytest.raises(WrongRole) as by_supplier:
        _lot(loop, "LOT-W", IN_SPEC, quality=loop.supplier)
    assert by_supplier.value.args_by_name == {
        "member": dev_accounts[1].address,
        "required": int(Role.MANUFACTURER),
        "actual": int(Role.SUPPLIER),
    }
    with pytest.raises(NotMemberOrOracle):
        _lot(loop, "LOT-W", IN_SPEC, quality=loop.outsider)
    for not_supplier, error in ((dev_accounts[2], WrongRole), (dev_accounts[5], InactiveMember)):
        with pytest.raises(error):
            loop.customer.record_lot(
                not_supplier.address, PART, BORE, _id("LOT-W"), measured=IN_SPEC, **LIMITS
            )
    assert loop.customer_account.record_lot(
        loop.supplier_address, PART, BORE, _id("LOT-W"), measured=IN_SPEC, **LIMITS
    ).in_spec


# --------------------------------------------------------------------------------------------------
# Holds and releases


def test_an_explicit_hold_opens_its_8d_and_is_not_doubled(loop: Loop) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    reason = _id("supplier audit: change not notified")
    placed = loop.customer.place_hold(supplier, reason)
    assert (placed.hold_id, placed.case_id) == (1, 1)
    (held,) = of_type(loop.customer.events(placed.receipt), SupplierHeldEvent)
    assert (held.part_id, held.characteristic_id, held.consecutive) == ("0x" + "00" * 32,) * 2 + (
        0,
    )
    assert held.reason_hash == reason
    assert loop.action_lab.case(1).problem_hash == reason
    with pytest.raises(AlreadyOnHold) as twice:
        loop.customer_account.place_hold(supplier, reason)
    assert twice.value.args_by_name == {"customer": customer, "supplier": supplier, "holdId": 1}
    # Lots reaching the threshold while on hold place no second hold either.
    assert all(o.hold_id is None for o in _out_of_spec_lots(loop, 5, "LOT-X"))
    with pytest.raises(WrongRole):
        loop.supplier.place_hold(supplier, reason)
    with pytest.raises(NotMemberOrOracle):
        loop.outsider.place_hold(supplier, reason)


def test_a_hold_is_released_by_anyone_once_its_8d_is_closed(
    chain: ChainConnection, loop: Loop
) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    start = chain.head_block() + 1
    fifth = _out_of_spec_lots(loop, 5, "LOT-R")[-1]
    hold_id, case_id = fifth.hold_id, fifth.case_id
    assert hold_id is not None and case_id is not None
    with pytest.raises(CaseNotClosed) as early:
        loop.outsider.release(hold_id)
    assert early.value.args_by_name == {"holdId": hold_id, "caseId": case_id}

    _close_case(loop, case_id)
    assert loop.action_lab.is_closed(case_id)
    receipt = loop.outsider.release(hold_id)  # not even a member: the closure is the authority
    (released,) = loop.outsider.events(receipt)
    assert released == HoldReleasedEvent(
        hold_id=hold_id,
        customer=customer,
        supplier=supplier,
        by_closure=True,
        justification_hash="0x" + "00" * 32,
        block_number=receipt.block_number,
        tx_hash=receipt.tx_hash,
        log_index=0,
    )
    hold = loop.customer.hold(hold_id)
    block = chain.w3.eth.get_block(receipt.block_number)
    assert (hold.status, hold.active, hold.released_at) == (
        HoldStatus.RELEASED,
        False,
        int(block["timestamp"]),
    )
    assert not loop.customer.is_on_hold(customer, supplier)
    assert loop.customer.active_hold(customer, supplier) is None
    with pytest.raises(HoldNotActive) as again:
        loop.customer.release(hold_id)
    assert again.value.args_by_name == {"holdId": hold_id, "status": int(HoldStatus.RELEASED)}

    names = [type(e).__name__ for e in loop.customer.events_between(start)]
    assert names == ["LotRecordedEvent"] * 5 + ["SupplierHeldEvent", "HoldReleasedEvent"]
    (only,) = loop.customer.events_between(start, names=("HoldReleased",))
    assert only == released


def test_only_the_customers_own_account_overrides_a_hold(
    loop: Loop,
    dev_accounts: list[LocalAccount],
    admit: AdmitFactory,
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    customer, supplier = loop.customer_address, loop.supplier_address
    placed = loop.customer.place_hold(supplier, _id("reason"))
    justification = _id("signed deviation DV-0042, sorted 100 %")

    with pytest.raises(MemberAccountRequired) as by_oracle:
        loop.customer.override_release(placed.hold_id, justification)
    assert by_oracle.value.args_by_name == {"caller": loop.customer.binding.sender.address}
    admit(dev_accounts[3], Role.MANUFACTURER, "Delta Motors")
    other = SupplierQuality.at(make_sender(dev_accounts[3]), loop.customer.address)
    for stranger in (other, loop.supplier):
        with pytest.raises(NotHoldCustomer) as raised:
            stranger.override_release(placed.hold_id, justification)
        assert raised.value.args_by_name == {
            "holdId": placed.hold_id,
            "caller": stranger.binding.sender.address,
        }
    with pytest.raises(NotMemberOrOracle):
        loop.outsider.override_release(placed.hold_id, justification)
    with pytest.raises(MissingJustification):
        loop.customer_account.override_release(placed.hold_id, bytes(32))
    assert loop.customer.is_on_hold(customer, supplier)

    receipt = loop.customer_account.override_release(placed.hold_id, justification)
    (released,) = loop.customer.events(receipt)
    assert isinstance(released, HoldReleasedEvent)
    assert (released.by_closure, released.justification_hash) == (False, justification)
    hold = loop.customer.hold(placed.hold_id)
    assert (hold.status, hold.justification_hash) == (HoldStatus.OVERRIDDEN, justification)
    assert not loop.customer.is_on_hold(customer, supplier)
    assert not loop.action_lab.is_closed(placed.case_id)  # the 8D goes on
    with pytest.raises(HoldNotActive):
        loop.customer.release(placed.hold_id)
    with pytest.raises(HoldNotActive):
        loop.customer_account.override_release(placed.hold_id, justification)


def test_unknown_holds_are_errors(loop: Loop) -> None:
    for hold_id in (0, 1):
        with pytest.raises(UnknownHold) as raised:
            loop.customer.hold(hold_id)
        assert raised.value.args_by_name == {"holdId": hold_id}
        with pytest.raises(UnknownHold):
            loop.customer.release(hold_id)


# --------------------------------------------------------------------------------------------------
# Hardhat


def test_the_closed_loop_contracts_on_hardhat(
    hardhat_chain: HardhatChain, dev_accounts: list[LocalAccount]
) -> None:
    """Smoke test over JSON-RPC: deploy the three, hold a supplier on its fifth bad lot, request a
    compensation and stop a line; reverts come back decoded."""
    connection = rpc_chain(hardhat_chain.url)

    def sender(account: LocalAccount) -> TransactionSender:
        return TransactionSender(connection, account, SenderOptions(receipt_timeout=30.0))

    aster, borealis = sender(dev_accounts[0]), sender(dev_accounts[1])
    founders = [
        Founder(dev_accounts[0].address, Role.MANUFACTURER, "Aster Motors", ""),
        Founder(dev_accounts[1].address, Role.SUPPLIER, "Borealis Cells", ""),
    ]
    consortium, _ = Consortium.deploy(aster, founders, 1, PROPOSAL_TTL)
    deployment = deploy_supplier_quality(aster, consortium.address)
    quality = deployment.supplier_quality
    part, lot_name = _id(f"part-{Account.create().address}"), f"hh-{consortium.address}"
    outcomes = [
        quality.record_lot(
            dev_accounts[1].address,
            part,
            BORE,
            _id(f"{lot_name}-{i}"),
            measured=ABOVE_USL,
            **LIMITS,
        )
        for i in range(5)
    ]
    assert [o.hold_id for o in outcomes] == [None] * 4 + [1]
    assert deployment.corrective_action.case(1).hold_id == 1
    with pytest.raises(CaseNotClosed):
        quality.release(1)
    with pytest.raises(WrongRole):
        SupplierQuality.at(borealis, quality.address).place_hold(dev_accounts[1].address, part)

    control, _ = LineControl.deploy(aster, consortium.address)
    control.register_line(part)
    control.configure_parameter(
        part, BORE, baseline=0, min_delta=-5, max_delta=5, max_abs_offset=15, decimals=2
    )
    assert control.request_compensation(part, BORE, 5, part).request_id == 1
    control.record_acknowledgement(1, applied=True, read_back=5, detail_hash=part)
    control.stop_line(part, part)
    with pytest.raises(LineIsStopped):
        control.request_compensation(part, BORE, 1, part)
    assert control.offset(part, BORE) == 5
