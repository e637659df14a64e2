"""The trace: from a serial to its whole upstream genealogy across members, with every anomaly on
the path, each verified here, and the root-cause candidates ranked.

How it runs (:meth:`Tracer.trace`):

1. **Genealogy, in rounds.** The ids to resolve are grouped by the member that owns them; each
   member is asked once a round for its part (:meth:`node.trace.part.PartReader.links`: this
   member's own store in-process, the others through their nodes' trace routes, in parallel). A
   member answers with the whole subtree its store holds, so a round crosses one member boundary.
   The inputs it has no genealogy of go to their owner in the next round: the owner this node's
   ``api.partners`` names, else the one the answering member names, else nobody (the known chain
   ends there).
2. **Anomalies.** Each member that answered is asked about its part (its lots and the lots it
   consumed; its equipment over ``equipment_lookback`` before each output made with it; the
   suppliers of the lots it consumed over ``supplier_lookback``), in parallel. Holds and open 8D
   cases between each customer and supplier on the path are read from SupplierQuality and
   CorrectiveAction.
3. **Verification.** Every record served, this member's included, is checked here against the
   chain with its owner as the expected member (:func:`node.api.verification.check_anchor`,
   :func:`~node.api.verification.check_signature`), and the genealogy and the anomalies are built
   from the verified records' own fields, never from the answer's claims around them. A drift is
   recomputed from its evidence (:func:`node.trace.drift.recheck`); a failed inspection must be
   failed in the record itself; a decision record must hash to its id.
4. **Ranking** (:mod:`node.trace.ranking`).

A member that does not answer, refuses, or serves data that does not verify: its part is marked
with the status and the reason (on the nodes, on the anomalies, and per member), and the trace
goes on with everything else.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.api.passport import Ownership
from node.api.verification import (
    FAILED,
    PENDING,
    UNAVAILABLE,
    VERIFIED,
    ChainView,
    SignatureCheck,
    Verification,
    check_anchor,
    check_signature,
    summarise,
)
from node.chain.contract_errors import UnknownCase, UnknownHold
from node.chain.corrective_action import CorrectiveAction
from node.chain.supplier_quality import SupplierQuality
from node.control.decisions import DECISION, Decision
from node.errors import (
    AttestationError,
    ChainError,
    ConfigError,
    ContractRevertError,
    ControlError,
    IdentifierError,
    QnodeError,
)
from node.offchain.records import StoredRecord
from node.offchain.store import now_us
from node.oracles.attestation import parse_bundle
from node.oracles.attestor import ATTESTED_TYPES
from node.trace import keys
from node.trace.anomalies import (
    CORRECTIVE_ACTION_OPEN,
    PARAMETER_DRIFT,
    QUARANTINED_READINGS,
    RULE_FIRING,
    SUPPLIER_HOLD,
    judge,
    subject_of,
)
from node.trace.drift import DriftSettings, baseline_of, recheck
from node.trace.model import (
    UNANCHORED,
    Anomaly,
    Check,
    MemberPart,
    Owner,
    Trace,
    TraceNode,
    worst,
)
from node.trace.part import AnomalyQuery, PartReader, Window, point_value
from node.trace.peers import OK, PartSource, PeerAnswer
from node.trace.ranking import rank

_LOT_KINDS = ("material_lot", "parent_lot")
_MALFORMED = (TypeError, ValueError, KeyError, AttributeError, IndexError)
"""What a hostile or broken answer can raise while it is read: the member's part fails, the
trace goes on."""
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _is_address(value: object) -> bool:
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


@dataclass(frozen=True)
class TraceOptions:
    equipment_lookback_s: float = 24 * 3600.0
    """How far before an output was made its equipment's data is examined (drifts, quarantined
    readings, rule firings). The drift's baseline is the start of this window."""
    supplier_lookback_s: float = 30 * 86400.0
    """How far before a lot was consumed rule firings about its supplier are looked for."""
    max_rounds: int = 16
    parallel: bool = True
    drift: DriftSettings = field(default_factory=DriftSettings)


def _drift_summary(shown: Mapping[str, Any], mean: float, shift: float, count: int) -> str:
    unit = f" {shown['unit']}" if isinstance(shown.get("unit"), str) else ""
    of = f"of {shown['device']}" if shown.get("device") else "setpoints"
    way = "up" if shift > 0 else "down"
    relative = f" ({100 * shift / abs(mean):+.2f} %)" if mean else ""
    return (
        f"{shown['parameter']} {of} drifted {way} from its baseline {mean:.6g}{unit}: "
        f"{shift:+.4g}{unit}{relative} on average over the {count} values after the onset"
    )


class HoldSource(Protocol):
    def facts(self, customer: str, supplier: str) -> list[dict[str, Any]]:
        """The active hold of ``customer`` on ``supplier`` and its open 8D case, if any:
        ``{kind, at_us, summary, details}`` each."""
        ...


