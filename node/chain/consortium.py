"""Typed binding of Consortium.sol: members, M-of-N governance and the oracle key registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from web3 import Web3

from node.chain.artifacts import load_artifact
from node.chain.bindings import ContractBinding
from node.chain.sender import Receipt, TransactionSender
from node.errors import ConfigError

ARTIFACT_NAME = "Consortium"


class Role(IntEnum):
    NONE = 0
    MANUFACTURER = 1
    SUPPLIER = 2
    LAB = 3
    AUDITOR = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            role = cls[name.strip().upper()]
        except KeyError:
            role = cls.NONE
        if role is cls.NONE:
            choices = ", ".join(r.name.lower() for r in cls if r is not cls.NONE)
            raise ConfigError(f"unknown member role {name!r}; expected one of {choices}")
        return role

    @property
    def label(self) -> str:
        return self.name.lower()


class ProposalKind(IntEnum):
    ADMIT = 0
    REMOVE = 1


@dataclass(frozen=True)
class Founder:
    address: str
    role: Role
    name: str
    endpoint: str


@dataclass(frozen=True)
class Member:
    address: str
    role: Role
    active: bool
    name: str
    endpoint: str
    admitted_at: int


@dataclass(frozen=True)
class Proposal:
    proposal_id: int
    kind: ProposalKind
    subject: str
    role: Role
    name: str
    endpoint: str
    proposer: str
    created_at: int
    expires_at: int
    approvals: int
    executed: bool


@dataclass(frozen=True)
class Approval:
    proposal_id: int
    approvals: int
    executed: bool
    receipt: Receipt


@dataclass(frozen=True)
class OracleStatus:
    oracle: str
    active: bool
    member: str | None


class Consortium:
    """The consortium contract, read and written through a member's sender."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> Consortium:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls,
        sender: TransactionSender,
        founders: Sequence[Founder],
        threshold: int,
        proposal_ttl: int,
    ) -> tuple[Consortium, Receipt]:
        binding, receipt = ContractBinding.deploy(
            sender,
            load_artifact(ARTIFACT_NAME),
            [Web3.to_checksum_address(f.address) for f in founders],
            [int(f.role) for f in founders],
            [f.name for f in founders],
            [f.endpoint for f in founders],
            threshold,
            proposal_ttl,
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    # -- reads -------------------------------------------------------------------------------

    def threshold(self) -> int:
        return int(self.binding.read("threshold"))

    def proposal_ttl(self) -> int:
        return int(self.binding.read("proposalTtl"))

    def member(self, address: str) -> Member:
        raw = self.binding.read("member", Web3.to_checksum_address(address))
        return _member(Web3.to_checksum_address(address), raw)

    def is_active_member(self, address: str) -> bool:
        return bool(self.binding.read("isActiveMember", Web3.to_checksum_address(address)))

    def members(self) -> list[Member]:
        """The active members, in admission order."""
        return [self.member(address) for address in self.binding.read("members")]

    def proposal(self, proposal_id: int) -> Proposal:
        return _proposal(proposal_id, self.binding.read("proposal", proposal_id))

    def proposals(self) -> list[Proposal]:
        count = int(self.binding.read("proposalCount"))
        return [self.proposal(i) for i in range(1, count + 1)]

    def has_approved(self, proposal_id: int, member: str) -> bool:
        return bool(self.binding.read("hasApproved", proposal_id, Web3.to_checksum_address(member)))

    def oracle_of(self, oracle: str) -> OracleStatus:
        checksummed = Web3.to_checksum_address(oracle)
        active, member = self.binding.read("oracleOf", checksummed)
        owner = None if int(member, 16) == 0 else Web3.to_checksum_address(member)
        return OracleStatus(checksummed, bool(active), owner)

    def oracles_of(self, member: str) -> list[str]:
        return [str(a) for a in self.binding.read("oraclesOf", Web3.to_checksum_address(member))]

    # -- governance --------------------------------------------------------------------------

    def propose_admission(self, subject: str, role: Role, name: str, endpoint: str) -> Approval:
        return self._propose(ProposalKind.ADMIT, subject, role, name, endpoint)

    def propose_removal(self, subject: str) -> Approval:
        return self._propose(ProposalKind.REMOVE, subject, Role.NONE, "", "")

    def approve(self, proposal_id: int) -> Approval:
        receipt = self.binding.transact("approve", proposal_id)
        return self._approval(proposal_id, receipt)

    def update_endpoint(self, endpoint: str) -> Receipt:
        return self.binding.transact("updateEndpoint", endpoint)

    def _propose(
        self, kind: ProposalKind, subject: str, role: Role, name: str, endpoint: str
    ) -> Approval:
        receipt = self.binding.transact(
            "propose", int(kind), Web3.to_checksum_address(subject), int(role), name, endpoint
        )
        created = self.binding.events(receipt, "ProposalCreated")
        return self._approval(int(created[0]["args"]["proposalId"]), receipt)

    def _approval(self, proposal_id: int, receipt: Receipt) -> Approval:
        approved = self.binding.events(receipt, "ProposalApproved")
        executed = self.binding.events(receipt, "ProposalExecuted")
        count = int(approved[-1]["args"]["approvals"]) if approved else 0
        return Approval(proposal_id, count, bool(executed), receipt)

    # -- oracle keys -------------------------------------------------------------------------

    def register_oracle(self, oracle: str) -> Receipt:
        return self.binding.transact("registerOracle", Web3.to_checksum_address(oracle))

    def rotate_oracle(self, old: str, new: str) -> Receipt:
        return self.binding.transact(
            "rotateOracle", Web3.to_checksum_address(old), Web3.to_checksum_address(new)
        )

    def revoke_oracle(self, oracle: str) -> Receipt:
        return self.binding.transact("revokeOracle", Web3.to_checksum_address(oracle))


def _member(address: str, raw: Any) -> Member:
    role, active, name, endpoint, admitted_at = raw
    return Member(address, Role(role), bool(active), str(name), str(endpoint), int(admitted_at))


def _proposal(proposal_id: int, raw: Any) -> Proposal:
    kind, subject, role, name, endpoint, proposer, created, expires, approvals, executed = raw
    return Proposal(
        proposal_id=proposal_id,
        kind=ProposalKind(kind),
        subject=str(subject),
        role=Role(role),
        name=str(name),
        endpoint=str(endpoint),
        proposer=str(proposer),
        created_at=int(created),
        expires_at=int(expires),
        approvals=int(approvals),
        executed=bool(executed),
    )
