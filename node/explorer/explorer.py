"""One member's view of the chain for its auditor pages: the :class:`Explorer`.

Every method reads; none sends a transaction. Lookups of something unknown return ``None`` (the
page's 404), a bundle of any content gives a verdict, and a chain that cannot be reached raises
:class:`~node.errors.ChainUnavailableError` (the page's 503).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from node.anchoring.batcher import Batcher
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium
from node.chain.sender import TransactionSender
from node.control.decisions import DECISION
from node.errors import RecordError
from node.explorer.abi import ContractDirectory
from node.explorer.anchors import AnchorView, BatchView, anchors, batch_view
from node.explorer.chain import (
    BlockDetail,
    BlockSummary,
    TransactionDetail,
    block_detail,
    latest_blocks,
    transaction_detail,
)
from node.explorer.decision_path import DecisionPath, decision_path
from node.explorer.genealogy import genealogy_graph
from node.explorer.graph import Graph
from node.explorer.members import MemberView, members_and_oracles
from node.explorer.proof_check import ProofContext, ProofVerdict, check_bundle
from node.offchain import genealogy
from node.offchain.store import RECORDS, Store, stored_record
from node.runtime import Node

__all__ = ["DecisionSummary", "Explorer"]


@dataclass(frozen=True)
class DecisionSummary:
    """A decision record in a list: which rule fired when, deciding what."""

    record_id: str
    rule_id: str
    fired_at_us: int
    action_kind: str
    input_count: int


class Explorer:
    """Reads for the explorer pages over one member's chain connection and store."""

    def __init__(
        self,
        sender: TransactionSender,
        directory: ContractDirectory,
        store: Store | None = None,
        batcher: Batcher | None = None,
    ) -> None:
        self.sender = sender
        self.directory = directory
        self.store = store
        self.batcher = batcher

    @classmethod
    def for_node(cls, node: Node) -> Explorer:
        """The explorer of a node: its contracts (configured or recorded), its store."""
        return cls(node.sender, ContractDirectory.of_node(node), node.store(), node.batcher())

    @property
    def connection(self) -> ChainConnection:
        return self.sender.connection

    @property
    def from_block(self) -> int:
        """Where log scans start: the earliest deployment of a known contract (else 0)."""
        return self.directory.earliest_block

    # -- blocks and transactions ---------------------------------------------------------------

    def latest_blocks(self, count: int = 20, before: int | None = None) -> list[BlockSummary]:
        return latest_blocks(self.connection, count, before)

    def block(self, block: int | str) -> BlockDetail | None:
        return block_detail(self.connection, self.directory, block)

    def transaction(self, tx_hash: str) -> TransactionDetail | None:
        return transaction_detail(self.connection, self.directory, tx_hash)

    # -- members, anchors ---------------------------------------------------------------------

    def consortium(self) -> Consortium | None:
        ref = self.directory.named("Consortium")
        return None if ref is None else Consortium.at(self.sender, ref.address)

    def members(self) -> list[MemberView]:
        """Every member ever admitted with every oracle key it registered (empty if this node
        knows no consortium)."""
        consortium = self.consortium()
        if consortium is None:
            return []
        ref = self.directory.named("Consortium")
        start = ref.block if ref is not None and ref.block is not None else 0
        return members_and_oracles(consortium, start)

    def registry(self) -> AnchorRegistry | None:
        ref = self.directory.named("AnchorRegistry")
        return None if ref is None else AnchorRegistry.at(self.sender, ref.address)

    def anchors(self, member: str | None = None) -> list[AnchorView]:
        """Every anchored batch (or ``member``'s), newest first."""
        registry = self.registry()
        if registry is None:
            return []
        ref = self.directory.named("AnchorRegistry")
        start = ref.block if ref is not None and ref.block is not None else 0
        return anchors(registry, self.batcher, start, member=member)

    def batch(self, batch_id: str, offset: int = 0, limit: int = 100) -> BatchView | None:
        registry = self.registry()
        if registry is None:
            return None
        return batch_view(registry, batch_id, self.batcher, offset, limit)

    # -- proofs ----------------------------------------------------------------------------------

    def proof_context(self) -> ProofContext | None:
        consortium = self.directory.named("Consortium")
        if consortium is None:
            return None
        registry = self.directory.named("AnchorRegistry")
        ledger = self.directory.named("QualityLedger")
        return ProofContext(
            self.sender,
            consortium.address,
            registry.address if registry else None,
            ledger.address if ledger else None,
        )

    def check_proof(self, text: str | bytes, offline: bool = False) -> ProofVerdict:
        """The verdict on a pasted or uploaded bundle (on-chain too unless ``offline``)."""
        return check_bundle(text, None if offline else self.proof_context())

    # -- graphs ----------------------------------------------------------------------------------

    def genealogy(self, product_id: str, downstream: bool = False, max_depth: int = 16) -> Graph:
        """The product's upstream genealogy (or, ``downstream``, what was made from a lot)."""
        store = self._store()
        walk = genealogy.downstream if downstream else genealogy.upstream
        return genealogy_graph(walk(store, product_id, max_depth), downstream=downstream)

    def decisions(self, limit: int = 50) -> list[DecisionSummary]:
        """The latest decision records of this store, newest first."""
        store = self._store()
        with store.transaction() as connection:
            rows = connection.execute(
                select(RECORDS)
                .where(RECORDS.c.record_type == DECISION)
                .order_by(RECORDS.c.observed_at_us.desc(), RECORDS.c.record_id)
                .limit(max(0, min(limit, 500)))
            ).mappings()
            records = [stored_record(row) for row in rows]
        summaries = []
        for record in records:
            fields = record.public
            action = fields.get("action")
            summaries.append(
                DecisionSummary(
                    record_id=record.record_id,
                    rule_id=str(fields.get("rule_id")),
                    fired_at_us=record.observed_at_us,
                    action_kind=str(action.get("kind")) if isinstance(action, dict) else "?",
                    input_count=len(fields.get("inputs") or ()),
                )
            )
        return summaries

    def decision(self, decision_id: str) -> DecisionPath | None:
        """The decision path of a decision record of this store (None if there is none)."""
        try:
            return decision_path(
                self._store(), decision_id, self.connection, self.directory, self.from_block
            )
        except RecordError:  # not a record id
            return None

    def _store(self) -> Store:
        if self.store is None:
            raise RecordError("this explorer has no store: genealogy and decisions are local")
        return self.store
