"""Quality rules without code: a YAML rule file, read with line-accurate errors, reloaded while
the node runs, and evaluated incrementally against the data stream.

The format and the exact semantics (consecutive counts, re-arming, months, signals) are in
docs/rules.md. In short:

* :func:`load_rules` / :func:`parse_rules` read a file into a :class:`RuleSet` or raise
  :class:`~node.errors.RuleError` naming the file and line (from the YAML node marks).
* :class:`RuleBook` holds the current rule set and swaps it when the file changes; a bad new
  file is refused (``last_error``) and the running rules stay in force.
* :class:`RuleEngine` observes records (as :mod:`node.control.observations`) and returns
  :class:`~node.control.decisions.Firing` s. Its state (subgroup buffers, counters, windows,
  monthly counts, armed flags) is saved to and loaded from the ``rule_state`` table, so that a
  restarted node goes on counting; :func:`commit_firings` writes the decision records, their
  action requests and that state in one transaction.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import string
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import orjson
import yaml
from sqlalchemy import Connection, bindparam, delete, select

from node.control.decisions import Firing, firings
from node.control.observations import IncomingLot, Inspection, Measurement, Observation, Signal
from node.control.outbox import ActionOutbox
from node.control.redlines import ARMED, RedLines
from node.control.rule_metrics import (
    GLOBAL_SCOPE,
    Amount,
    Comparator,
    CpkSpec,
    CvSpec,
    DefectRateSpec,
    Devices,
    Evidence,
    LeafSpec,
    LotsSpec,
    ReadingSpec,
    SignalSpec,
    Threshold,
    Tracker,
    scope_fields,
)
from node.errors import ControlError, RuleError
from node.offchain.models import Base, RecordRow, RuleStateRow
from node.offchain.records import StoredRecord
from node.offchain.store import Store, now_us
from node.oracles.units import UNITS, Dimension, unit_of

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SIGNAL_NAME = RULE_ID
RULE_STATE = Base.metadata.tables[RuleStateRow.__tablename__]
RECORDS = Base.metadata.tables[RecordRow.__tablename__]
_MAX_SCOPE_CHARS = 300


# -- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


Condition = AllOf | AnyOf | LeafSpec


def condition_json(condition: Condition) -> dict[str, Any]:
    """A condition as data: ``{"all": [...]}``, ``{"any": [...]}`` or ``{"metric": ...}``."""
    if isinstance(condition, AllOf):
        return {"all": [condition_json(c) for c in condition.conditions]}
    if isinstance(condition, AnyOf):
        return {"any": [condition_json(c) for c in condition.conditions]}
    return {"metric": condition.metric, **condition.parameters()}


def describe_condition(condition: Condition) -> str:
    if isinstance(condition, AllOf | AnyOf):
        joiner = " AND " if isinstance(condition, AllOf) else " OR "
        return joiner.join(f"({describe_condition(c)})" for c in condition.conditions)
    return condition.describe()


def describe_action(action: Action) -> str:
    if isinstance(action, Compensate):
        return (
            f"compensate {action.line} {action.parameter} by {action.delta} "
            f"(bounds {action.minimum} .. {action.maximum})"
        )
    if isinstance(action, HoldSupplier):
        return f"hold supplier {action.supplier} ({action.part}, {action.characteristic})"
    if isinstance(action, Task):
        return f"task for {action.assignee}: {action.title} (due in {action.due_us / 86400e6:g} d)"
    if isinstance(action, StopLine):
        return f"stop line {action.line}: {action.reason}"
    return f"emit {action.signal}"


def condition_leaves(condition: Condition, path: str = "when") -> Iterator[tuple[str, LeafSpec]]:
    """(path, leaf) of every leaf, paths as in decisions (``when.all[1]``)."""
    if isinstance(condition, AllOf | AnyOf):
        combinator = "all" if isinstance(condition, AllOf) else "any"
        for index, child in enumerate(condition.conditions):
            yield from condition_leaves(child, f"{path}.{combinator}[{index}]")
    else:
        yield path, condition


def _fill(template: str, fields: Mapping[str, str]) -> str:
    try:
        return template.format_map(fields)
    except (KeyError, ValueError) as exc:  # the reader checks templates; a bug if it happens
        raise ControlError(f"cannot fill {template!r} from {dict(fields)}: {exc}") from exc


@dataclass(frozen=True)
class Compensate:
    """A bounded line compensation: ``delta`` must lie within ``[minimum, maximum]``."""

    kind: ClassVar[str] = "compensate"
    line: str
    parameter: str
    delta: Amount
    minimum: Amount
    maximum: Amount

    def resolve(self, fields: Mapping[str, str], fired_at_us: int) -> dict[str, Any]:
        unit = self.delta.unit
        assert unit is not None
        return {
            "kind": self.kind,
            "line": _fill(self.line, fields),
            "parameter": _fill(self.parameter, fields),
            "delta": self.delta.value,
            "unit": unit,
            "bounds": {"min": self.minimum.to(unit), "max": self.maximum.to(unit)},
        }


@dataclass(frozen=True)
class HoldSupplier:
    kind: ClassVar[str] = "hold_supplier"
    supplier: str = "{supplier}"
    part: str = "{part}"
    characteristic: str = "{characteristic}"

    def resolve(self, fields: Mapping[str, str], fired_at_us: int) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "supplier": _fill(self.supplier, fields),
            "part": _fill(self.part, fields),
            "characteristic": _fill(self.characteristic, fields),
        }


@dataclass(frozen=True)
class Task:
    kind: ClassVar[str] = "task"
    assignee: str
    title: str
    due_us: int
    detail: str = ""

    def resolve(self, fields: Mapping[str, str], fired_at_us: int) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "assignee": _fill(self.assignee, fields),
            "title": _fill(self.title, fields),
            "detail": _fill(self.detail, fields),
            "due_s": self.due_us // 1_000_000,
            "due_at_us": fired_at_us + self.due_us,
        }


@dataclass(frozen=True)
class StopLine:
    kind: ClassVar[str] = "stop_line"
    line: str
    reason: str = "red line {rule}"

    def resolve(self, fields: Mapping[str, str], fired_at_us: int) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "line": _fill(self.line, fields),
            "reason": _fill(self.reason, fields),
        }


@dataclass(frozen=True)
class Emit:
    kind: ClassVar[str] = "emit"
    signal: str

    def resolve(self, fields: Mapping[str, str], fired_at_us: int) -> dict[str, Any]:
        return {"kind": self.kind, "signal": self.signal}


Action = Compensate | HoldSupplier | Task | StopLine | Emit
ACTIONS: Mapping[str, type[Action]] = {
    a.kind: a for a in (Compensate, HoldSupplier, Task, StopLine, Emit)
}


@dataclass(frozen=True)
class Rule:
    id: str
    condition: Condition
    actions: tuple[Action, ...]
    description: str = ""
    line: int = 0
    """Where the rule starts in its file (1-based)."""

    @property
    def is_red_line(self) -> bool:
        return isinstance(self.condition, ReadingSpec)

    @property
    def single_leaf(self) -> bool:
        return isinstance(self.condition, LeafSpec)

    def condition_json(self) -> dict[str, Any]:
        return condition_json(self.condition)

    def fingerprint(self) -> str:
        return orjson.dumps(self.condition_json(), option=orjson.OPT_SORT_KEYS).decode()

    def resolved_actions(self, scope: str, fired_at_us: int) -> list[dict[str, Any]]:
        """The rule's actions with ``{field}`` templates filled from ``scope``."""
        fields = {**scope_fields(scope), "rule": self.id}
        return [action.resolve(fields, fired_at_us) for action in self.actions]

    def emits(self) -> tuple[str, ...]:
        return tuple(a.signal for a in self.actions if isinstance(a, Emit))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    digest: str
    """sha256 of the file's bytes, "0x" + hex: every decision carries it as ``rule_hash``."""
    path: str | None = None
    quantities: Mapping[str, str] = field(default_factory=dict)
    """Quantity -> canonical unit code, as the file declares them (and the node's config)."""

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise ControlError(f"no rule {rule_id!r} in {self.path or 'the rule set'}")

    @property
    def red_lines(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.is_red_line)


