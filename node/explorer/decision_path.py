"""The decision path of an automated action, as a graph an auditor can follow:

    input records → condition leaves (thresholds, computed values) → the rule's decision
    → the action it decided → how the node carried it out (outbox) → the transactions on-chain

The inputs are checked against the hashes the decision holds and every computed value is
recomputed (:func:`node.control.decisions.replay`): a tampered or missing input, a value that no
longer reproduces, is marked on its node. The on-chain side is found two ways: the results of the
node's own outbox actions for the decision (their ``tx_hash``), and the logs of the consortium's
contracts that carry the decision hash (``CompensationRequested.decisionHash``,
``LineStopped.reasonHash``, ``SupplierHeld.reasonHash``, ...), so another member's explorer finds
the transactions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from web3 import Web3
from web3.types import FilterParams

from node.chain.connection import ChainConnection, translate_chain_errors
from node.control.decisions import Decision, ReplayResult, leaf_paths, replay
from node.control.outbox import ACTIONS, ActionOutbox, PendingAction
from node.errors import ControlError, RecordError, StoreError
from node.explorer.abi import ContractDirectory
from node.explorer.chain import LogEntry, log_entry
from node.explorer.graph import Graph, GraphEdge, GraphNode
from node.offchain.records import StoredRecord
from node.offchain.store import Store

__all__ = [
    "DecisionPath",
    "actions_for",
    "decision_graph",
    "decision_path",
    "logs_mentioning",
]

MAX_INPUTS_PER_LEAF = 8
_LEAF_META = ("holds", "inputs", "scope")
_INPUT_FIELDS = (
    "supplier",
    "part",
    "characteristic",
    "lot",
    "part_id",
    "device",
    "value",
    "unit",
    "verdict",
)


@dataclass(frozen=True)
class DecisionPath:
    """Everything known about one decision, and its graph."""

    decision: Decision
    replay: ReplayResult
    actions: tuple[PendingAction, ...]
    logs: tuple[LogEntry, ...]
    graph: Graph


def decision_path(
    store: Store,
    decision_id: str,
    connection: ChainConnection | None = None,
    directory: ContractDirectory | None = None,
    from_block: int = 0,
    max_inputs_per_leaf: int = MAX_INPUTS_PER_LEAF,
) -> DecisionPath | None:
    """The decision record ``decision_id`` of this store, replayed against its inputs, with the
    actions and (if a chain is given) the on-chain logs that carry it; None if there is no such
    decision record."""
    try:
        record = store.record(decision_id)
        decision = Decision.from_record(record)
    except (StoreError, RecordError, ControlError):
        return None
    found = store.records([record_id for record_id, _ in decision.inputs])
    inputs = {r.record_id: r for r in found}
    result = replay(decision, inputs, record.record_id)
    actions = actions_for(store, decision.decision_hash)
    logs: list[LogEntry] = []
    if connection is not None and directory is not None:
        logs = logs_mentioning(connection, directory, decision.decision_hash, from_block)
    graph = decision_graph(
        decision,
        inputs=inputs,
        replay_result=result,
        actions=actions,
        logs=logs,
        max_inputs_per_leaf=max_inputs_per_leaf,
    )
    return DecisionPath(decision, result, tuple(actions), tuple(logs), graph)


def actions_for(store: Store, decision_hash: str) -> list[PendingAction]:
    """The outbox actions whose payload names the decision (its own and their follow-ups)."""
    needle = decision_hash.lower()
    with store.transaction() as connection:
        keys = list(
            connection.execute(
                select(ACTIONS.c.key)
                .where(ACTIONS.c.payload_json.contains(needle))
                .order_by(ACTIONS.c.id)
            ).scalars()
        )
    outbox = ActionOutbox(store)
    actions = [outbox.get(key) for key in keys]
    return [a for a in actions if a is not None and _names(a.payload, needle)]


def _names(payload: Mapping[str, Any], needle: str) -> bool:
    return any(isinstance(v, str) and v.lower() == needle for v in payload.values())


def logs_mentioning(
    connection: ChainConnection,
    directory: ContractDirectory,
    word: str,
    from_block: int = 0,
    to_block: int | Literal["latest"] = "latest",
) -> list[LogEntry]:
    """Logs of the known contracts in the block range holding ``word`` (a bytes32) as a topic or
    as a 32-byte word of their data, decoded. One ``eth_getLogs`` call: keep ranges bounded on
    long chains."""
    target = bytes.fromhex(word.removeprefix("0x"))
    addresses = [Web3.to_checksum_address(ref.address) for ref in directory]
    if len(target) != 32 or not addresses:
        return []
    params: FilterParams = {"address": addresses, "fromBlock": from_block, "toBlock": to_block}
    with translate_chain_errors(connection.url):
        logs = connection.w3.eth.get_logs(params)
    found = []
    for log in logs:
        topics = [bytes(t) for t in log["topics"]]
        data = bytes(log["data"])
        words = {data[i : i + 32] for i in range(0, len(data) - 31, 32)}
        if target in topics[1:] or target in words:
            found.append(log_entry(directory, log))
    return found


# -- the graph ----------------------------------------------------------------------------------


def decision_graph(
    decision: Decision,
    *,
    inputs: Mapping[str, StoredRecord] | None = None,
    replay_result: ReplayResult | None = None,
    actions: Sequence[PendingAction] = (),
    logs: Sequence[LogEntry] = (),
    max_inputs_per_leaf: int = MAX_INPUTS_PER_LEAF,
) -> Graph:
    """The decision path as a graph (layers: inputs, conditions, decision, action, execution,
    transactions). Inputs beyond ``max_inputs_per_leaf`` per condition are drawn as one node
    listing them in its data."""
    inputs = inputs or {}
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    checks = {c.record_id: c.status for c in replay_result.inputs} if replay_result else {}
    differences = set(replay_result.differences) if replay_result else set()
    condition = decision.thresholds.get("condition", {})
    recorded = decision.computed.get("conditions", {})
    thresholds = dict(_leaf_conditions(condition))
    decision_id = f"decision:{decision.decision_hash}"
    input_nodes: dict[int, str] = {}

    for path in leaf_paths(condition):
        leaf_id = f"condition:{path}"
        values = recorded.get(path, {})
        holds = bool(values.get("holds"))
        status = "fail" if path in differences else "ok" if holds else None
        nodes.append(
            GraphNode(
                id=leaf_id,
                label=f"{path}: {thresholds.get(path, {}).get('metric', 'condition')}",
                kind="condition",
                detail=_leaf_detail(thresholds.get(path, {}), values),
                status=status,
                layer=1,
                data={"path": path, "condition": thresholds.get(path), "computed": values},
            )
        )
        edges.append(GraphEdge(leaf_id, decision_id, "holds" if holds else "does not hold"))
        start, stop = _slice(values, len(decision.inputs))
        shown = range(start, min(stop, start + max_inputs_per_leaf))
        for index in shown:
            if index not in input_nodes:
                record_id, expected = decision.inputs[index]
                input_nodes[index] = f"input:{record_id}"
                nodes.append(
                    _input_node(
                        index, record_id, expected, inputs.get(record_id), checks.get(record_id)
                    )
                )
            edges.append(GraphEdge(input_nodes[index], leaf_id))
        hidden = list(range(shown.stop, stop))
        if hidden:
            more_id = f"more:{path}"
            bad = sum(checks.get(decision.inputs[i][0], "ok") != "ok" for i in hidden)
            summary = f"{bad} of them not ok" if bad else "all hashes ok" if checks else ""
            nodes.append(
                GraphNode(
                    id=more_id,
                    label=f"… {len(hidden)} more input(s)",
                    kind="more",
                    detail=(summary,) if summary else (),
                    status="fail" if bad else None,
                    layer=0,
                    data={"record_ids": [decision.inputs[i][0] for i in hidden]},
                )
            )
            edges.append(GraphEdge(more_id, leaf_id))

    nodes.append(_decision_node(decision, replay_result))
    _action_nodes(decision, actions, logs, decision_id, nodes, edges)
    title = f"Decision path of rule {decision.rule_id}"
    return Graph(title, tuple(nodes), tuple(edges))


def _slice(values: Mapping[str, Any], count: int) -> tuple[int, int]:
    try:
        start, stop = (int(i) for i in values.get("inputs", (0, 0)))
    except (TypeError, ValueError):
        return 0, 0
    return max(0, min(start, count)), max(0, min(stop, count))


def _input_node(
    index: int,
    record_id: str,
    expected_hash: str,
    record: StoredRecord | None,
    check: str | None,
) -> GraphNode:
    short = f"{record_id[:10]}…{record_id[-4:]}"
    detail: list[str] = []
    if record is not None:
        label = f"{record.record_type} {short}"
        detail.append(_utc(record.observed_at_us))
        for name in _INPUT_FIELDS:
            if name in record.public:
                detail.append(f"{name} {_summary(record.public[name])}")
        points = record.public.get("points")
        if isinstance(points, list):
            for point in points[:3]:
                if isinstance(point, dict):
                    detail.append(f"{point.get('q')} {point.get('v')} {point.get('u')}")
    else:
        label = f"record {short}"
    status = {"ok": "ok", "tampered": "fail", "missing": "warn"}.get(check or "")
    if check == "tampered":
        detail.append("TAMPERED: content differs from the decision's hash")
    elif check == "missing":
        detail.append("missing from this store")
    return GraphNode(
        id=f"input:{record_id}",
        label=label,
        kind="input",
        detail=tuple(detail),
        status=status,
        layer=0,
        data={"index": index, "record_id": record_id, "content_hash": expected_hash},
    )


def _decision_node(decision: Decision, result: ReplayResult | None) -> GraphNode:
    digest = decision.decision_hash
    detail = [
        f"decision {digest[:10]}…{digest[-4:]}",
        f"fired {_utc(decision.fired_at_us)}",
        f"rule file sha256 {decision.rule_hash[:12]}…",
    ]
    if decision.signer:
        detail.append(f"signer {decision.signer}")
    status = None
    if result is not None:
        detail.append(result.verdict)
        status = "ok" if result.confirmed else "fail"
    return GraphNode(
        id=f"decision:{digest}",
        label=f"rule {decision.rule_id}",
        kind="decision",
        detail=tuple(detail),
        status=status,
        layer=2,
        data={
            "decision_hash": digest,
            "rule_id": decision.rule_id,
            "rule_hash": decision.rule_hash,
            "fired_at_us": decision.fired_at_us,
            "signer": decision.signer,
            "verdict": None if result is None else result.verdict,
        },
    )


def _action_nodes(
    decision: Decision,
    actions: Sequence[PendingAction],
    logs: Sequence[LogEntry],
    decision_id: str,
    nodes: list[GraphNode],
    edges: list[GraphEdge],
) -> None:
    action = dict(decision.action)
    kind = str(action.get("kind", "action"))
    action_id = f"action:{kind}"
    params = [f"{k} {_summary(v)}" for k, v in sorted(action.items()) if k != "kind"]
    nodes.append(
        GraphNode(
            id=action_id,
            label=f"action {kind}",
            kind="action",
            detail=tuple(params),
            layer=3,
            data={"action": action},
        )
    )
    edges.append(GraphEdge(decision_id, action_id, "decided"))
    transactions: dict[str, tuple[int | None, list[str], str]] = {}
    for pending in actions:
        execution_id = f"execution:{pending.key}"
        detail = [f"{pending.status.value}, {pending.attempts} attempt(s)"]
        if pending.last_error:
            detail.append(f"error: {pending.last_error}")
        result = dict(pending.result or {})
        detail += [f"{k} {_summary(v)}" for k, v in sorted(result.items()) if k != "tx_hash"]
        status = {"done": "ok", "failed": "fail"}.get(pending.status.value)
        nodes.append(
            GraphNode(
                id=execution_id,
                label=pending.kind,
                kind="execution",
                detail=tuple(detail),
                status=status,
                layer=4,
                data={
                    "key": pending.key,
                    "status": pending.status.value,
                    "payload": dict(pending.payload),
                    "result": result,
                },
            )
        )
        edges.append(GraphEdge(action_id, execution_id))
        tx_hash = result.get("tx_hash")
        if isinstance(tx_hash, str) and tx_hash:
            block = result.get("block_number")
            number = int(block) if isinstance(block, int) else None
            transactions.setdefault(tx_hash.lower(), (number, [], execution_id))
    for log in logs:
        if log.tx_hash is None:
            continue
        block, events, source = transactions.get(log.tx_hash, (None, [], action_id))
        name = f"{log.contract}.{log.event}" if log.decoded else f"log of {log.address}"
        transactions[log.tx_hash] = (log.block_number or block, [*events, name], source)
    for tx_hash, (block, events, source) in transactions.items():
        tx_id = f"tx:{tx_hash}"
        detail = [f"block {block}" if block is not None else "block ?", *events]
        nodes.append(
            GraphNode(
                id=tx_id,
                label=f"tx {tx_hash[:10]}…{tx_hash[-4:]}",
                kind="transaction",
                detail=tuple(detail),
                status="ok" if events else None,
                layer=5,
                data={"tx_hash": tx_hash, "block_number": block, "events": events},
            )
        )
        edges.append(GraphEdge(source, tx_id, "on-chain"))


def _leaf_conditions(
    condition: Mapping[str, Any], path: str = "when"
) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for combinator in ("all", "any"):
        children = condition.get(combinator)
        if isinstance(children, list):
            for index, child in enumerate(children):
                yield from _leaf_conditions(child, f"{path}.{combinator}[{index}]")
            return
    yield path, condition


def _leaf_detail(condition: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, ...]:
    lines = []
    threshold = condition.get("threshold")
    if isinstance(threshold, Mapping):
        unit = f" {threshold.get('unit')}" if threshold.get("unit") else ""
        lines.append(f"{threshold.get('comparator')} {threshold.get('value')}{unit}")
    for name, value in condition.items():
        if name not in ("metric", "threshold"):
            lines.append(f"{name} {_summary(value)}")
    for name, value in values.items():
        if name not in _LEAF_META:
            lines.append(f"= {name} {_summary(value)}")
    return tuple(lines)


def _summary(value: Any) -> str:
    if isinstance(value, list | dict):
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 40 else f"[{len(value)} items]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _utc(timestamp_us: int) -> str:
    moment = datetime.fromtimestamp(timestamp_us / 1e6, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
