"""The consortium's members (admitted and removed) and every oracle key each ever registered.

The contract's state says who is active now; its logs (``MemberAdmitted``, ``MemberRemoved``,
``OracleRegistered``, ``OracleRevoked``) say who ever was and when, so a revoked key or a removed
member still shows, with the block and transaction that changed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from web3 import Web3
from web3.types import FilterParams

from node.chain.connection import translate_chain_errors
from node.chain.consortium import Consortium, Role
from node.explorer.abi import ContractDirectory, ContractRef
from node.explorer.chain import LogEntry, log_entry

__all__ = ["MemberView", "OracleKeyView", "consortium_log", "members_and_oracles"]

ACTIVE, REVOKED, INACTIVE = "active", "revoked", "inactive"


@dataclass(frozen=True)
class OracleKeyView:
    """An oracle key: ``status`` is ``active``, ``revoked`` (by its member, or rotated out) or
    ``inactive`` (its member was removed)."""

    address: str
    member: str
    status: str
    registered_block: int | None
    registered_tx: str | None
    revoked_block: int | None = None
    revoked_tx: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class MemberView:
    address: str
    name: str
    role: str
    active: bool
    endpoint: str
    admitted_at: int
    admitted_block: int | None
    removed_block: int | None
    oracles: tuple[OracleKeyView, ...]


def consortium_log(
    consortium: Consortium, from_block: int = 0, to_block: int | Literal["latest"] = "latest"
) -> list[LogEntry]:
    """Every log of the consortium contract in the block range, decoded."""
    binding = consortium.binding
    connection = binding.sender.connection
    directory = ContractDirectory([ContractRef("Consortium", binding.address)])
    params: FilterParams = {
        "address": Web3.to_checksum_address(binding.address),
        "fromBlock": from_block,
        "toBlock": to_block,
    }
    with translate_chain_errors(connection.url):
        logs = connection.w3.eth.get_logs(params)
    return [log_entry(directory, log) for log in logs]


def members_and_oracles(consortium: Consortium, from_block: int = 0) -> list[MemberView]:
    """Every member the consortium ever admitted (founders first, in admission order), each with
    every oracle key it registered, active ones first."""
    admitted: dict[str, int] = {}
    removed: dict[str, int] = {}
    registered: dict[str, tuple[str, int, str]] = {}
    revoked: dict[str, tuple[int, str]] = {}
    for entry in consortium_log(consortium, from_block):
        if entry.decoded is None:
            continue
        args = {a.name: a.value for a in entry.decoded.args}
        where = (entry.block_number or 0, entry.tx_hash or "")
        if entry.event == "MemberAdmitted":
            admitted.setdefault(args["member"], where[0])
            removed.pop(args["member"], None)  # admitted again
        elif entry.event == "MemberRemoved":
            removed[args["member"]] = where[0]
        elif entry.event == "OracleRegistered":
            registered[args["oracle"]] = (args["member"], *where)
        elif entry.event == "OracleRevoked":
            revoked[args["oracle"]] = where
    for address in consortium.binding.read("members"):  # founders of a chain whose logs are gone
        admitted.setdefault(Web3.to_checksum_address(address), -1)
    views = []
    for address, block in admitted.items():
        member = consortium.member(address)
        keys = [o for o, (owner, _, _) in registered.items() if owner == address]
        keys += [o for o in consortium.oracles_of(address) if o not in registered]
        oracles = []
        for oracle in keys:
            status = consortium.oracle_of(oracle)
            owner, reg_block, reg_tx = registered.get(oracle, (address, None, None))
            revoked_block, revoked_tx = revoked.get(oracle, (None, None))
            state = ACTIVE if status.active else REVOKED if revoked_block is not None else INACTIVE
            oracles.append(
                OracleKeyView(oracle, owner, state, reg_block, reg_tx, revoked_block, revoked_tx)
            )
        oracles.sort(key=lambda o: (not o.active, o.registered_block or 0))
        views.append(
            MemberView(
                address=address,
                name=member.name,
                role=member.role.label if member.role is not Role.NONE else "none",
                active=member.active,
                endpoint=member.endpoint,
                admitted_at=member.admitted_at,
                admitted_block=None if block < 0 else block,
                removed_block=removed.get(address),
                oracles=tuple(oracles),
            )
        )
    return views
