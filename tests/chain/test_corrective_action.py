"""CorrectiveAction.sol (the 8D workflow) through the node's binding, on the in-process chain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.artifacts import check_fresh, default_node_modules, load_artifact
from node.chain.connection import ChainConnection, embedded_chain
from node.chain.consortium import Consortium, Role
from node.chain.contract_errors import (
    CaseAlreadyClosed,
    DisciplineAwaitingReview,
    DisciplineNotSubmitted,
    DisciplineOutOfOrder,
    EffectivenessAlreadyVerified,
    EffectivenessCheckTooEarly,
    EffectivenessNotVerified,
    InactiveMember,
    InvalidConsortium,
    InvalidSupplierQuality,
    NotCustomer,
    NotCustomerOrLab,
    NotDeployer,
    NotMemberOrOracle,
    NotResponsibleParty,
    NotSupplierQuality,
    SupplierQualityAlreadySet,
    UnknownCase,
    WrongRole,
)
from node.chain.contract_events import of_type
from node.chain.corrective_action import (
    ARTIFACT_NAME,
    CaseClosedEvent,
    CaseOpenedEvent,
    CaseStatus,
    CorrectiveAction,
    Discipline,
    DisciplineApprovedEvent,
    DisciplineRejectedEvent,
    DisciplineSubmittedEvent,
    EffectivenessVerifiedEvent,
    SupplierQualitySetEvent,
)
from node.chain.sender import TransactionSender
from node.chain.supplier_quality import SupplierQuality
from node.settings import LOCAL_CHAIN_ID

DEPLOY_GAS_LIMIT = 1_400_000

OracleSenderFactory = Callable[[Consortium], TransactionSender]  # fixture new_oracle_sender
AdmitFactory = Callable[[LocalAccount, Role, str], Consortium]  # fixture admit


def _hash(text: str) -> str:
    return "0x" + keccak(text=text).hex()


PROBLEM = _hash("bore diameter above USL, 5 consecutive lots")


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
        "contracts/CorrectiveAction.sol",
        "contracts/ConsortiumGated.sol",
        "contracts/interfaces/ICorrectiveAction.sol",
        "contracts/interfaces/ISupplierQuality.sol",
    } <= set(artifact.sources)


def test_events_are_past_tense_with_at_most_three_indexed_keys() -> None:
    abi = load_artifact(ARTIFACT_NAME).abi
    events = {e["name"]: e for e in abi if e["type"] == "event"}
    assert set(events) == {
        "SupplierQualitySet",
        "CaseOpened",
        "DisciplineSubmitted",
        "DisciplineApproved",
        "DisciplineRejected",
        "EffectivenessVerified",
        "CaseClosed",
    }
    for event in events.values():
        assert sum(1 for i in event["inputs"] if i["indexed"]) <= 3


def test_disciplines_are_d0_to_d8() -> None:
    assert [d.name for d in Discipline] == [f"D{i}" for i in range(9)]
    assert Discipline.D4.title == "Root cause"


# --------------------------------------------------------------------------------------------------
# Fixtures

Parties = dict[str, CorrectiveAction]


@pytest.fixture
def action(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> CorrectiveAction:
    """A fresh CorrectiveAction deployed by, and sending as, Aster (dev account 0, manufacturer)."""
    deployed, receipt = CorrectiveAction.deploy(
        make_sender(dev_accounts[0]), consortium_2_of_3[0].address
    )
    assert receipt.gas_used <= DEPLOY_GAS_LIMIT
    return deployed


@pytest.fixture
def parties(
    action: CorrectiveAction,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
    new_oracle_sender: OracleSenderFactory,
) -> Parties:
    """The workflow as each party sees it: the customer (Aster) and the supplier (Borealis) through
    oracle keys, the lab (Cobalt) through its account, and an outsider (dev account 5)."""
    aster, borealis = consortium_2_of_3[:2]
    return {
        "customer": CorrectiveAction.at(new_oracle_sender(aster), action.address),
        "customer_account": action,
        "supplier": CorrectiveAction.at(new_oracle_sender(borealis), action.address),
        "supplier_account": CorrectiveAction.at(make_sender(dev_accounts[1]), action.address),
        "lab": CorrectiveAction.at(make_sender(dev_accounts[2]), action.address),
        "outsider": CorrectiveAction.at(make_sender(dev_accounts[5]), action.address),
    }


@pytest.fixture
def case_id(parties: Parties, dev_accounts: list[LocalAccount]) -> int:
    """A case Aster's oracle opened for Borealis."""
    return parties["customer"].open(dev_accounts[1].address, PROBLEM).case_id