class ChainHolds:
    """Holds and 8D cases as SupplierQuality and CorrectiveAction hold them on-chain."""

    def __init__(
        self,
        supplier_quality: Callable[[], SupplierQuality],
        corrective_action: Callable[[], CorrectiveAction],
    ) -> None:
        self._supplier_quality = supplier_quality
        self._corrective_action = corrective_action

    def facts(self, customer: str, supplier: str) -> list[dict[str, Any]]:
        contract = self._supplier_quality()
        hold_id = contract.active_hold(customer, supplier)
        if hold_id is None:
            return []
        try:
            hold = contract.hold(hold_id)
        except UnknownHold:
            return []
        found: list[dict[str, Any]] = [
            {
                "kind": SUPPLIER_HOLD,
                "at_us": int(hold.placed_at) * 1_000_000,
                "summary": f"hold {hold.hold_id} is active"
                + (f" ({hold.consecutive} lots in a row out of spec)" if hold.consecutive else ""),
                "source": f"SupplierQuality {contract.address}, hold {hold.hold_id}",
                "details": {
                    "holdId": hold.hold_id,
                    "customer": hold.customer,
                    "supplier": hold.supplier,
                    "caseId": hold.case_id or None,
                },
            }
        ]
        if hold.case_id:
            corrective_action = self._corrective_action()
            try:
                case = corrective_action.case(hold.case_id)
            except UnknownCase:
                return found
            if not case.closed:
                found.append(
                    {
                        "kind": CORRECTIVE_ACTION_OPEN,
                        "at_us": int(case.opened_at) * 1_000_000,
                        "summary": f"8D case {case.case_id} open at discipline "
                        f"{case.discipline.name}",
                        "source": f"CorrectiveAction {corrective_action.address}, "
                        f"case {case.case_id}",
                        "details": {
                            "caseId": case.case_id,
                            "customer": case.customer,
                            "supplier": case.supplier,
                            "awaitingReview": case.awaiting_review,
                        },
                    }
                )
        return found


@dataclass(frozen=True)
class _Checked:
    record_id: str
    member: str
    record_type: str
    observed_at_us: int
    public: Mapping[str, Any]
    verification: Verification


@dataclass
class _Node:
    uid: str
    id: str
    kind: str
    owner: str | None
    made_by: dict[str, str] = field(default_factory=dict)
    """Genealogy records that made it -> the member that served them."""
    named_by: dict[str, str] = field(default_factory=dict)
    """Genealogy records naming it as an input, equipment or step -> the serving member."""
    children: dict[str, None] = field(default_factory=dict)
    made_at_us: int | None = None
    upstream: Check | None = None
    implied: bool = False
    maker: str | None = None
    """The member whose genealogy records made it."""


@dataclass
class _MemberLog:
    member: str
    name: str | None = None
    role: str | None = None
    status: str = OK
    detail: str = ""
    requests: int = 0
    elapsed_s: float = 0.0

    def fail(self, status: str, detail: str) -> None:
        if self.status == OK:
            self.status, self.detail = status, detail

    def record(self, answer: PeerAnswer) -> None:
        self.requests += 1
        self.elapsed_s += answer.elapsed_s
        self.name = answer.name or self.name
        self.role = answer.role or self.role
        if answer.status != OK and self.status == OK:
            self.status, self.detail = answer.status, answer.detail
        elif not self.detail:
            self.detail = answer.detail


class Tracer:
    """Traces for one member (``own``), with its own store behind ``reader``."""

    def __init__(
        self,
        own: str,
        reader: PartReader,
        chain: ChainView,
        ownership: Ownership,
        peers: PartSource | None = None,
        options: TraceOptions | None = None,
        holds: HoldSource | None = None,
    ) -> None:
        self.own = own
        self.reader = reader
        self.chain = chain
        self.ownership = ownership
        self.peers = peers
        self.options = options or TraceOptions()
        self.holds = holds
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="trace")

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        close = getattr(self.peers, "close", None)
        if callable(close):
            close()

    def trace(self, serial_uri: str) -> Trace:
        link = keys.digital_link(serial_uri) if "://" in serial_uri else None
        if link is None or not keys.is_product(serial_uri):
            raise IdentifierError(f"{serial_uri!r} is not a GS1 Digital Link URI of a product")
        return _Run(self, keys.canonical(serial_uri)).run()


