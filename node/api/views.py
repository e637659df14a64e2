"""How a record appears in a passport: its aspect, its label, its value, and the lowest access
tier that sees it (and may fetch its proof bundle).

Tiers gate whole records, not fields within them: a record's proof bundle carries all its public
fields, so a value shown to a tier implies its bundle may be. Private fields never reach a record's
public part (``node.offchain.classification``); personal field names are dropped here again, in
case a member's config ever classed one otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.api.access import Tier
from node.api.verification import Verification
from node.offchain.classification import PERSONAL_FIELDS
from node.oracles.attestor import ATTESTED_TYPES

ASPECTS = (
    "materials",
    "process",
    "inspections",
    "carbonFootprint",
    "dueDiligence",
    "supplyChain",
)


@dataclass(frozen=True)
class View:
    aspect: str
    tier: Tier
    label: str
    label_field: str | None = None
    value_field: str | None = None
    """None: the value is every shown public field but the subject, as an object."""
    unit_field: str | None = None
    extra_fields: tuple[str, ...] = ()
    subject_field: str | None = None


VIEWS: Mapping[str, View] = {
    "inspection": View(
        "inspections",
        Tier.PUBLIC,
        "inspection",
        "characteristic",
        "value",
        "unit",
        ("verdict",),
        "part_id",
    ),
    "lab_result": View(
        "inspections", Tier.PUBLIC, "lab result", "method", "value", "unit", ("verdict",), "sample"
    ),
    "bake_curve": View("process", Tier.PUBLIC, "bake temperature curve", subject_field="cell_id"),
    "setpoint": View(
        "process",
        Tier.LEGITIMATE_INTEREST,
        "setpoint",
        "parameter",
        "value",
        "unit",
        ("equipment",),
    ),
    "carbon_footprint": View(
        "carbonFootprint", Tier.PUBLIC, "carbon footprint", "stage", subject_field="product"
    ),
    "due_diligence": View(
        "dueDiligence", Tier.AUTHORITY, "due diligence", "scheme", subject_field="subject"
    ),
    "incoming_lot": View(
        "dueDiligence",
        Tier.AUTHORITY,
        "incoming inspection",
        "characteristic",
        "value",
        "unit",
        ("lsl", "usl", "supplier"),
        "lot",
    ),
    "genealogy": View("supplyChain", Tier.LEGITIMATE_INTEREST, "made from", subject_field="output"),
}
"""Record types a passport shows. A member may define further types in its config; only these
reach a passport (and their bundles the API)."""


@dataclass(frozen=True)
class PassportValue:
    aspect: str
    label: str
    subject: str | None
    value: Any
    unit: str | None
    details: Mapping[str, Any]
    observed_at_us: int
    record_id: str
    record_type: str
    source: str
    """The member whose record it is (its address)."""
    verification: Verification
    tier: Tier
    critical: bool
    blobs: tuple[str, ...] = ()
    """Fields holding a blob's SHA-256 (a curve, a report): served by the blob endpoint."""
    link_base: str = ""
    """Where its bundles are served: "" for this node, the owner's endpoint for upstream parts."""


def is_critical(record_type: str) -> bool:
    return record_type in ATTESTED_TYPES


def value_from_fields(
    record_type: str,
    record_id: str,
    observed_at_us: int,
    public: Mapping[str, Any],
    source: str,
    verification: Verification,
    aspect: str | None = None,
    link_base: str = "",
) -> PassportValue | None:
    view = VIEWS.get(record_type)
    if view is None:
        return None
    shown = {k: v for k, v in public.items() if k not in PERSONAL_FIELDS}
    label = view.label
    if view.label_field and isinstance(shown.get(view.label_field), str):
        label = str(shown[view.label_field])
    hidden = {view.subject_field, view.label_field, view.unit_field, *view.extra_fields}
    if view.value_field is not None:
        value = shown.get(view.value_field)
        hidden.add(view.value_field)
    else:
        value = {k: v for k, v in shown.items() if k not in hidden}
    details = {k: shown[k] for k in view.extra_fields if k in shown}
    unit = shown.get(view.unit_field) if view.unit_field else None
    subject = shown.get(view.subject_field) if view.subject_field else None
    blobs = tuple(sorted(k for k in shown if k.endswith("_blob") and isinstance(shown[k], str)))
    return PassportValue(
        aspect=aspect or view.aspect,
        label=label,
        subject=subject if isinstance(subject, str) else None,
        value=value,
        unit=unit if isinstance(unit, str) else None,
        details=details,
        observed_at_us=observed_at_us,
        record_id=record_id,
        record_type=record_type,
        source=source,
        verification=verification,
        tier=view.tier,
        critical=is_critical(record_type),
        blobs=blobs,
        link_base=link_base,
    )


def record_tier(record_type: str) -> Tier | None:
    """The lowest tier that sees records of this type; None: no passport shows them."""
    view = VIEWS.get(record_type)
    return None if view is None else view.tier
