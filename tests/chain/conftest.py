"""Fixtures of the closed-loop contract tests (LineControl, SupplierQuality, CorrectiveAction)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.consortium import Consortium, Role
from node.chain.sender import TransactionSender

OracleSenderFactory = Callable[[Consortium], TransactionSender]
AdmitFactory = Callable[[LocalAccount, Role, str], Consortium]


@pytest.fixture
def new_oracle_sender(
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> OracleSenderFactory:
    """Register a fresh oracle key for the member behind ``consortium``, fund it from the member,
    and return a sender signing as that key."""

    def make(consortium: Consortium) -> TransactionSender:
        oracle: LocalAccount = Account.create()
        consortium.register_oracle(oracle.address)
        consortium.binding.sender.transfer(oracle.address, 10**18)
        return make_sender(oracle)

    return make


@pytest.fixture
def admit(
    consortium_2_of_3: list[Consortium],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> AdmitFactory:
    """Admit ``account`` with ``role`` (proposed by Aster, approved by Borealis: 2 of 3) and return
    the consortium as the new member sees it."""

    def make(account: LocalAccount, role: Role, name: str) -> Consortium:
        aster, borealis = consortium_2_of_3[:2]
        proposal = aster.propose_admission(account.address, role, name, "")
        assert borealis.approve(proposal.proposal_id).executed
        return Consortium.at(make_sender(account), aster.address)

    return make