# -- reading the file --------------------------------------------------------------------------


def load_rules(path: Path, quantity_units: Mapping[str, str] | None = None) -> RuleSet:
    """Read and check a rule file. ``quantity_units`` (quantity -> unit code, e.g. from
    ``oracles.quantities``) adds quantities the file does not declare itself."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read the rule file: {exc.strerror or exc}"
        raise RuleError(reason, None, str(path)) from exc
    return parse_rules(data, str(path), quantity_units)


def parse_rules(
    data: bytes, path: str | None = None, quantity_units: Mapping[str, str] | None = None
) -> RuleSet:
    digest = "0x" + hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RuleError("the rule file is not UTF-8 text", line, path) from exc
    root = _compose(text, path)
    return _Reader(path, quantity_units or {}).rule_set(root, digest)


@dataclass(frozen=True)
class _Node:
    """A composed YAML value with its line (1-based) and, for a mapping, each key's line."""

    value: Any
    line: int
    keys: Mapping[str, int] = field(default_factory=dict)


def _compose(text: str, path: str | None) -> _Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise RuleError("the rule file is empty", 1, path)
        return _Composer(path).convert(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise RuleError(f"YAML syntax error: {problem}", _line(mark), path) from exc
    except yaml.YAMLError as exc:
        raise RuleError(f"YAML syntax error: {exc}", None, path) from exc


def _line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


class _Composer:
    """YAML nodes to :class:`_Node` s, scalars resolved by the safe loader's rules. Aliases are
    refused: a rule file has no use for them, and expanding them can blow up."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.loader = yaml.SafeLoader("")
        self.seen: set[int] = set()

    def convert(self, node: yaml.Node, used_at: int | None = None) -> _Node:
        line = node.start_mark.line + 1
        if id(node) in self.seen:  # an alias: the node's own mark is the anchor's
            where = used_at if used_at is not None else line
            raise RuleError("YAML anchors and aliases are not supported here", where, self.path)
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, line)
        if isinstance(node, yaml.SequenceNode):
            return _Node([self.convert(item) for item in node.value], line)
        return _Node(self.loader.construct_object(node), line)

    def _mapping(self, node: yaml.MappingNode, line: int) -> _Node:
        values: dict[str, _Node] = {}
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self.loader.construct_object(key_node) if key_node.tag != "!" else None
            if not isinstance(key, str):
                raise RuleError(f"keys must be names, got {_describe(key)}", key_line, self.path)
            if key in values:
                first = keys[key]
                message = f"duplicate key {key!r} (first at line {first})"
                raise RuleError(message, key_line, self.path)
            keys[key] = key_line
            # A block value starts on the line after its key; the key is where a reader looks.
            values[key] = replace(self.convert(value_node, key_line), line=key_line)
        return _Node(values, line, keys)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


_AMOUNT = re.compile(r"\s*([-+\u2212]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)?\s*")
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")
_DURATION_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SYMBOLS = {unit.symbol.lower(): code for code, unit in UNITS.items()}
_COMPARATORS = tuple(c.value for c in Comparator)
_METRICS = (
    "all",
    "any",
    "cv",
    "lots_out_of_spec",
    "cpk",
    "defect_rate_change",
    "reading",
    "signal",
)
_LIMIT_SIDES = ("usl", "lsl", "either")


@dataclass
class _Pending:
    """What can only be checked once every rule is read (signals, templates)."""

    signal_uses: list[tuple[int, str, int]] = field(default_factory=list)
    """(rule index, signal name, line) of every signal condition."""
    emit_lines: dict[tuple[int, str], int] = field(default_factory=dict)
    templates: list[tuple[int, str, str, int]] = field(default_factory=list)
    """(rule index, what, template, line)."""


class _Reader:
    """Checks the composed file and builds the rule set; every error names its line."""

    def __init__(self, path: str | None, quantity_units: Mapping[str, str]) -> None:
        self.path = path
        self.quantities: dict[str, str] = dict(quantity_units)
        self.pending = _Pending()
        self.rule_index = 0

    def fail(self, message: str, line: int | None) -> NoReturn:
        raise RuleError(message, line, self.path)

    # -- structure ------------------------------------------------------------------------

    def mapping(
        self,
        node: _Node,
        what: str,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
    ) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            self.fail(f"{what} must be a mapping, got {_describe(node.value)}", node.line)
        allowed = (*required, *optional)
        for key, line in node.keys.items():
            if key not in allowed:
                self.fail(
                    f"unknown key {key!r} in {what} (expected {', '.join(allowed)})"
                    + _did_you_mean(key, allowed),
                    line,
                )
        for key in required:
            if key not in node.value:
                self.fail(f"{what} needs {key!r}", node.line)
        values: dict[str, _Node] = node.value
        return values

    def single_key(self, node: _Node, what: str, choices: Sequence[str]) -> tuple[str, _Node, int]:
        if not isinstance(node.value, dict) or len(node.value) != 1:
            got = _describe(node.value)
            if isinstance(node.value, dict):
                got = f"{len(node.value)} keys ({', '.join(node.value) or 'none'})"
            self.fail(
                f"{what} must be a mapping with one of {', '.join(choices)}; got {got}", node.line
            )
        ((key, value),) = node.value.items()
        return key, value, node.keys[key]

    def list_of(self, node: _Node, what: str, may_be_empty: bool = False) -> list[_Node]:
        if isinstance(node.value, dict):
            return [node]  # one item may be written without the list
        if not isinstance(node.value, list) or not (node.value or may_be_empty):
            self.fail(f"{what} must be a non-empty list, got {_describe(node.value)}", node.line)
        items: list[_Node] = node.value
        return items

    # -- scalars -----------------------------------------------------------------------------

    def name(self, node: _Node, what: str, pattern: re.Pattern[str] | None = None) -> str:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{what} must be a non-empty string, got {_describe(node.value)}", node.line)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(f"{what} {value!r} must match {pattern.pattern}", node.line)
        return value

    def integer(self, node: _Node, what: str, minimum: int, maximum: int = 10**9) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{what} must be an integer, got {_describe(value)}", node.line)
        if not minimum <= value <= maximum:
            self.fail(f"{what} must be between {minimum} and {maximum}, got {value}", node.line)
        return value

    def boolean(self, node: _Node, what: str) -> bool:
        if not isinstance(node.value, bool):
            self.fail(f"{what} must be true or false, got {_describe(node.value)}", node.line)
        return node.value

    def patterns(self, node: _Node | None, what: str) -> tuple[str, ...]:
        if node is None:
            return ("*",)
        items = node.value if isinstance(node.value, list) else [node]
        if not items:
            self.fail(f"{what} must name at least one pattern", node.line)
        return tuple(self.name(item, what) for item in items)

    def duration_us(self, node: _Node, what: str) -> int:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value * 1_000_000
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.fail(
                f"{what} must be a duration such as 90m, 12h, 7d or 2w (or seconds), "
                f"got {_describe(value)}",
                node.line,
            )
        return int(match.group(1)) * _DURATION_S[match.group(2)] * 1_000_000

    def amount(self, node: _Node, what: str) -> Amount:
        """``0.8 P1``, ``{value: 0.8, unit: P1}`` or a plain number."""
        value = node.value
        if isinstance(value, dict):
            parts = self.mapping(node, what, ("value",), ("unit",))
            number = self.number(parts["value"], f"{what}.value")
            unit_node = parts.get("unit")
            unit = None if unit_node is None else self.unit(unit_node, f"{what}.unit")
            return Amount(number, unit)
        if isinstance(value, str):
            match = _AMOUNT.fullmatch(value)
            if match is None:
                self.fail(
                    f"{what} must be a number and a UN/ECE Rec 20 unit code such as "
                    f"'0.8 P1', got {value!r}",
                    node.line,
                )
            number = float(match.group(1).replace("\u2212", "-"))
            code = match.group(2)
            return Amount(number, None if code is None else self.unit(_Node(code, node.line), what))
        return Amount(self.number(node, what))

    def number(self, node: _Node, what: str) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{what} must be a number, got {_describe(value)}", node.line)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(f"{what} must be a finite number, got {value}", node.line)
        return float(value)

    def unit(self, node: _Node, what: str) -> str:
        code = node.value
        if not isinstance(code, str):
            self.fail(
                f"{what}: a unit must be a UN/ECE Rec 20 code, got {_describe(code)}", node.line
            )
        if code not in UNITS:
            hint = _SYMBOLS.get(code.lower())
            suggestion = f"; {code!r} is {hint}" if hint else _did_you_mean(code, UNITS)
            self.fail(
                f"unknown unit {code!r} in {what}: not a UN/ECE Rec 20 code the node "
                f"converts{suggestion}",
                node.line,
            )
        return code

    def measured(self, node: _Node, what: str, quantity: str | None) -> Amount:
        """An amount with a unit, of the quantity's dimension when the quantity is declared."""
        amount = self.amount(node, what)
        if amount.unit is None:
            example = self.quantities.get(quantity or "", "MMT")
            self.fail(f"{what} needs a unit: write e.g. '{amount.value:g} {example}'", node.line)
        declared = self.quantities.get(quantity or "")
        if declared is not None:
            self.same_dimension(amount, declared, f"quantity {quantity}", what, node.line)
        return amount

    def ratio(self, node: _Node, what: str) -> Amount:
        amount = self.amount(node, what)
        if amount.unit is None:
            self.fail(
                f"{what} needs a ratio unit: write e.g. '{amount.value:g} P1' (percent) "
                f"or '{amount.value:g} C62' (a fraction)",
                node.line,
            )
        if amount.dimension is not Dimension.RATIO:
            unit = unit_of(amount.unit)
            self.fail(
                f"unit {unit.code} ({unit.name}) is a {unit.dimension}; {what} is a ratio "
                "(P1 percent or C62 one)",
                node.line,
            )
        return amount

    def same_dimension(
        self, amount: Amount, other_code: str, other_what: str, what: str, line: int
    ) -> None:
        assert amount.unit is not None
        unit, other = unit_of(amount.unit), unit_of(other_code)
        if unit.dimension is not other.dimension:
            self.fail(
                f"unit {unit.code} ({unit.name}) is a {unit.dimension}, but {other_what} "
                f"is a {other.dimension} ({other.code}, {other.name}) in {what}",
                line,
            )

    def threshold(
        self, values: Mapping[str, _Node], node: _Node, what: str, kind: str, quantity: str | None
    ) -> Threshold:
        given = [key for key in _COMPARATORS if key in values]
        if not given:
            self.fail(f"{what} needs a threshold: one of {', '.join(_COMPARATORS)}", node.line)
        if len(given) > 1:
            self.fail(
                f"{what} has {len(given)} thresholds ({', '.join(given)}); give one", node.line
            )
        key = given[0]
        limit_node = values[key]
        limit_what = f"{what}.{key}"
        if kind == "ratio":
            limit = self.ratio(limit_node, limit_what)
        elif kind == "index":
            limit = self.amount(limit_node, limit_what)
            if limit.unit is not None:
                self.fail(
                    f"{limit_what} is a plain number (an index), not {limit}", limit_node.line
                )
        else:
            limit = self.measured(limit_node, limit_what, quantity)
        return Threshold(Comparator(key), limit)

    # -- the file ------------------------------------------------------------------------------

    def rule_set(self, root: _Node, digest: str) -> RuleSet:
        top = self.mapping(root, "the rule file", ("rules",), ("version", "quantities"))
        if "version" in top:
            self.integer(top["version"], "version", FORMAT_VERSION, FORMAT_VERSION)
        if "quantities" in top:
            self.read_quantities(top["quantities"])
        rules = []
        for index, node in enumerate(self.list_of(top["rules"], "rules", may_be_empty=True)):
            self.rule_index = index
            rules.append(self.rule(node))
        self.check_ids(rules, top["rules"])
        self.check_signals(rules)
        self.check_templates(rules)
        return RuleSet(tuple(rules), digest, self.path, dict(self.quantities))

    def read_quantities(self, node: _Node) -> None:
        values = self.mapping(node, "quantities", optional=tuple(node.keys))
        for name, unit_node in values.items():
            self.quantities[name] = self.unit(unit_node, f"quantities.{name}")

    def rule(self, node: _Node) -> Rule:
        values = self.mapping(node, "a rule", ("id", "when", "then"), ("description",))
        rule_id = self.name(values["id"], "rule id", RULE_ID)
        what = f"rule {rule_id}"
        description = ""
        if "description" in values:
            description = self.name(values["description"], f"{what}: description")
        condition = self.condition(values["when"], f"{what}: when", top=True)
        actions = tuple(
            self.action(item, f"{what}: then")
            for item in self.list_of(values["then"], f"{what}: then")
        )
        return Rule(rule_id, condition, actions, description, node.line)

    # -- conditions ----------------------------------------------------------------------------

    def condition(self, node: _Node, what: str, top: bool = False) -> Condition:
        key, value, line = self.single_key(node, f"{what} (a condition)", _METRICS)
        where = f"{what}.{key}"
        if key in ("all", "any"):
            children = self.list_of(value, where)
            parts = tuple(
                self.condition(child, f"{where}[{i}]") for i, child in enumerate(children)
            )
            return AllOf(parts) if key == "all" else AnyOf(parts)
        if key == "cv":
            return self.cv(value, where)
        if key == "lots_out_of_spec":
            return self.lots(value, where)
        if key == "cpk":
            return self.cpk(value, where)
        if key == "defect_rate_change":
            return self.defect_rate(value, where)
        if key == "reading":
            if not top:
                self.fail(
                    f"{where}: a reading condition is a red line and must be its rule's whole "
                    "condition (chain it with emit and signal instead)",
                    line,
                )
            return self.reading(value, where)
        if key == "signal":
            return self.signal(value, where)
        self.fail(
            f"unknown metric {key!r} in {what} (expected one of {', '.join(_METRICS)})"
            + _did_you_mean(key, _METRICS),
            line,
        )

    def devices(self, values: Mapping[str, _Node], what: str) -> Devices:
        quantity = self.name(values["quantity"], f"{what}.quantity")
        patterns = self.patterns(values.get("devices"), f"{what}.devices")
        per_device = False
        if "per_device" in values:
            per_device = self.boolean(values["per_device"], f"{what}.per_device")
        return Devices(quantity, patterns, per_device)

    def cv(self, node: _Node, what: str) -> CvSpec:
        values = self.mapping(
            node,
            what,
            ("quantity", "subgroup_size", "consecutive"),
            ("devices", "per_device", *_COMPARATORS),
        )
        devices = self.devices(values, what)
        size = self.integer(values["subgroup_size"], f"{what}.subgroup_size", 2, 1000)
        consecutive = self.integer(values["consecutive"], f"{what}.consecutive", 1, 10_000)
        threshold = self.threshold(values, node, what, "ratio", None)
        return CvSpec(devices, size, threshold, consecutive)

    def lots(self, node: _Node, what: str) -> LotsSpec:
        values = self.mapping(
            node, what, ("limit", "consecutive"), ("suppliers", "parts", "characteristics")
        )
        limit = self.name(values["limit"], f"{what}.limit")
        if limit not in _LIMIT_SIDES:
            self.fail(
                f"{what}.limit must be one of {', '.join(_LIMIT_SIDES)}, got {limit!r}",
                values["limit"].line,
            )
        return LotsSpec(
            limit,
            self.integer(values["consecutive"], f"{what}.consecutive", 1, 10_000),
            self.patterns(values.get("suppliers"), f"{what}.suppliers"),
            self.patterns(values.get("parts"), f"{what}.parts"),
            self.patterns(values.get("characteristics"), f"{what}.characteristics"),
        )

    def cpk(self, node: _Node, what: str) -> CpkSpec:
        values = self.mapping(
            node,
            what,
            ("quantity", "window"),
            ("devices", "per_device", "lsl", "usl", *_COMPARATORS),
        )
        devices = self.devices(values, what)
        window = self.integer(values["window"], f"{what}.window", 2, 100_000)
        lsl = usl = None
        if "lsl" in values:
            lsl = self.measured(values["lsl"], f"{what}.lsl", devices.quantity)
        if "usl" in values:
            usl = self.measured(values["usl"], f"{what}.usl", devices.quantity)
        if lsl is None and usl is None:
            self.fail(f"{what} needs a specification limit: lsl, usl or both", node.line)
        if lsl is not None and usl is not None:
            assert lsl.unit is not None and usl.unit is not None
            self.same_dimension(usl, lsl.unit, "the lsl", f"{what}.usl", values["usl"].line)
            if usl.to(lsl.unit) <= lsl.value:
                self.fail(f"{what}: usl {usl} must be above lsl {lsl}", values["usl"].line)
        threshold = self.threshold(values, node, what, "index", None)
        return CpkSpec(devices, window, lsl, usl, threshold)

    def defect_rate(self, node: _Node, what: str) -> DefectRateSpec:
        values = self.mapping(
            node,
            what,
            ("process",),
            ("min_inspections", "defect_verdicts", "good_verdicts", *_COMPARATORS),
        )
        processes = self.patterns(values["process"], f"{what}.process")
        minimum = 1
        if "min_inspections" in values:
            minimum = self.integer(values["min_inspections"], f"{what}.min_inspections", 1)
        defects: tuple[str, ...] = ("fail",)
        good: tuple[str, ...] = ("pass",)
        if "defect_verdicts" in values:
            defects = self.verdicts(values["defect_verdicts"], f"{what}.defect_verdicts")
        if "good_verdicts" in values:
            good = self.verdicts(values["good_verdicts"], f"{what}.good_verdicts")
        if set(defects) & set(good):
            self.fail(
                f"{what}: a verdict cannot be both a defect and good "
                f"({', '.join(sorted(set(defects) & set(good)))})",
                node.line,
            )
        threshold = self.threshold(values, node, what, "ratio", None)
        return DefectRateSpec(processes, threshold, minimum, defects, good)

    def verdicts(self, node: _Node, what: str) -> tuple[str, ...]:
        return tuple(v.strip().lower() for v in self.patterns(node, what))

    def reading(self, node: _Node, what: str) -> ReadingSpec:
        values = self.mapping(node, what, ("quantity",), ("devices", "absolute", *_COMPARATORS))
        devices = self.devices(values, what)
        threshold = self.threshold(values, node, what, "measured", devices.quantity)
        absolute = False
        if "absolute" in values:
            absolute = self.boolean(values["absolute"], f"{what}.absolute")
        if absolute and threshold.limit.dimension is Dimension.TEMPERATURE:
            self.fail(
                f"{what}: absolute compares |value|, which means nothing for a temperature "
                "(its zero depends on the unit)",
                values["absolute"].line,
            )
        return ReadingSpec(Devices(devices.quantity, devices.patterns, True), threshold, absolute)

    def signal(self, node: _Node, what: str) -> SignalSpec:
        if isinstance(node.value, dict):
            values = self.mapping(node, what, ("name",), ("within",))
            name = self.name(values["name"], f"{what}.name", SIGNAL_NAME)
            within = 0
            if "within" in values:
                within = self.duration_us(values["within"], f"{what}.within")
        else:
            name, within = self.name(node, what, SIGNAL_NAME), 0
        self.pending.signal_uses.append((self.rule_index, name, node.line))
        return SignalSpec(name, within)

    # -- actions -------------------------------------------------------------------------------

    def action(self, node: _Node, what: str) -> Action:
        kinds = tuple(ACTIONS)
        key, value, line = self.single_key(node, f"{what} (an action)", kinds)
        where = f"{what}.{key}"
        if key == "compensate":
            return self.compensate(value, where, line)
        if key == "hold_supplier":
            return self.hold_supplier(value, where, line)
        if key == "task":
            return self.task(value, where)
        if key == "stop_line":
            return self.stop_line(value, where)
        if key == "emit":
            signal = self.name(value, where, SIGNAL_NAME)
            self.pending.emit_lines.setdefault((self.rule_index, signal), line)
            return Emit(signal)
        self.fail(
            f"unknown action {key!r} in {what} (expected one of {', '.join(kinds)})"
            + _did_you_mean(key, kinds),
            line,
        )

    def template(self, node: _Node, what: str) -> str:
        text = self.name(node, what)
        self.pending.templates.append((self.rule_index, what, text, node.line))
        return text

    def compensate(self, node: _Node, what: str, line: int) -> Compensate:
        if isinstance(node.value, dict) and "bounds" not in node.value:
            self.fail(
                f"unbounded compensation: {what} needs bounds {{min, max}} for its delta", line
            )
        values = self.mapping(node, what, ("line", "parameter", "delta", "bounds"))
        delta = self.measured(values["delta"], f"{what}.delta", None)
        bounds_node = values["bounds"]
        bounds = self.mapping(bounds_node, f"{what}.bounds", ("min", "max"))
        low = self.measured(bounds["min"], f"{what}.bounds.min", None)
        high = self.measured(bounds["max"], f"{what}.bounds.max", None)
        assert delta.unit is not None
        for bound, key in ((low, "min"), (high, "max")):
            self.same_dimension(
                bound, delta.unit, "the delta", f"{what}.bounds.{key}", bounds[key].line
            )
        minimum, maximum = low.to(delta.unit), high.to(delta.unit)
        if minimum > maximum:
            self.fail(f"{what}.bounds: min {low} is above max {high}", bounds_node.line)
        if not minimum <= delta.value <= maximum:
            self.fail(
                f"unbounded compensation: delta {delta} is outside its bounds {low} .. {high}",
                values["delta"].line,
            )
        return Compensate(
            self.template(values["line"], f"{what}.line"),
            self.template(values["parameter"], f"{what}.parameter"),
            delta,
            low,
            high,
        )

    def hold_supplier(self, node: _Node, what: str, line: int) -> HoldSupplier:
        given: dict[str, str] = {}
        if node.value is not None:
            values = self.mapping(node, what, (), ("supplier", "part", "characteristic"))
            given = {key: self.template(value, f"{what}.{key}") for key, value in values.items()}
        hold = HoldSupplier(**given)
        for key in ("supplier", "part", "characteristic"):
            if key not in given:
                self.pending.templates.append(
                    (self.rule_index, f"{what}.{key}", getattr(hold, key), line)
                )
        return hold

    def task(self, node: _Node, what: str) -> Task:
        values = self.mapping(node, what, ("assignee", "title", "due"), ("detail",))
        detail = ""
        if "detail" in values:
            detail = self.template(values["detail"], f"{what}.detail")
        return Task(
            self.template(values["assignee"], f"{what}.assignee"),
            self.template(values["title"], f"{what}.title"),
            self.duration_us(values["due"], f"{what}.due"),
            detail,
        )

    def stop_line(self, node: _Node, what: str) -> StopLine:
        values = self.mapping(node, what, ("line",), ("reason",))
        line = self.template(values["line"], f"{what}.line")
        if "reason" not in values:
            return StopLine(line)
        return StopLine(line, self.template(values["reason"], f"{what}.reason"))

    # -- checks across rules ------------------------------------------------------------------

    def check_ids(self, rules: Sequence[Rule], node: _Node) -> None:
        first: dict[str, int] = {}
        for rule in rules:
            if rule.id in first:
                self.fail(
                    f"duplicate rule id {rule.id!r} (first at line {first[rule.id]})", rule.line
                )
            first[rule.id] = rule.line

    def check_signals(self, rules: Sequence[Rule]) -> None:
        emitters: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            for signal in rule.emits():
                emitters.setdefault(signal, []).append(index)
        listeners: dict[int, set[str]] = {}
        for index, name, line in self.pending.signal_uses:
            if name not in emitters:
                self.fail(
                    f"signal {name!r} is emitted by no rule" + _did_you_mean(name, emitters), line
                )
            listeners.setdefault(index, set()).add(name)
        cycle = _find_cycle(rules, emitters, listeners)
        if cycle:
            path = (
                " -> ".join(f"rule {rules[i].id} emits {signal}" for i, signal in cycle)
                + f" -> rule {rules[cycle[0][0]].id}"
            )
            start, signal = cycle[0]
            self.fail(
                f"rules form a cycle through their signals: {path}",
                self.pending.emit_lines.get((start, signal), rules[start].line),
            )

    def check_templates(self, rules: Sequence[Rule]) -> None:
        fields = _template_fields(rules)
        for index, what, text, line in self.pending.templates:
            allowed = fields[index] | {"rule"}
            for name in self.placeholders(text, what, line):
                if name not in allowed:
                    available = ", ".join("{" + n + "}" for n in sorted(allowed))
                    self.fail(
                        f"{what}: {{{name}}} is not known in rule {rules[index].id} "
                        f"(available: {available})",
                        line,
                    )

    def placeholders(self, text: str, what: str, line: int) -> list[str]:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.fail(f"{what}: malformed template {text!r} ({exc}; write {{{{ or }}}})", line)
        names = []
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                self.fail(f"{what}: {{{name}}} must be a plain field name such as {{device}}", line)
            names.append(name)
        return names


def _template_fields(rules: Sequence[Rule]) -> list[frozenset[str]]:
    """The scope fields each rule's actions may use: a single condition's scope fields; for a
    signal, those every emitter of it has; none for all/any (their scope is global)."""
    emitters: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        for signal in rule.emits():
            emitters.setdefault(signal, []).append(index)
    known: dict[int, frozenset[str]] = {}

    def fields_of(index: int) -> frozenset[str]:  # recursion ends: cycles were refused
        if index not in known:
            condition = rules[index].condition
            if isinstance(condition, SignalSpec):
                sets = [fields_of(i) for i in emitters.get(condition.name, [])]
                known[index] = frozenset.intersection(*sets) if sets else frozenset()
            elif isinstance(condition, LeafSpec):
                known[index] = condition.scope_names
            else:
                known[index] = frozenset()
        return known[index]

    return [fields_of(index) for index in range(len(rules))]


def _find_cycle(
    rules: Sequence[Rule], emitters: Mapping[str, list[int]], listeners: Mapping[int, set[str]]
) -> list[tuple[int, str]]:
    """A cycle as [(rule index, signal it emits), ...], starting at its first rule in file
    order; empty if there is none."""
    edges: dict[int, list[tuple[str, int]]] = {}
    for target, names in listeners.items():
        for name in sorted(names):
            for source in emitters.get(name, []):
                edges.setdefault(source, []).append((name, target))
    for start in range(len(rules)):
        found = _cycle_from(start, edges)
        if found:
            return found
    return []


def _cycle_from(start: int, edges: Mapping[int, list[tuple[str, int]]]) -> list[tuple[int, str]]:
    stack: list[tuple[int, list[tuple[int, str]]]] = [(start, [])]
    visited: set[int] = set()
    while stack:
        node, path = stack.pop()
        for name, target in edges.get(node, []):
            step = [*path, (node, name)]
            if target == start:
                return step
            if target not in visited:
                visited.add(target)
                stack.append((target, step))
    return []


# -- reloading -------------------------------------------------------------------------------


class RuleBook:
    """The rule set in force, reloaded from its file when the file changes.

    ``reload_if_changed`` looks at the file's modification time, size and inode; when they
    moved it hashes the bytes, and only a new hash is read. A new file that fails to read is
    refused: its RuleError is kept in ``last_error`` and logged once, and the rules in force
    stay in force until a good file replaces it.
    """

    def __init__(self, path: Path, quantity_units: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.quantity_units = dict(quantity_units or {})
        self.current = load_rules(path, self.quantity_units)
        self.last_error: RuleError | None = None
        self._stamp = self._stat()
        self._refused_digest: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def reload_if_changed(self) -> bool:
        """True when a new rule set came into force."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._refuse(
                RuleError(f"cannot read the rule file: {exc}", None, str(self.path)), None
            )
        digest = "0x" + hashlib.sha256(data).hexdigest()
        if digest == self.current.digest:
            self.last_error = None
            return False
        if digest == self._refused_digest:
            return False
        try:
            rules = parse_rules(data, str(self.path), self.quantity_units)
        except RuleError as exc:
            return self._refuse(exc, digest)
        self.current, self.last_error, self._refused_digest = rules, None, None
        log.info("rules reloaded from %s (%d rules, %s)", self.path, len(rules.rules), digest)
        return True

    def _refuse(self, error: RuleError, digest: str | None) -> bool:
        self.last_error, self._refused_digest = error, digest
        log.error("new rule file refused, the rules in force stay: %s", error)
        return False


# -- evaluation ------------------------------------------------------------------------------


@dataclass
class _Leaf:
    path: str
    spec: LeafSpec
    tracker: Tracker[Any]
    fingerprint: str


class _RuleRuntime:
    """One (non red-line) rule's trackers and armed flags."""

    def __init__(self, rule: Rule, previous: _RuleRuntime | None) -> None:
        self.rule = rule
        self.condition = rule.condition_json()
        self.fingerprint = rule.fingerprint()
        self.leaves: dict[str, _Leaf] = {}
        for path, spec in condition_leaves(rule.condition):
            fingerprint = spec.fingerprint()
            kept = previous.leaves.get(path) if previous is not None else None
            if kept is not None and kept.fingerprint == fingerprint:
                self.leaves[path] = _Leaf(path, spec, kept.tracker, fingerprint)
            else:
                self.leaves[path] = _Leaf(path, spec, spec.tracker(), fingerprint)
        same = previous is not None and previous.fingerprint == self.fingerprint
        self.disarmed: set[str] = set(previous.disarmed) if same and previous else set()
        self.dirty: set[str] = set()

    def evaluate(
        self,
        leaf: _Leaf,
        leaf_scope: str,
        now_us: int,
        rule_hash: str,
        signer: str | None,
        may_fire: bool = True,
    ) -> list[Firing]:
        if self.rule.single_leaf:
            scope = leaf_scope
            chosen: dict[str, str | None] = {
                leaf.path: leaf_scope if leaf.tracker.holds(leaf_scope, now_us) else None
            }
        else:
            scope = GLOBAL_SCOPE
            chosen = {
                path: next(iter(item.tracker.holding_scopes(now_us)), None)
                for path, item in self.leaves.items()
            }
        if not _tree_holds(self.rule.condition, "when", chosen):
            if scope in self.disarmed:
                self.disarmed.discard(scope)
                self.dirty.add(scope)
            return []
        if scope in self.disarmed or not may_fire:
            return []
        self.disarmed.add(scope)
        self.dirty.add(scope)
        evidence: dict[str, Evidence | None] = {
            path: None if found is None else self.leaves[path].tracker.evidence(found, now_us)
            for path, found in chosen.items()
        }
        return firings(
            rule_id=self.rule.id,
            rule_hash=rule_hash,
            scope=scope,
            fired_at_us=now_us,
            condition=self.condition,
            evidence=evidence,
            actions=self.rule.resolved_actions(scope, now_us),
            signer=signer,
        )


def _tree_holds(condition: Condition, path: str, chosen: Mapping[str, str | None]) -> bool:
    if isinstance(condition, AllOf):
        return all(
            _tree_holds(c, f"{path}.all[{i}]", chosen) for i, c in enumerate(condition.conditions)
        )
    if isinstance(condition, AnyOf):
        return any(
            _tree_holds(c, f"{path}.any[{i}]", chosen) for i, c in enumerate(condition.conditions)
        )
    return chosen[path] is not None


Listener = tuple[_RuleRuntime, _Leaf]


class RuleEngine:
    """Evaluates a rule set against observations, one at a time, deterministically.

    ``observe`` takes observations in stream order (feed records in the order they were stored)
    and returns the firings, in order. Within one observation red lines come first, then the
    other rules in file order; the signals a firing emits are observed right after the
    observation that caused them, before the next one.

    Red-line rules run in ``red_lines`` (:class:`~node.control.redlines.RedLines`), whose
    ``check`` is the ingest fast path; ``observe`` calls it too, so call one or the other for a
    given measurement.
    """

    def __init__(self, rules: RuleSet, signer: str | None = None) -> None:
        self.signer = signer
        self.rules = rules
        self.red_lines = RedLines((), rules.digest, signer)
        self._runtimes: dict[str, _RuleRuntime] = {}
        self._by_quantity: dict[str, list[Listener]] = {}
        self._by_signal: dict[str, list[Listener]] = {}
        self._lots: list[Listener] = []
        self._inspections: list[Listener] = []
        self.use(rules)

    def use(self, rules: RuleSet) -> None:
        """Put ``rules`` in force. A condition unchanged since the rule set before (same rule
        id, same place, same parameters) keeps its running state; a changed one starts afresh."""
        old_red = {line.rule.id: line for line in self.red_lines.lines}
        self.rules = rules
        self.red_lines = RedLines(rules.red_lines, rules.digest, self.signer)
        for line in self.red_lines.lines:
            kept = old_red.get(line.rule.id)
            if kept is not None and kept.fingerprint == line.fingerprint:
                line.disarmed = set(kept.disarmed)
        previous = self._runtimes
        self._runtimes = {
            rule.id: _RuleRuntime(rule, previous.get(rule.id))
            for rule in rules.rules
            if not rule.is_red_line
        }
        self._index()

    def _index(self) -> None:
        self._by_quantity, self._by_signal = {}, {}
        self._lots, self._inspections = [], []
        for runtime in self._runtimes.values():
            for leaf in runtime.leaves.values():
                spec = leaf.spec
                if isinstance(spec, CvSpec | CpkSpec):
                    self._by_quantity.setdefault(spec.devices.quantity, []).append((runtime, leaf))
                elif isinstance(spec, LotsSpec):
                    self._lots.append((runtime, leaf))
                elif isinstance(spec, DefectRateSpec):
                    self._inspections.append((runtime, leaf))
                elif isinstance(spec, SignalSpec):
                    self._by_signal.setdefault(spec.name, []).append((runtime, leaf))

    def quantities(self) -> frozenset[str]:
        """The quantities the rules in force read (of measurements): the rest need not reach
        the engine."""
        red = {line.spec.devices.quantity for line in self.red_lines.lines}
        return frozenset(self._by_quantity) | frozenset(red)

    def follow(self, book: RuleBook) -> bool:
        """Reload ``book`` if its file changed and put the new rules in force."""
        if book.reload_if_changed():
            self.use(book.current)
            return True
        return False

    def observe(self, observations: Iterable[Observation]) -> list[Firing]:
        fired: list[Firing] = []
        for observation in observations:
            queue: deque[Observation] = deque([observation])
            while queue:
                found = self._observe_one(queue.popleft())
                fired.extend(found)
                queue.extend(s for f in found if (s := f.signal()) is not None)
        return fired

    def _observe_one(self, observation: Observation) -> list[Firing]:
        now = observation.observed_at_us
        if isinstance(observation, Measurement):
            fired = self.red_lines.check(observation)
            for index, point in enumerate(observation.points):
                for runtime, leaf in self._by_quantity.get(point[0], ()):
                    fired.extend(self._update(runtime, leaf, observation, index, now))
            return fired
        fired = []
        if isinstance(observation, Signal):
            for runtime, leaf in self._by_signal.get(observation.name, ()):
                # Time alone can end a signal's window: look before the new signal lands, so
                # that a rule whose condition cleared meanwhile re-arms.
                runtime.evaluate(
                    leaf, observation.scope, now, self.rules.digest, self.signer, may_fire=False
                )
                fired.extend(self._update(runtime, leaf, observation, 0, now))
            return fired
        listeners = self._lots if isinstance(observation, IncomingLot) else self._inspections
        assert isinstance(observation, IncomingLot | Inspection)
        for runtime, leaf in listeners:
            fired.extend(self._update(runtime, leaf, observation, 0, now))
        return fired

    def _update(
        self, runtime: _RuleRuntime, leaf: _Leaf, observation: Observation, point: int, now: int
    ) -> list[Firing]:
        scope = leaf.tracker.observe(observation, point)
        if scope is None:
            return []
        return runtime.evaluate(leaf, scope, now, self.rules.digest, self.signer)

    # -- state -------------------------------------------------------------------------------

    def save_state(self, connection: Connection) -> int:
        """Write the state that changed since the last save (inside the caller's transaction);
        returns the number of rows written."""
        rows = list(self._dirty_rows())
        if not rows:
            return 0
        connection.execute(
            delete(RULE_STATE).where(
                RULE_STATE.c.rule_id == bindparam("r"), RULE_STATE.c.scope == bindparam("s")
            ),
            [{"r": rule_id, "s": key} for rule_id, key, _ in rows],
        )
        stamp = now_us()
        connection.execute(
            RULE_STATE.insert(),
            [
                {"rule_id": rule_id, "scope": key, "state_json": text, "updated_at_us": stamp}
                for rule_id, key, text in rows
            ],
        )
        return len(rows)

    def _dirty_rows(self) -> Iterator[tuple[str, str, str]]:
        for runtime in self._runtimes.values():
            rule_id = runtime.rule.id
            for leaf in runtime.leaves.values():
                tracker = leaf.tracker
                for scope in sorted(tracker.dirty):
                    state = tracker.dump(tracker.states[scope])
                    yield _row(rule_id, leaf.path, scope, leaf.fingerprint, {"state": state})
                tracker.dirty.clear()
            for scope in sorted(runtime.dirty):
                armed = scope not in runtime.disarmed
                yield _row(rule_id, ARMED, scope, runtime.fingerprint, {"armed": armed})
            runtime.dirty.clear()
        for line in self.red_lines.lines:
            for device in sorted(line.dirty):
                armed = device not in line.disarmed
                yield _row(
                    line.rule.id,
                    ARMED,
                    line.scope(device),
                    line.fingerprint,
                    {"armed": armed, "device": device},
                )
            line.dirty.clear()

    def load_state(self, connection: Connection) -> int:
        """Take up the saved state of the rules in force (state saved for a condition that has
        changed since is left aside); returns the number of rows taken up."""
        ids = [rule.id for rule in self.rules.rules]
        rows = connection.execute(
            select(RULE_STATE.c.rule_id, RULE_STATE.c.scope, RULE_STATE.c.state_json).where(
                RULE_STATE.c.rule_id.in_(ids)
            )
        ).all()
        red = {line.rule.id: line for line in self.red_lines.lines}
        taken = 0
        for rule_id, key, text in rows:
            path = key.split("|", 1)[0]
            data = orjson.loads(text)
            runtime = self._runtimes.get(rule_id)
            if runtime is not None:
                taken += _load_rule_row(runtime, path, data)
            elif (
                rule_id in red and path == ARMED and data["fingerprint"] == red[rule_id].fingerprint
            ):
                if not data["armed"]:
                    red[rule_id].disarmed.add(data["device"])
                taken += 1
        return taken


def _row(
    rule_id: str, path: str, scope: str, fingerprint: str, payload: Mapping[str, Any]
) -> tuple[str, str, str]:
    key = f"{path}|{scope}"
    if len(key) > _MAX_SCOPE_CHARS:
        key = f"{path}|sha256:{hashlib.sha256(scope.encode()).hexdigest()}"
    text = orjson.dumps({"fingerprint": fingerprint, "scope": scope, **payload}).decode()
    return rule_id, key, text


def _load_rule_row(runtime: _RuleRuntime, path: str, data: Mapping[str, Any]) -> int:
    scope = data["scope"]
    if path == ARMED:
        if data["fingerprint"] != runtime.fingerprint:
            return 0
        if data["armed"]:
            runtime.disarmed.discard(scope)
        else:
            runtime.disarmed.add(scope)
        return 1
    leaf = runtime.leaves.get(path)
    if leaf is None or leaf.fingerprint != data["fingerprint"]:
        return 0
    leaf.tracker.load(scope, data["state"])
    return 1


def commit_firings(store: Store, engine: RuleEngine, fired: Sequence[Firing]) -> list[StoredRecord]:
    """In one transaction: the decision records of ``fired`` (one already stored is not stored
    again), their action requests (idempotent by key) and the engine's changed state."""
    with store.transaction() as connection:
        ids = sorted({f.decision.record_id for f in fired})
        stored_ids = set()
        if ids:
            stored_ids = {
                row[0]
                for row in connection.execute(
                    select(RECORDS.c.record_id).where(RECORDS.c.record_id.in_(ids))
                )
            }
        inputs = []
        for firing in fired:
            record_id = firing.decision.record_id
            if record_id not in stored_ids:
                stored_ids.add(record_id)
                inputs.append(firing.decision.to_record_input())
        records = store.write_records(connection, inputs)
        requests = [request for firing in fired for request in firing.action_requests()]
        ActionOutbox(store).enqueue(connection, requests)
        engine.save_state(connection)
    return records