def _report(case: int, discipline: int, version: int = 1) -> str:
    return _hash(f"8D report case {case} D{discipline} v{version}")


def _approved_through(parties: Parties, case: int, last: int) -> None:
    """Submit and approve D0..D<last>."""
    for discipline in range(last + 1):
        parties["supplier"].submit(case, discipline, _report(case, discipline))
        parties["customer"].approve(case, discipline)


# --------------------------------------------------------------------------------------------------
# Deployment and wiring


def test_deployment_needs_a_consortium_contract(
    dev_accounts: list[LocalAccount], make_sender: Callable[[LocalAccount], TransactionSender]
) -> None:
    with pytest.raises(InvalidConsortium):
        CorrectiveAction.deploy(make_sender(dev_accounts[0]), dev_accounts[7].address)


def test_the_deployer_wires_supplier_quality_once_and_only_one_bound_to_it(
    action: CorrectiveAction,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    sender = action.binding.sender
    consortium = consortium_2_of_3[0].address
    assert action.consortium() == consortium
    assert action.supplier_quality() is None
    quality, _ = SupplierQuality.deploy(sender, consortium, action.address)
    other_action, _ = CorrectiveAction.deploy(sender, consortium)
    stranger, _ = SupplierQuality.deploy(sender, consortium, other_action.address)

    with pytest.raises(NotDeployer) as not_deployer:
        CorrectiveAction.at(make_sender(dev_accounts[1]), action.address).set_supplier_quality(
            quality.address
        )
    assert not_deployer.value.args_by_name == {"caller": dev_accounts[1].address}
    for wrong in (stranger.address, dev_accounts[7].address):  # bound elsewhere; no code
        with pytest.raises(InvalidSupplierQuality) as invalid:
            action.set_supplier_quality(wrong)
        assert invalid.value.args_by_name == {"supplierQuality": wrong}

    receipt = action.set_supplier_quality(quality.address)
    (event,) = action.events(receipt)
    assert isinstance(event, SupplierQualitySetEvent) and event.supplier_quality == quality.address
    assert action.supplier_quality() == quality.address
    with pytest.raises(SupplierQualityAlreadySet):
        action.set_supplier_quality(quality.address)


def test_only_the_wired_supplier_quality_opens_cases_for_holds(
    action: CorrectiveAction, dev_accounts: list[LocalAccount]
) -> None:
    customer, supplier = dev_accounts[0].address, dev_accounts[1].address
    with pytest.raises(NotSupplierQuality) as raised:  # not wired yet: nobody may
        action.binding.transact("openForHold", customer, supplier, 1, bytes.fromhex(PROBLEM[2:]))
    assert raised.value.args_by_name == {"caller": dev_accounts[0].address}
    assert action.case_count() == 0


# --------------------------------------------------------------------------------------------------
# Opening


def test_a_manufacturer_or_its_oracle_opens_a_case_for_a_supplier(
    chain: ChainConnection, parties: Parties, dev_accounts: list[LocalAccount]
) -> None:
    opened = parties["customer"].open(dev_accounts[1].address, PROBLEM)
    assert opened.case_id == 1
    (event,) = parties["customer"].events(opened.receipt)
    assert event == CaseOpenedEvent(
        case_id=1,
        customer=dev_accounts[0].address,
        supplier=dev_accounts[1].address,
        hold_id=0,
        problem_hash=PROBLEM,
        block_number=opened.receipt.block_number,
        tx_hash=opened.receipt.tx_hash,
        log_index=0,
    )
    case = parties["lab"].case(1)
    block = chain.w3.eth.get_block(opened.receipt.block_number)
    assert (case.customer, case.supplier, case.hold_id) == (
        dev_accounts[0].address,
        dev_accounts[1].address,
        None,
    )
    assert (case.status, case.discipline, case.awaiting_review) == (
        CaseStatus.OPEN,
        Discipline.D0,
        False,
    )
    assert (case.effectiveness_verified, case.verified_by, case.closed_at) == (False, None, 0)
    assert (case.problem_hash, case.opened_at) == (PROBLEM, int(block["timestamp"]))
    assert not case.closed and not parties["lab"].is_closed(1)
    assert parties["customer_account"].open(dev_accounts[1].address, PROBLEM).case_id == 2
    assert parties["outsider"].case_count() == 2


def test_opening_checks_both_parties_roles(
    parties: Parties, dev_accounts: list[LocalAccount]
) -> None:
    supplier = dev_accounts[1].address
    with pytest.raises(WrongRole) as by_supplier:
        parties["supplier"].open(supplier, PROBLEM)
    assert by_supplier.value.args_by_name == {
        "member": supplier,
        "required": int(Role.MANUFACTURER),
        "actual": int(Role.SUPPLIER),
    }
    with pytest.raises(WrongRole):
        parties["lab"].open(supplier, PROBLEM)
    with pytest.raises(NotMemberOrOracle):
        parties["outsider"].open(supplier, PROBLEM)
    with pytest.raises(WrongRole) as for_lab:
        parties["customer"].open(dev_accounts[2].address, PROBLEM)
    assert for_lab.value.args_by_name["actual"] == int(Role.LAB)
    with pytest.raises(InactiveMember) as for_outsider:
        parties["customer"].open(dev_accounts[5].address, PROBLEM)
    assert for_outsider.value.args_by_name == {"account": dev_accounts[5].address}
    assert parties["customer"].case_count() == 0


# --------------------------------------------------------------------------------------------------
# The disciplines


def test_the_full_8d_closes_the_case(
    chain: ChainConnection, parties: Parties, case_id: int, dev_accounts: list[LocalAccount]
) -> None:
    supplier, customer, lab = parties["supplier"], parties["customer"], parties["lab"]
    start = chain.head_block() + 1
    for discipline in Discipline:
        submitted = supplier.submit(case_id, discipline, _report(case_id, discipline))
        (event,) = supplier.events(submitted)
        assert isinstance(event, DisciplineSubmittedEvent)
        assert (event.case_id, event.discipline, event.by) == (
            case_id,
            discipline,
            supplier.binding.sender.address,
        )
        at = lab.case(case_id)
        assert (at.discipline, at.awaiting_review) == (discipline, True)
        if discipline is Discipline.D8:
            evidence = _hash("lab: 30 lots in spec, Cpk 1.67")
            verified = lab.verify_effectiveness(case_id, evidence)
            (check,) = lab.events(verified)
            assert isinstance(check, EffectivenessVerifiedEvent)
            assert (check.member, check.by, check.evidence_hash) == (
                dev_accounts[2].address,
                dev_accounts[2].address,
                evidence,
            )
        approved = customer.approve(case_id, discipline)
        events = customer.events(approved)
        assert of_type(events, DisciplineApprovedEvent)[0].discipline == discipline
        if discipline is not Discipline.D8:
            assert lab.case(case_id).discipline == discipline + 1
            assert of_type(events, CaseClosedEvent) == []

    (closed_event,) = of_type(customer.events(approved), CaseClosedEvent)
    assert (closed_event.case_id, closed_event.hold_id) == (case_id, 0)
    assert (closed_event.customer, closed_event.supplier) == (
        dev_accounts[0].address,
        dev_accounts[1].address,
    )
    case = lab.case(case_id)
    block = chain.w3.eth.get_block(approved.block_number)
    assert case.closed and lab.is_closed(case_id)
    assert (case.discipline, case.awaiting_review, case.closed_at) == (
        Discipline.D8,
        False,
        int(block["timestamp"]),
    )
    assert (case.effectiveness_verified, case.verified_by) == (True, dev_accounts[2].address)
    assert [lab.report(case_id, d) for d in Discipline] == [_report(case_id, d) for d in Discipline]
    names = [type(e).__name__ for e in lab.events_between(start)]
    assert names.count("DisciplineSubmittedEvent") == names.count("DisciplineApprovedEvent") == 9
    assert names[-1] == "CaseClosedEvent"


def test_disciplines_are_submitted_and_reviewed_in_order(parties: Parties, case_id: int) -> None:
    supplier, customer = parties["supplier"], parties["customer"]
    with pytest.raises(DisciplineOutOfOrder) as skipped:
        supplier.submit(case_id, 1, _report(case_id, 1))
    assert skipped.value.args_by_name == {"caseId": case_id, "expected": 0, "got": 1}
    with pytest.raises(DisciplineNotSubmitted):
        customer.approve(case_id, 0)

    supplier.submit(case_id, 0, _report(case_id, 0))
    with pytest.raises(DisciplineOutOfOrder):  # D1 before D0 is approved
        supplier.submit(case_id, 1, _report(case_id, 1))
    with pytest.raises(DisciplineAwaitingReview) as twice:
        supplier.submit(case_id, 0, _report(case_id, 0, 2))
    assert twice.value.args_by_name == {"caseId": case_id, "discipline": 0}
    with pytest.raises(DisciplineOutOfOrder):
        customer.approve(case_id, 1)
    customer.approve(case_id, 0)

    with pytest.raises(DisciplineOutOfOrder) as back:  # no going back to an approved discipline
        supplier.submit(case_id, 0, _report(case_id, 0, 2))
    assert back.value.args_by_name == {"caseId": case_id, "expected": 1, "got": 0}
    with pytest.raises(DisciplineOutOfOrder) as beyond:
        supplier.submit(case_id, 9, _report(case_id, 9))
    assert beyond.value.args_by_name["got"] == 9
    assert customer.report(case_id, 1) is None


def test_a_rejected_discipline_is_submitted_again(parties: Parties, case_id: int) -> None:
    supplier, customer = parties["supplier"], parties["customer"]
    _approved_through(parties, case_id, 1)
    supplier.submit(case_id, 2, _report(case_id, 2))
    reason = _hash("D2: the is/is-not analysis is missing")
    rejected = customer.reject(case_id, 2, reason)
    (event,) = customer.events(rejected)
    assert isinstance(event, DisciplineRejectedEvent)
    assert (event.case_id, event.discipline, event.reason_hash) == (case_id, 2, reason)
    case = customer.case(case_id)
    assert (case.discipline, case.awaiting_review) == (Discipline.D2, False)
    with pytest.raises(DisciplineNotSubmitted):
        customer.approve(case_id, 2)
    with pytest.raises(DisciplineNotSubmitted):
        customer.reject(case_id, 2, reason)

    parties["supplier_account"].submit(case_id, 2, _report(case_id, 2, 2))
    customer.approve(case_id, 2)
    assert customer.report(case_id, 2) == _report(case_id, 2, 2)
    assert customer.case(case_id).discipline == Discipline.D3


def test_only_the_supplier_submits_and_only_the_customer_reviews(
    parties: Parties,
    case_id: int,
    dev_accounts: list[LocalAccount],
    admit: AdmitFactory,
    new_oracle_sender: OracleSenderFactory,
    action: CorrectiveAction,
) -> None:
    for party in ("customer", "customer_account", "lab"):
        with pytest.raises(NotResponsibleParty) as raised:
            parties[party].submit(case_id, 0, _report(case_id, 0))
        assert raised.value.args_by_name == {
            "caseId": case_id,
            "caller": parties[party].binding.sender.address,
        }
    with pytest.raises(NotMemberOrOracle):
        parties["outsider"].submit(case_id, 0, _report(case_id, 0))

    parties["supplier"].submit(case_id, 0, _report(case_id, 0))
    delta = admit(dev_accounts[3], Role.MANUFACTURER, "Delta Motors")
    other_customer = CorrectiveAction.at(new_oracle_sender(delta), action.address)
    reviewers = [parties["supplier"], parties["supplier_account"], parties["lab"], other_customer]
    for reviewer in reviewers:
        with pytest.raises(NotCustomer) as wrong:
            reviewer.approve(case_id, 0)
        assert wrong.value.args_by_name["caller"] == reviewer.binding.sender.address
        with pytest.raises(NotCustomer):
            reviewer.reject(case_id, 0, _hash("no"))
    with pytest.raises(NotMemberOrOracle):
        parties["outsider"].approve(case_id, 0)
    parties["customer_account"].approve(case_id, 0)  # the member's own account reviews too


# --------------------------------------------------------------------------------------------------
# Effectiveness and closure


def test_d8_needs_a_verified_effectiveness_check_after_d7(
    parties: Parties, case_id: int, dev_accounts: list[LocalAccount]
) -> None:
    supplier, customer = parties["supplier"], parties["customer"]
    _approved_through(parties, case_id, 6)
    supplier.submit(case_id, 7, _report(case_id, 7))
    with pytest.raises(EffectivenessCheckTooEarly) as early:  # D7 submitted, not yet approved
        parties["lab"].verify_effectiveness(case_id, _hash("too early"))
    assert early.value.args_by_name == {"caseId": case_id, "discipline": 7}
    customer.approve(case_id, 7)

    supplier.submit(case_id, 8, _report(case_id, 8))
    with pytest.raises(EffectivenessNotVerified) as unverified:
        customer.approve(case_id, 8)
    assert unverified.value.args_by_name == {"caseId": case_id}
    for party in ("supplier", "supplier_account", "outsider"):
        error = NotMemberOrOracle if party == "outsider" else NotCustomerOrLab
        with pytest.raises(error):
            parties[party].verify_effectiveness(case_id, _hash("self-certified"))

    customer.reject(case_id, 8, _hash("D8: lessons learned missing"))  # rejection keeps going
    parties["customer_account"].verify_effectiveness(case_id, _hash("customer audit"))
    with pytest.raises(EffectivenessAlreadyVerified):
        parties["lab"].verify_effectiveness(case_id, _hash("lab"))
    supplier.submit(case_id, 8, _report(case_id, 8, 2))
    customer.approve(case_id, 8)
    case = customer.case(case_id)
    assert case.closed and case.verified_by == dev_accounts[0].address
    assert case.evidence_hash == _hash("customer audit")


def test_a_closed_case_takes_nothing_more(parties: Parties, case_id: int) -> None:
    _approved_through(parties, case_id, 7)
    parties["lab"].verify_effectiveness(case_id, _hash("ok"))
    parties["supplier"].submit(case_id, 8, _report(case_id, 8))
    parties["customer"].approve(case_id, 8)
    attempts: list[Callable[[], object]] = [
        lambda: parties["supplier"].submit(case_id, 8, _report(case_id, 8, 2)),
        lambda: parties["customer"].approve(case_id, 8),
        lambda: parties["customer"].reject(case_id, 8, _hash("late")),
        lambda: parties["lab"].verify_effectiveness(case_id, _hash("late")),
    ]
    for attempt in attempts:
        with pytest.raises(CaseAlreadyClosed) as raised:
            attempt()
        assert raised.value.args_by_name == {"caseId": case_id}


def test_unknown_cases_are_errors(parties: Parties) -> None:
    for case in (0, 1, 2**256 - 1):
        with pytest.raises(UnknownCase) as raised:
            parties["lab"].case(case)
        assert raised.value.args_by_name == {"caseId": case}
    with pytest.raises(UnknownCase):
        parties["supplier"].submit(1, 0, _report(1, 0))
    with pytest.raises(UnknownCase):
        parties["lab"].report(1, 0)
    with pytest.raises(ValueError, match="discipline 256 does not fit a uint8"):
        parties["supplier"].submit(1, 256, _report(1, 0))