class _Run:
    def __init__(self, tracer: Tracer, root: str) -> None:
        self.t = tracer
        self.root = root
        self.nodes: dict[str, _Node] = {}
        self.checked: dict[tuple[str, str], _Checked] = {}
        self.members: dict[str, _MemberLog] = {}
        self.notes: list[str] = []
        self.claims: list[tuple[str, dict[str, Any], dict[str, _Checked]]] = []
        self.facts: list[tuple[str, str, dict[str, Any]]] = []
        self.started = self.lap = time.perf_counter()
        self.started_at_us = now_us()
        self.phases: list[tuple[str, float]] = []

    # -- the whole run -----------------------------------------------------------------------

    def run(self) -> Trace:
        root_owner = self._owner_by_config(self.root) or self.t.own.lower()
        self.nodes[self.root] = _Node(self.root, self.root, "product", root_owner)
        answered = self._genealogy(root_owner)
        self._lap("genealogy")
        self._anomalies(answered)
        self._lap("anomalies")
        self._holds(answered)
        self._lap("holds")
        return self._result()

    def _lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases.append((name, (now - self.lap) * 1000))
        self.lap = now

    # -- 1. genealogy ------------------------------------------------------------------------

    def _genealogy(self, root_owner: str) -> set[str]:
        pending: dict[str, list[str]] = {root_owner.lower(): [self.root]}
        asked: set[tuple[str, str]] = set()
        answered: set[str] = set()
        for _round in range(self.t.options.max_rounds):
            if not pending:
                break
            for member, ids in pending.items():
                asked.update((member, i) for i in ids)
            answers = self._ask(
                {m: functools.partial(self._links, m, ids) for m, ids in pending.items()}
            )
            following: dict[str, list[str]] = {}
            for member, ids in pending.items():
                answer = answers[member]
                if answer.status != OK or answer.body is None:
                    for uid in ids:
                        self.nodes[uid].upstream = Check(answer.status, answer.detail)
                    continue
                try:
                    found = self._absorb_links(member, ids, answer.body)
                except _MALFORMED as exc:
                    why = f"{self._name(member)} served a malformed answer ({type(exc).__name__})"
                    self.members.setdefault(member, _MemberLog(member)).fail(FAILED, why)
                    for uid in ids:
                        self.nodes[uid].upstream = Check(FAILED, why)
                    continue
                answered.add(member)
                for owner, uid in found:
                    if (owner, uid) not in asked:
                        following.setdefault(owner, []).append(uid)
            pending = following
        else:
            if pending:
                self.notes.append(
                    f"stopped after {self.t.options.max_rounds} rounds between members"
                )
        return answered

    def _links(self, member: str, ids: list[str]) -> PeerAnswer:
        if member == self.t.own.lower():
            return self._local(lambda: self.t.reader.links(ids))
        if self.t.peers is None:
            return PeerAnswer(
                member, None, None, UNAVAILABLE, "this node asks no other member", None, 0.0
            )
        return self.t.peers.links(member, ids)

    def _local(self, ask: Callable[[], dict[str, Any]]) -> PeerAnswer:
        started = time.perf_counter()
        try:
            body = ask()
        except QnodeError as exc:
            return PeerAnswer(
                self.t.own, None, None, UNAVAILABLE, f"this node's store: {exc}", None, 0.0
            )
        return PeerAnswer(
            self.t.own, None, None, OK, "this node's store", body, time.perf_counter() - started
        )

    def _ask(self, calls: Mapping[str, Callable[[], PeerAnswer]]) -> dict[str, PeerAnswer]:
        """Each member's call, remote ones in parallel; logged per member."""
        own = self.t.own.lower()
        results: dict[str, PeerAnswer] = {}
        if self.t.options.parallel and len(calls) > 1:
            futures = {m: self.t._pool.submit(c) for m, c in calls.items() if m != own}
            if own in calls:
                results[own] = calls[own]()
            for member, future in futures.items():
                results[member] = future.result()
        else:
            results = {member: call() for member, call in calls.items()}
        for member, answer in results.items():
            self.members.setdefault(member, _MemberLog(member)).record(answer)
        return results

    def _absorb_links(
        self, member: str, asked: list[str], body: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """Add a member's genealogy part; return (owner, id) of the inputs to ask further."""
        records = self._check(member, body.get("records"))
        for record in sorted(records.values(), key=lambda r: r.observed_at_us):
            if record.record_type == "genealogy":
                self._add_genealogy(member, record)
        implied = body.get("implied") if isinstance(body.get("implied"), Mapping) else {}
        assert isinstance(implied, Mapping)
        for item, lot in implied.items():
            item_uid, lot_uid = keys.canonical(str(item)), keys.canonical(str(lot))
            if item_uid in self.nodes and keys.lot_of(item_uid) == lot_uid:
                lot_node = self._node(lot_uid, lot_uid, "lot", member)
                lot_node.implied, lot_node.kind = True, "lot"
                self.nodes[item_uid].children[lot_uid] = None
        for uid in asked:
            node = self.nodes.get(uid)
            if node is not None and node.made_by and node.upstream is None:
                statuses = [
                    self.checked[(m, r)].verification.status for r, m in node.made_by.items()
                ]
                node.upstream = Check(worst(statuses), f"genealogy served by {self._name(member)}")
        said = {keys.canonical(str(u)) for u in body.get("unknown") or [] if isinstance(u, str)}
        for uid in asked:
            node = self.nodes.get(uid)
            if (
                node is not None
                and not node.made_by
                and uid not in said
                and node.upstream is None
                and not any(self.nodes[c].implied for c in node.children)
            ):
                node.upstream = Check(
                    FAILED, f"{self._name(member)} served no genealogy of it, nor said why"
                )
        hints = body.get("owners") if isinstance(body.get("owners"), Mapping) else {}
        assert isinstance(hints, Mapping)
        unknown = body.get("unknown") if isinstance(body.get("unknown"), list) else []
        assert isinstance(unknown, list)
        following: list[tuple[str, str]] = []
        for raw in unknown:
            if not isinstance(raw, str):
                continue
            uid = keys.canonical(raw)
            node = self.nodes.get(uid)
            if node is None:
                continue
            hint = hints.get(raw) if _is_address(hints.get(raw)) else None
            owner = self._owner_by_config(uid, partners_only=True) or hint
            if owner is None and member == self.t.own.lower():
                owner = self._owner_by_config(uid)
            owner = owner.lower() if owner else None
            if owner is not None and owner != member:
                node.owner = owner
                following.append((owner, uid))
            elif uid == self.root or node.made_by:
                continue
            else:
                node.owner = node.owner or owner
                who = self._name(member)
                node.upstream = Check(
                    VERIFIED if owner == member else UNAVAILABLE,
                    f"{who} holds no genealogy of it: where the known chain starts"
                    if owner == member
                    else f"no member is known to own it ({who} holds no genealogy of it)",
                )
        return following

    def _add_genealogy(self, member: str, record: _Checked) -> None:
        public = record.public
        output = public.get("output")
        if not isinstance(output, str):
            return
        uid = keys.canonical(output)
        node = self._node(uid, uid, "parent_lot", member)
        node.made_by[record.record_id] = member
        node.maker = member
        node.owner = node.owner or member
        node.made_at_us = max(node.made_at_us or 0, record.observed_at_us)
        inputs = public.get("inputs") if isinstance(public.get("inputs"), list) else []
        assert isinstance(inputs, list)
        for item in inputs:
            if not isinstance(item, Mapping) or item.get("kind") not in _LOT_KINDS:
                continue
            child_uid = keys.canonical(str(item.get("id")))
            child = self._node(child_uid, child_uid, str(item["kind"]), None)
            child.named_by[record.record_id] = member
            node.children[child_uid] = None
        for field_name, kind, prefix in (
            ("equipment", "equipment", "equipment"),
            ("process_step", "process_step", "step"),
        ):
            value = public.get(field_name)
            if isinstance(value, str) and value:
                child = self._node(f"{prefix}|{member}|{value}", value, kind, member)
                child.named_by[record.record_id] = member
                node.children[child.uid] = None

    def _node(self, uid: str, identifier: str, kind: str, owner: str | None) -> _Node:
        node = self.nodes.get(uid)
        if node is None:
            node = self.nodes[uid] = _Node(uid, identifier, kind, owner)
        return node

    # -- 2. anomalies ------------------------------------------------------------------------

    def _anomalies(self, answered: set[str]) -> None:
        queries = {m: q for m in sorted(answered) if (q := self._query(m)) is not None}
        answers = self._ask(
            {m: functools.partial(self._anomalies_of, m, q) for m, q in queries.items()}
        )
        for member, answer in answers.items():
            if answer.status != OK or answer.body is None:
                self.notes.append(
                    f"anomalies of {self._name(member)}'s part not known: {answer.detail}"
                )
                continue
            try:
                records = self._check(member, answer.body.get("records"))
            except _MALFORMED as exc:
                why = f"{self._name(member)} served a malformed answer ({type(exc).__name__})"
                self.members.setdefault(member, _MemberLog(member)).fail(FAILED, why)
                self.notes.append(f"anomalies of {self._name(member)}'s part not known: {why}")
                continue
            claims = answer.body.get("anomalies")
            for claim in claims if isinstance(claims, list) else []:
                if isinstance(claim, dict):
                    self.claims.append((member, claim, records))

    def _anomalies_of(self, member: str, query: AnomalyQuery) -> PeerAnswer:
        if member == self.t.own.lower():
            return self._local(lambda: self.t.reader.anomalies(query))
        assert self.t.peers is not None
        return self.t.peers.anomalies(member, query)

    def _query(self, member: str) -> AnomalyQuery | None:
        options = self.t.options
        subjects: dict[str, None] = {}
        equipment: dict[str, list[int]] = {}
        suppliers: dict[str, list[int]] = {}
        for node in self.nodes.values():
            if node.kind in ("equipment", "process_step"):
                if node.kind == "equipment" and node.owner == member:
                    times = [self._record(member, r).observed_at_us for r in node.named_by]
                    equipment.setdefault(node.id, []).extend(times)
                continue
            if node.maker == member or (node.maker is None and node.owner == member):
                subjects[node.id] = None
            for record_id, by in node.named_by.items():
                checked = self.checked.get((member, record_id))
                if by != member or checked is None:
                    continue
                subjects[node.id] = None  # a lot this member consumed
                supplier = node.owner
                if supplier is not None and supplier != member:
                    suppliers.setdefault(supplier, []).append(checked.observed_at_us)
        if member == self.t.own.lower():
            subjects[self.root] = None
            subjects.update((c, None) for c in self.nodes[self.root].children)
        subjects = {s: None for s in subjects if keys.is_product(s)}
        if not (subjects or equipment or suppliers):
            return None
        lookback = int(options.equipment_lookback_s * 1e6)
        supplier_lookback = int(options.supplier_lookback_s * 1e6)
        return AnomalyQuery(
            subjects=tuple(subjects),
            equipment=tuple(
                Window(e, max(0, min(t) - lookback), max(t)) for e, t in equipment.items() if t
            ),
            suppliers=tuple(
                Window(s, max(0, min(t) - supplier_lookback), max(t)) for s, t in suppliers.items()
            ),
        )

    def _holds(self, answered: set[str]) -> None:
        if self.t.holds is None:
            return
        pairs: set[tuple[str, str]] = set()
        for node in self.nodes.values():
            if node.kind not in _LOT_KINDS or node.owner is None:
                continue
            for by in node.named_by.values():
                if by != node.owner and by in answered:
                    pairs.add((by, node.owner))
        for customer, supplier in sorted(pairs):
            try:
                facts = self.t.holds.facts(customer, supplier)
            except (ChainError, ConfigError) as exc:
                self.notes.append(f"holds of {customer} on {supplier} not read: {exc}")
                continue
            for fact in facts:
                self.facts.append((customer, supplier, fact))

    # -- 3. verification ---------------------------------------------------------------------

    def _check(self, member: str, served: object) -> dict[str, _Checked]:
        """Check each served record against the chain with ``member`` as its owner."""
        found: dict[str, _Checked] = {}
        if not isinstance(served, Mapping):
            return found
        for raw_id, entry in served.items():
            record_id = str(raw_id).lower()
            cached = self.checked.get((member, record_id))
            if cached is None:
                cached = self._check_one(member, record_id, entry)
                if cached is None:
                    continue
                self.checked[(member, record_id)] = cached
            found[record_id] = cached
        return found

    def _check_one(self, member: str, record_id: str, entry: object) -> _Checked | None:
        if not isinstance(entry, Mapping):
            return None
        bundle = entry.get("bundle")
        record = bundle.get("record") if isinstance(bundle, Mapping) else entry.get("record")
        if not isinstance(record, Mapping) or not isinstance(record.get("fields"), Mapping):
            return None
        record_type = str(record.get("type"))
        try:
            observed = int(record.get("observed_at_us") or 0)
        except (TypeError, ValueError):
            observed = 0
        who = self._name(member)
        if str(record.get("id", "")).lower() != record_id:
            verification = Verification(FAILED, f"{who} served record {record_id} as another id")
        elif not isinstance(bundle, Mapping):
            why = entry.get("pending") if isinstance(entry.get("pending"), str) else "no proof"
            verification = Verification(PENDING, f"not anchored yet ({who}: {why})")
        else:
            try:
                verification = self._verify(member, record_id, record_type, bundle, entry)
            except (ChainError, ConfigError) as exc:
                verification = Verification(UNAVAILABLE, f"the chain could not be asked: {exc}")
            except _MALFORMED as exc:
                verification = Verification(FAILED, f"a malformed bundle ({type(exc).__name__})")
        return _Checked(record_id, member, record_type, observed, record["fields"], verification)

    def _verify(
        self,
        member: str,
        record_id: str,
        record_type: str,
        bundle: Mapping[str, Any],
        entry: Mapping[str, Any],
    ) -> Verification:
        anchor, problem = check_anchor(bundle, self.t.chain, member)
        problems = [problem] if problem else []
        pending: list[str] = []
        signature: SignatureCheck | None = None
        if record_type in ATTESTED_TYPES:
            raw = entry.get("attestation")
            if raw is None:
                pending.append("not signed yet")
            else:
                try:
                    attestation = parse_bundle(raw)
                    signature, problem = check_signature(attestation, self.t.chain, member)
                    if problem:
                        problems.append(problem)
                    if attestation.record_id.lower() != record_id:
                        problems.append("the attestation is of another record")
                    leaf = bundle.get("leafValue") or [None, None]
                    if attestation.message["contentHash"].hex() != str(leaf[1])[2:].lower():
                        problems.append("the attestation signs another content than the proof")
                except AttestationError as exc:
                    problems.append(f"the attestation does not verify: {exc}")
        return summarise(anchor, signature, problems, pending)

    def _record(self, member: str, record_id: str) -> _Checked:
        return self.checked[(member, record_id)]

    # -- building the result -----------------------------------------------------------------

    def _result(self) -> Trace:
        depths = self._depths()
        anomalies = self._build_anomalies()
        by_node: dict[str, list[str]] = {}
        for anomaly in anomalies:
            by_node.setdefault(anomaly.node, []).append(anomaly.uid)
        nodes: dict[str, TraceNode] = {}
        for uid in sorted(depths, key=lambda u: (depths[u], u)):
            node = self.nodes[uid]
            nodes[uid] = TraceNode(
                uid=uid,
                id=node.id,
                kind=node.kind if uid != self.root else "product",
                owner=self._owner(node.owner),
                depth=depths[uid],
                made_at_us=node.made_at_us,
                records=tuple(node.made_by or node.named_by),
                check=self._node_check(node),
                upstream=node.upstream if node.kind not in ("equipment", "process_step") else None,
                children=tuple(c for c in node.children if c in depths),
                anomalies=tuple(by_node.get(uid, ())),
            )
        names = {m: log.name for m, log in self.members.items() if log.name}
        symptoms, candidates = rank(self.root, nodes, anomalies, names)
        self._lap("ranking")
        members = tuple(
            MemberPart(
                member=log.member,
                name=log.name or self._name(log.member),
                status=log.status,
                detail=log.detail,
                requests=log.requests,
                elapsed_ms=log.elapsed_s * 1000,
            )
            for log in sorted(self.members.values(), key=lambda m: m.member)
        )
        return Trace(
            root=self.root,
            member=self.t.own,
            nodes=tuple(nodes.values()),
            anomalies=tuple(anomalies),
            symptoms=tuple(symptoms),
            candidates=tuple(candidates),
            members=members,
            notes=tuple(self.notes),
            detector=self.t.options.drift.describe(),
            started_at_us=self.started_at_us,
            elapsed_ms=(time.perf_counter() - self.started) * 1000,
            phases=tuple(self.phases),
        )

    def _depths(self) -> dict[str, int]:
        depths = {self.root: 0}
        frontier = [self.root]
        while frontier:
            following = []
            for uid in frontier:
                for child in self.nodes[uid].children:
                    if child not in depths and child in self.nodes:
                        depths[child] = depths[uid] + 1
                        following.append(child)
            frontier = following
        return depths

    def _node_check(self, node: _Node) -> Check:
        served = node.made_by or node.named_by
        records = list(served)
        checks = [
            self.checked[(m, r)].verification for r, m in served.items() if (m, r) in self.checked
        ]
        if node.implied and not checks:
            return Check(VERIFIED, "named by the item's own identifier")
        implied = [c for c in node.children if self.nodes[c].implied]
        if not checks and node.uid == self.root and implied:
            return Check(
                VERIFIED,
                f"an item of lot {implied[0]}, as its identifier says; its genealogy is the lot's",
            )
        if not checks:
            if node.uid == self.root:
                why = node.upstream.detail if node.upstream else "no genealogy found"
                return Check(UNAVAILABLE, f"nothing is known of it: {why}")
            return Check(UNAVAILABLE, "no record of it could be checked")
        status = worst([c.status for c in checks])
        bad = [c for c in checks if c.status == status and status != VERIFIED]
        if bad:
            detail = bad[0].detail
        else:
            what = "made by" if node.made_by else "named in"
            detail = (
                f"{what} {len(checks)} genealogy record(s) verified against the chain: "
                + checks[0].detail
            )
        return Check(status, detail, tuple(records))

    def _build_anomalies(self) -> list[Anomaly]:
        raw: list[tuple[int, str, str, str, str, Mapping[str, Any], Check]] = []
        seen: set[tuple[str, ...]] = set()
        for member, claim, records in self.claims:
            built = self._claim(member, claim, records)
            if built is None:
                continue
            kind, node_uid, at_us, summary, details, check = built
            # one claim served twice is one anomaly; two quantities of the same readings
            # (a controller's tuning and the temperature it controls) are two
            parameter = (str(details.get("device")), str(details.get("parameter")))
            same = (kind, node_uid, *parameter, *check.records)
            if check.records and same in seen:
                continue
            seen.add(same)
            raw.append((at_us, kind, node_uid, member, summary, details, check))
        for customer, supplier, fact in self.facts:
            lots = sorted(
                n.uid
                for n in self.nodes.values()
                if n.owner == supplier and n.kind in _LOT_KINDS and customer in n.named_by.values()
            )
            if not lots:
                continue
            check = Check(VERIFIED, f"read from the chain: {fact['source']}")
            raw.append(
                (
                    int(fact["at_us"]),
                    str(fact["kind"]),
                    lots[0],
                    customer,
                    f"{self._name(customer)} on {self._name(supplier)}: {fact['summary']}",
                    dict(fact["details"]),
                    check,
                )
            )
        raw.sort(key=lambda item: (item[0], item[1], item[2], item[4]))
        return [
            Anomaly(
                uid=f"a{number}",
                kind=kind,
                node=node_uid,
                owner=self._owner(member),
                at_us=at_us,
                summary=summary,
                details=details,
                check=check,
            )
            for number, (at_us, kind, node_uid, member, summary, details, check) in enumerate(
                raw, start=1
            )
        ]

    def _claim(
        self, member: str, claim: Mapping[str, Any], records: Mapping[str, _Checked]
    ) -> tuple[str, str, int, str, dict[str, Any], Check] | None:
        kind = str(claim.get("kind"))
        scope = claim.get("scope")
        subject = str(claim.get("subject", ""))
        details = claim.get("details") if isinstance(claim.get("details"), Mapping) else {}
        assert isinstance(details, Mapping)
        refs = [str(r).lower() for r in claim.get("records") or [] if isinstance(r, str)]
        if scope == "subject":
            node_uid = keys.canonical(subject)
        elif scope == "equipment":
            node_uid = f"equipment|{member}|{subject}"
        elif scope == "supplier":
            node_uid = self._supplier_node(member, subject.lower()) or ""
        else:
            return None
        if node_uid not in self.nodes:
            return None
        try:
            claimed_at = int(claim.get("atUs") or 0)
        except (TypeError, ValueError):
            claimed_at = 0
        who = self._name(member)
        if kind == QUARANTINED_READINGS:
            check = Check(
                UNANCHORED,
                f"quarantined readings stay off-chain (never anchored): as {who} reports them",
            )
            return (
                kind,
                node_uid,
                claimed_at,
                str(claim.get("summary", ""))[:300],
                dict(details),
                check,
            )
        if kind == PARAMETER_DRIFT:
            return self._drift(member, node_uid, claimed_at, claim, details, records)
        evidence = [records[r] for r in refs if r in records]
        if not evidence:
            return None
        record = evidence[0]
        check = Check.of(record.verification, (record.record_id,))
        if kind == RULE_FIRING:
            return self._decision(member, node_uid, record, check)
        judged = judge(record.record_type, record.public)
        if (
            judged is None
            or judged[0] != kind
            or keys.canonical(subject_of(record.record_type, record.public) or "") != node_uid
        ):
            check = Check(
                FAILED,
                f"{who} claims {kind} but the record it serves does not say so",
                (record.record_id,),
            )
            return (
                kind,
                node_uid,
                record.observed_at_us,
                str(claim.get("summary", ""))[:300],
                {},
                check,
            )
        return (
            kind,
            node_uid,
            record.observed_at_us,
            judged[1],
            {"recordType": record.record_type, "record": record.record_id},
            check,
        )

    def _decision(
        self, member: str, node_uid: str, record: _Checked, check: Check
    ) -> tuple[str, str, int, str, dict[str, Any], Check]:
        public = record.public
        action = public.get("action") if isinstance(public.get("action"), Mapping) else {}
        assert isinstance(action, Mapping)
        summary = f"rule {public.get('rule_id', '?')} fired: {action.get('kind', '?')}"
        if record.record_type != DECISION:
            check = Check(FAILED, "not a decision record", check.records)
        else:
            try:
                decision = Decision.from_record(
                    StoredRecord(
                        record.record_id,
                        record.record_type,
                        record.observed_at_us,
                        public,
                        None,
                        "",
                    )
                )
                if decision.decision_hash != record.record_id:
                    check = Check(
                        FAILED, "the decision record does not hash to its id", check.records
                    )
            except ControlError as exc:
                check = Check(FAILED, str(exc), check.records)
        details = {
            "ruleId": public.get("rule_id"),
            "action": action.get("kind"),
            "record": record.record_id,
        }
        return RULE_FIRING, node_uid, record.observed_at_us, summary, details, check

    def _drift(
        self,
        member: str,
        node_uid: str,
        claimed_at: int,
        claim: Mapping[str, Any],
        details: Mapping[str, Any],
        records: Mapping[str, _Checked],
    ) -> tuple[str, str, int, str, dict[str, Any], Check]:
        evidence = details.get("evidence") if isinstance(details.get("evidence"), Mapping) else {}
        assert isinstance(evidence, Mapping)
        parts = {
            name: [str(r).lower() for r in evidence.get(name) or [] if isinstance(r, str)]
            for name in ("baseline", "run", "confirmation")
        }
        all_refs = tuple(dict.fromkeys(r for name in parts for r in parts[name]))
        source = str(details.get("source"))
        device = details.get("device") if isinstance(details.get("device"), str) else None
        parameter = str(details.get("parameter"))
        direction = 1 if details.get("direction") == 1 else -1
        who = self._name(member)
        summary = str(claim.get("summary", ""))[:300]
        shown = {
            "equipment": self.nodes[node_uid].id,
            "parameter": parameter,
            "device": device,
            "source": source,
            "unit": details.get("unit"),
            "direction": direction,
            "baseline": details.get("baseline"),
            "shift": details.get("shift"),
            "shiftSigma": details.get("shiftSigma"),
            "points": details.get("points"),
        }

        def failed(why: str) -> tuple[str, str, int, str, dict[str, Any], Check]:
            return (
                PARAMETER_DRIFT,
                node_uid,
                claimed_at,
                summary,
                shown,
                Check(FAILED, why, all_refs),
            )

        missing = [r for r in all_refs if r not in records]
        if missing or not parts["run"]:
            return failed(f"{who} did not serve {len(missing)} evidence record(s)")
        values: dict[str, list[float]] = {}
        for name, refs in parts.items():
            values[name] = []
            for ref in refs:
                value = point_value(records[ref].public, source, device, parameter)
                if value is None:
                    return failed(f"evidence record {ref} holds no {parameter} value")
                values[name].append(value)
        onset = records[parts["run"][0]].observed_at_us
        alarm = records[parts["run"][-1]].observed_at_us
        shown.update({"onsetAtUs": onset, "alarmAtUs": alarm, "onsetAtMs": onset // 1000})
        statuses = [records[r].verification for r in all_refs]
        status = worst([v.status for v in statuses])
        if status == FAILED:
            failing = [r for r in all_refs if records[r].verification.status == FAILED]
            detail = records[failing[0]].verification.detail
            return failed(
                f"{len(failing)} evidence record(s) do not verify, e.g. {failing[0]}: {detail}"
            )
        if evidence.get("runTruncated"):
            return (
                PARAMETER_DRIFT,
                node_uid,
                onset,
                summary,
                shown,
                Check(
                    worst([status, PENDING]),
                    f"the run from onset to alarm is longer than the evidence {who} served; "
                    "the onset is as it computed it",
                    all_refs,
                ),
            )
        problem = recheck(
            values["baseline"],
            values["run"],
            values["confirmation"],
            direction,
            self.t.options.drift,
        )
        if problem is not None:
            return failed(f"the evidence does not support the drift: {problem}")
        if claimed_at != onset:
            return failed(f"{who} claims the onset at {claimed_at} µs, its evidence at {onset}")
        if status != VERIFIED:
            bad = next(v for v in statuses if v.status == status)
            check = Check(status, f"evidence not verified: {bad.detail}", all_refs)
        else:
            base = baseline_of(values["baseline"], self.t.options.drift)
            after = values["run"] + values["confirmation"]
            shown["baseline"] = {
                "mean": base.mean,
                "sigma": base.sigma,
                "sigmaFloored": base.sigma_floored,
                "points": base.count,
            }
            shift = sum(after) / len(after) - base.mean
            shown["shift"], shown["shiftSigma"] = shift, shift / base.sigma
            summary = _drift_summary(shown, base.mean, shift, len(after))
            check = Check(
                VERIFIED,
                f"recomputed here from {len(all_refs)} records verified against the chain "
                f"(baseline {len(parts['baseline'])}, onset to alarm {len(parts['run'])}, "
                f"confirmation {len(parts['confirmation'])})",
                all_refs,
            )
        return PARAMETER_DRIFT, node_uid, onset, summary, shown, check

    def _supplier_node(self, customer: str, supplier: str) -> str | None:
        lots = sorted(
            n.uid
            for n in self.nodes.values()
            if n.owner == supplier and n.kind in _LOT_KINDS and customer in n.named_by.values()
        )
        return lots[0] if lots else None

    # -- names and owners --------------------------------------------------------------------

    def _owner_by_config(self, uid: str, partners_only: bool = False) -> str | None:
        gtin = keys.gtin_of(uid)
        if gtin is None:
            return None
        ownership = self.t.ownership
        if partners_only:
            digits = gtin[1:] if len(gtin) == 14 else gtin
            for prefix in sorted(ownership.partners, key=len, reverse=True):
                if digits.startswith(prefix):
                    return ownership.partners[prefix].lower()
            if ownership.prefixes and any(digits.startswith(p) for p in ownership.prefixes):
                return self.t.own.lower()
            return None
        owner = ownership.owner(gtin)
        return owner.lower() if owner else None

    def _name(self, member: str) -> str:
        log = self.members.get(member.lower())
        if log is not None and log.name:
            return log.name
        try:
            found = self.t.chain.member(member)
        except (ChainError, ConfigError, ContractRevertError):
            found = None
        if found is not None:
            log = self.members.setdefault(member.lower(), _MemberLog(member.lower()))
            log.name, log.role = found.name, found.role.label
            return found.name
        return member

    def _owner(self, member: str | None) -> Owner:
        if member is None:
            return Owner(None)
        name = self._name(member)
        log = self.members.get(member.lower())
        return Owner(member, name if name != member else None, log.role if log else None)
