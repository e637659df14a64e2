"""What the trace counts as an anomaly, and how a record is judged.

Kinds, each with the record or on-chain fact it comes from:

- ``inspection_failed``: an ``inspection`` whose verdict is not a pass;
- ``lab_result_failed``: a ``lab_result`` whose verdict is not a pass;
- ``incoming_out_of_spec``: an ``incoming_lot`` whose value is outside ``[lsl, usl]``;
- ``parameter_drift``: an equipment parameter's series (setpoints, or a device's measurements)
  drifting from its baseline (:mod:`node.trace.drift`);
- ``quarantined_readings``: readings of an equipment's devices refused into the quarantine;
- ``rule_firing``: a ``decision`` record (a rule fired) about an equipment, its devices or a
  supplier;
- ``supplier_hold`` and ``corrective_action_open``: SupplierQuality holds and open 8D cases between
  a customer and a supplier on the path (read from the chain).

Causes and effects: a drift, a rule firing, a hold or quarantined readings say something went wrong
in a process or with a supplier (a *cause* kind); failed inspections and out-of-spec results say a
product or lot came out wrong (an *effect* kind, or the *symptom* at the traced product).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

INSPECTION_FAILED = "inspection_failed"
LAB_RESULT_FAILED = "lab_result_failed"
INCOMING_OUT_OF_SPEC = "incoming_out_of_spec"
PARAMETER_DRIFT = "parameter_drift"
QUARANTINED_READINGS = "quarantined_readings"
RULE_FIRING = "rule_firing"
SUPPLIER_HOLD = "supplier_hold"
CORRECTIVE_ACTION_OPEN = "corrective_action_open"

EFFECT_KINDS = frozenset({INSPECTION_FAILED, LAB_RESULT_FAILED, INCOMING_OUT_OF_SPEC})
CAUSE_KINDS = frozenset(
    {PARAMETER_DRIFT, QUARANTINED_READINGS, RULE_FIRING, SUPPLIER_HOLD, CORRECTIVE_ACTION_OPEN}
)

SUBJECT_FIELDS: Mapping[str, str] = {
    "inspection": "part_id",
    "lab_result": "sample",
    "incoming_lot": "lot",
}
"""Record types that judge a product or lot, and the field naming it."""

PASSING_VERDICTS = frozenset(
    {"pass", "passed", "ok", "good", "conform", "conforming", "accept", "accepted", "in_spec"}
)

TITLES: Mapping[str, str] = {
    INSPECTION_FAILED: "inspection failed",
    LAB_RESULT_FAILED: "lab result failed",
    INCOMING_OUT_OF_SPEC: "incoming lot out of spec",
    PARAMETER_DRIFT: "process parameter drift",
    QUARANTINED_READINGS: "quarantined readings",
    RULE_FIRING: "rule fired",
    SUPPLIER_HOLD: "supplier on hold",
    CORRECTIVE_ACTION_OPEN: "8D case open",
}


def judge(record_type: str, public: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, why) when a record of a judging type says its subject is bad; None otherwise."""
    if record_type in ("inspection", "lab_result"):
        verdict = public.get("verdict")
        if not isinstance(verdict, str) or verdict.strip().lower() in PASSING_VERDICTS:
            return None
        kind = INSPECTION_FAILED if record_type == "inspection" else LAB_RESULT_FAILED
        what = public.get("characteristic") or public.get("method") or record_type
        return kind, f"{what}: {_value(public)} — verdict {verdict!r}"
    if record_type == "incoming_lot":
        value = _number(public.get("value"))
        lsl, usl = _number(public.get("lsl")), _number(public.get("usl"))
        if value is None:
            return None
        if usl is not None and value > usl:
            side = f"above the USL {_plain(usl)}"
        elif lsl is not None and value < lsl:
            side = f"below the LSL {_plain(lsl)}"
        else:
            return None
        what = public.get("characteristic") or "value"
        return INCOMING_OUT_OF_SPEC, f"{what}: {_value(public)}, {side}"
    return None


def subject_of(record_type: str, public: Mapping[str, Any]) -> str | None:
    field = SUBJECT_FIELDS.get(record_type)
    value = public.get(field) if field else None
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: float) -> str:
    return f"{value:g}"


def _value(public: Mapping[str, Any]) -> str:
    value, unit = public.get("value"), public.get("unit")
    number = _number(value)
    shown = _plain(number) if number is not None else str(value)
    return f"{shown} {unit}" if isinstance(unit, str) and unit else shown
