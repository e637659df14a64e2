"""Consortium.sol through the node's binding, on the in-process chain and on Hardhat."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium, ProposalKind, Role
from node.chain.contract_errors import (
    AlreadyApproved,
    AlreadyMember,
    NotActiveMember,
    NotOracleOwner,
    OracleAlreadyRegistered,
    OracleNotActive,
    ProposalAlreadyExecuted,
    ProposalExpired,
    QuorumWouldBreak,
)
from tests.conftest import PROPOSAL_TTL

NEWCOMER = ("Delta Assurance", "http://127.0.0.1:8604")


def test_deployment_admits_the_founders(consortium_2_of_3: list[Consortium]) -> None:
    consortium = consortium_2_of_3[0]
    members = consortium.members()
    assert [m.name for m in members] == ["Aster Motors", "Borealis Cells", "Cobalt Test Lab"]
    assert [m.role for m in members] == [Role.MANUFACTURER, Role.SUPPLIER, Role.LAB]
    assert all(m.active for m in members)
    assert consortium.threshold() == 2
    assert consortium.proposal_ttl() == PROPOSAL_TTL


def test_admission_waits_for_the_threshold_then_executes(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis = consortium_2_of_3[0], consortium_2_of_3[1]
    newcomer = dev_accounts[3].address
    proposed = aster.propose_admission(newcomer, Role.AUDITOR, *NEWCOMER)
    assert (proposed.approvals, proposed.executed) == (1, False)  # threshold not met
    assert not aster.is_active_member(newcomer)
    approved = borealis.approve(proposed.proposal_id)
    assert (approved.approvals, approved.executed) == (2, True)
    admitted = aster.member(newcomer)
    assert (admitted.active, admitted.role, admitted.name) == (True, Role.AUDITOR, NEWCOMER[0])
    proposal = aster.proposal(proposed.proposal_id)
    assert proposal.kind is ProposalKind.ADMIT and proposal.executed


def test_a_member_votes_once(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster = consortium_2_of_3[0]
    proposed = aster.propose_admission(dev_accounts[3].address, Role.AUDITOR, *NEWCOMER)
    with pytest.raises(AlreadyApproved) as raised:
        aster.approve(proposed.proposal_id)
    assert raised.value.args_by_name["proposalId"] == proposed.proposal_id
    assert not aster.is_active_member(dev_accounts[3].address)


def test_an_executed_proposal_cannot_be_approved_again(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis, cobalt = consortium_2_of_3[:3]
    proposed = aster.propose_admission(dev_accounts[3].address, Role.AUDITOR, *NEWCOMER)
    borealis.approve(proposed.proposal_id)
    with pytest.raises(ProposalAlreadyExecuted):
        cobalt.approve(proposed.proposal_id)


def test_an_expired_proposal_cannot_be_approved(
    chain: ChainConnection, consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis = consortium_2_of_3[0], consortium_2_of_3[1]
    proposed = aster.propose_admission(dev_accounts[3].address, Role.AUDITOR, *NEWCOMER)
    chain.advance_time(PROPOSAL_TTL + 10)
    with pytest.raises(ProposalExpired) as raised:
        borealis.approve(proposed.proposal_id)
    assert raised.value.args_by_name["proposalId"] == proposed.proposal_id
    assert not aster.is_active_member(dev_accounts[3].address)


def test_non_members_can_neither_propose_nor_approve(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, outsider = consortium_2_of_3[0], consortium_2_of_3[4]
    with pytest.raises(NotActiveMember) as raised:
        outsider.propose_admission(
            dev_accounts[4].address, Role.SUPPLIER, "Echo Parts", "http://x.test"
        )
    assert raised.value.args_by_name["account"] == dev_accounts[4].address
    proposed = aster.propose_admission(dev_accounts[3].address, Role.AUDITOR, *NEWCOMER)
    with pytest.raises(NotActiveMember):
        outsider.approve(proposed.proposal_id)


def test_a_removed_member_loses_its_vote(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis, cobalt, delta = consortium_2_of_3[:4]
    admit = aster.propose_admission(dev_accounts[3].address, Role.AUDITOR, *NEWCOMER)
    borealis.approve(admit.proposal_id)
    # Delta votes to admit Echo, then Delta is removed: its vote no longer counts.
    echo = delta.propose_admission(
        dev_accounts[4].address, Role.SUPPLIER, "Echo Parts", "http://127.0.0.1:8605"
    )
    removal = aster.propose_removal(dev_accounts[3].address)
    cobalt.approve(removal.proposal_id)
    assert not aster.is_active_member(dev_accounts[3].address)
    with pytest.raises(NotActiveMember):
        delta.approve(removal.proposal_id)
    with pytest.raises(NotActiveMember):
        delta.propose_removal(dev_accounts[0].address)
    counted = aster.approve(echo.proposal_id)
    assert (counted.approvals, counted.executed) == (1, False)
    borealis.approve(echo.proposal_id)
    assert aster.is_active_member(dev_accounts[4].address)


def test_removal_may_not_break_the_quorum(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis = consortium_2_of_3[:2]
    first = aster.propose_removal(dev_accounts[2].address)
    borealis.approve(first.proposal_id)
    assert len(aster.members()) == 2
    with pytest.raises(QuorumWouldBreak) as raised:
        aster.propose_removal(dev_accounts[1].address)
    assert raised.value.args_by_name == {"remaining": 1, "threshold": 2}
    with pytest.raises(AlreadyMember):
        aster.propose_admission(dev_accounts[1].address, Role.SUPPLIER, "Again", "http://x.test")
    assert aster.is_active_member(dev_accounts[1].address)


def test_oracle_keys_are_registered_rotated_and_revoked_by_their_member(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis = consortium_2_of_3[0], consortium_2_of_3[1]
    first, second = Account.create().address, Account.create().address
    aster.register_oracle(first)
    status = aster.oracle_of(first)
    assert (status.active, status.member) == (True, dev_accounts[0].address)
    with pytest.raises(NotOracleOwner):
        borealis.revoke_oracle(first)
    with pytest.raises(OracleAlreadyRegistered):
        borealis.register_oracle(first)

    aster.rotate_oracle(first, second)
    assert not aster.oracle_of(first).active
    assert aster.oracle_of(second).active
    assert aster.oracles_of(dev_accounts[0].address) == [second]
    with pytest.raises(OracleAlreadyRegistered):
        aster.register_oracle(first)  # a retired key never comes back

    aster.revoke_oracle(second)
    assert not aster.oracle_of(second).active
    assert aster.oracles_of(dev_accounts[0].address) == []
    with pytest.raises(OracleNotActive):
        aster.revoke_oracle(second)
    assert aster.oracle_of(Account.create().address).member is None


def test_a_removed_members_oracles_stop_being_active(
    consortium_2_of_3: list[Consortium], dev_accounts: list[LocalAccount]
) -> None:
    aster, borealis, cobalt = consortium_2_of_3[:3]
    oracle = Account.create().address
    cobalt.register_oracle(oracle)
    removal = aster.propose_removal(dev_accounts[2].address)
    borealis.approve(removal.proposal_id)
    status = aster.oracle_of(oracle)
    assert (status.active, status.member) == (False, dev_accounts[2].address)
    with pytest.raises(NotActiveMember):
        cobalt.register_oracle(Account.create().address)
