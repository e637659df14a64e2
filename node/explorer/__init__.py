"""The auditor's explorer, as a library the pages call (no HTTP here): blocks, transactions with
decoded calls and events, members and oracle keys, anchors and batches, the proof checker, and
the genealogy and decision-path graphs (JSON and SVG).

Start from :meth:`Explorer.for_node`; the modules can also be used on their own.
"""

from node.explorer.abi import ContractDirectory, ContractRef, DecodedCall, DecodedEvent
from node.explorer.anchors import AnchorView, BatchView, RecordView
from node.explorer.chain import (
    BlockDetail,
    BlockSummary,
    LogEntry,
    TransactionDetail,
    TransactionSummary,
)
from node.explorer.decision_path import DecisionPath, decision_graph
from node.explorer.explorer import DecisionSummary, Explorer
from node.explorer.genealogy import genealogy_graph
from node.explorer.graph import Graph, GraphEdge, GraphNode, render_svg
from node.explorer.members import MemberView, OracleKeyView
from node.explorer.proof_check import REASONS, Check, ProofContext, ProofVerdict, check_bundle

__all__ = [
    "REASONS",
    "AnchorView",
    "BatchView",
    "BlockDetail",
    "BlockSummary",
    "Check",
    "ContractDirectory",
    "ContractRef",
    "DecisionPath",
    "DecisionSummary",
    "DecodedCall",
    "DecodedEvent",
    "Explorer",
    "Graph",
    "GraphEdge",
    "GraphNode",
    "LogEntry",
    "MemberView",
    "OracleKeyView",
    "ProofContext",
    "ProofVerdict",
    "RecordView",
    "TransactionDetail",
    "TransactionSummary",
    "check_bundle",
    "decision_graph",
    "genealogy_graph",
    "render_svg",
]
