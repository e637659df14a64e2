"""The consumer page: what a person sees after scanning a product's QR code or NFC tag.

:class:`ConsumerPage` is the default :class:`~node.api.rendering.PageRenderer` of
:func:`~node.api.app.create_app`. It renders the passport JSON of the request's tier (the same
document programs get) into one mobile-first page that needs no script: the product; a verified
badge on every value (who signed it, which block anchors it, whether its proof is valid) with a
link to its offline-checkable bundle; the bake temperature curve drawn as an SVG chart from the
curve blob the passport links (read from this node's blob store, checked against its SHA-256);
the inspection history; the supply chain, each upstream part with its owner and its verification,
or why it is unverified. Every value is escaped by the template engine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.api.pages_chart import CurveError, curve_svg, parse_curve
from node.api.pages_html import DASH, Html
from node.api.rendering import PageContext
from node.errors import QnodeError, RecordError
from node.oracles.units import unit_of

__all__ = ["BlobReader", "ConsumerPage", "ValueView", "value_views"]

log = logging.getLogger(__name__)

BlobReader = Callable[[str], bytes]
"""The bytes of the blob with this SHA-256 hex digest (checked), from this node's store."""

STATUS_TEXT = {
    "verified": "Verified",
    "pending": "Not yet verified",
    "failed": "Verification failed",
    "unavailable": "Unverified",
    "own": "Made here",
}
STATUS_ICON = {"verified": "✔", "pending": "…", "failed": "✘", "unavailable": "?", "own": "•"}
TIER_TEXT = {
    "public": "Public view: what anyone who scans the label sees.",
    "legitimate_interest": "Legitimate-interest view (repairers, recyclers, second-life "
    "operators): also the process setpoints, genealogy records and input identifiers.",
    "authority": "Authority view (market surveillance): also the supply-chain due diligence and "
    "incoming inspections.",
}
KIND_TEXT = {
    "material_lot": "material lot",
    "parent_lot": "intermediate lot",
    "equipment": "equipment",
    "process_step": "process step",
}
_LIST_LIMIT = 12
_PRODUCT: dict[str, Any] = {
    "name": None,
    "category": "",
    "model": "",
    "description": "",
    "attributes": {},
}
_SUMMARY: dict[str, int] = {"values": 0, "verified": 0, "pending": 0, "failed": 0, "unavailable": 0}


@dataclass(frozen=True)
class ValueView:
    """One value of the passport, ready for the page."""

    label: str
    value: str
    unit: str
    verdict: str | None
    details: tuple[tuple[str, str], ...]
    subject: str | None
    observed: str | None
    source: str
    record_id: str
    record_type: str
    status: str
    status_text: str
    icon: str
    detail: str
    signed_by: str | None
    anchored: str | None
    proof_valid: bool | None
    proof: str
    attestation: str | None
    blobs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ChartView:
    value: ValueView
    svg: str | None
    summary: str | None
    problem: str | None
    element_id: str


@dataclass(frozen=True)
class SupplyView:
    kind: str
    identifier: str | None
    gtin: str | None
    owner: str | None
    status: str
    status_text: str
    icon: str
    detail: str
    children: tuple[SupplyView, ...] = field(default=())


class ConsumerPage:
    """The consumer page renderer; ``blobs`` reads this node's blobs, ``own`` is its address."""

    def __init__(self, html: Html, blobs: Callable[[], BlobReader], own: Callable[[], str]) -> None:
        self.html = html
        self.blobs = blobs
        self.own = own

    def __call__(self, passport: Mapping[str, Any], context: PageContext) -> str:
        aspects: Mapping[str, Sequence[Mapping[str, Any]]] = passport.get("aspects") or {}
        issuer = passport.get("issuer") or {}
        process = list(aspects.get("process", ()))
        curves = [v for v in process if _type(v) == "bake_curve"]
        charts = [self._chart(v, i) for i, v in enumerate(curves)]
        inspections = sorted(
            aspects.get("inspections", ()), key=lambda v: str(v.get("observedAt") or ""),
            reverse=True,
        )  # fmt: skip
        product = {**_PRODUCT, **(passport.get("product") or {})}
        tier = str(passport.get("tier") or context.tier)
        summary = {**_SUMMARY, **(passport.get("summary") or {})}
        issuer = {"name": "", "role": "", **issuer}
        context_values = {
            "area": "consumer",
            "session": None,
            "title": str(product.get("name") or f"GTIN {passport.get('gtin')}"),
            "product": product,
            "attributes": [
                (_humanize(str(k)), _format(v))
                for k, v in (product.get("attributes") or {}).items()
            ],
            "identity": [
                (label, str(passport[name]))
                for label, name in (("GTIN", "gtin"), ("Lot", "lot"), ("Serial", "serial"))
                if passport.get(name)
            ],
            "issuer": issuer,
            "manufactured": passport.get("manufacturedAt"),
            "generated": passport.get("generatedAt"),
            "tier": tier,
            "tier_text": TIER_TEXT.get(tier, tier),
            "summary": summary,
            "charts": charts,
            "setpoints": value_views(v for v in process if _type(v) != "bake_curve"),
            "inspections": value_views(inspections),
            "materials": value_views(aspects.get("materials", ())),
            "carbon": value_views(aspects.get("carbonFootprint", ())),
            "due_diligence": value_views(aspects.get("dueDiligence", ())),
            "genealogy": value_views(aspects.get("supplyChain", ())),
            "supply": [_supply(n) for n in passport.get("supplyChain") or ()],
            "links": passport.get("links") or {},
            "linkset": context.linkset,
            "path": context.path,
            "canonical": passport.get("canonicalId"),
        }
        return self.html.text("consumer.html", context_values)

    def _chart(self, value: Mapping[str, Any], index: int) -> ChartView:
        view = value_views([value])[0]
        element_id = f"curve-{index + 1}"
        fields = value.get("value") if isinstance(value.get("value"), Mapping) else {}
        assert isinstance(fields, Mapping)
        digest = fields.get("curve_blob")
        own = str((value.get("source") or {}).get("member") or "").lower() == self.own().lower()
        if not isinstance(digest, str):
            return ChartView(view, None, None, "the record names no curve data", element_id)
        if not own:
            why = "the curve's data is kept by its owner: open its data file"
            return ChartView(view, None, None, why, element_id)
        try:
            curve = parse_curve(self.blobs()(digest), fields.get("sampling_ms"))
        except CurveError as exc:
            return ChartView(view, None, None, f"the curve cannot be drawn: {exc}", element_id)
        except QnodeError as exc:
            log.warning("bake curve %s: %s", digest, exc)
            return ChartView(view, None, None, "the curve's data is not available", element_id)
        title = f"{view.label} of {value.get('subject') or 'this product'}"
        svg = curve_svg(curve, title, element_id)
        return ChartView(view, svg, curve.summary(), None, element_id)


def value_views(values: Any) -> list[ValueView]:
    return [_view(v) for v in values]


def _type(value: Mapping[str, Any]) -> str:
    return str((value.get("record") or {}).get("type") or "")


def _view(value: Mapping[str, Any]) -> ValueView:
    verification = value.get("verification") or {}
    status = str(verification.get("status") or "unavailable")
    signature = verification.get("signature")
    anchor = verification.get("anchor")
    signed_by = None
    if isinstance(signature, Mapping):
        who = signature.get("memberName") or signature.get("member") or "an unknown member"
        signed_by = f"{who} (oracle key {signature.get('signer')})"
        if not signature.get("valid"):
            signed_by += ": the signature does not verify"
    source = value.get("source") or {}
    anchored = None
    proof_valid = None
    if isinstance(anchor, Mapping):
        block = anchor.get("blockNumber")
        anchored = f"block {block}" if block is not None else "a batch not yet on-chain"
        by = anchor.get("member")
        if isinstance(by, str) and by.lower() == str(source.get("member") or "").lower():
            anchored += f", by {source.get('name') or by}"
        elif by:
            anchored += f", by {by}"
        proof_valid = bool(anchor.get("proofValid"))
    links = value.get("links") or {}
    details = value.get("details") or {}
    verdict = details.get("verdict") if isinstance(details, Mapping) else None
    shown_details = tuple(
        (_humanize(str(k)), _format(v))
        for k, v in (details.items() if isinstance(details, Mapping) else ())
        if k != "verdict"
    )
    raw = value.get("value")
    blobs = tuple((str(k), str(v)) for k, v in (links.get("blobs") or {}).items())
    return ValueView(
        label=_humanize(str(value.get("label") or "value")),
        value=_format(raw),
        unit=_unit(value.get("unit")),
        verdict=str(verdict) if verdict is not None else None,
        details=shown_details,
        subject=value.get("subject"),
        observed=value.get("observedAt"),
        source=str(source.get("name") or source.get("member") or "unknown"),
        record_id=str((value.get("record") or {}).get("id") or ""),
        record_type=_humanize(_type(value)),
        status=status,
        status_text=STATUS_TEXT.get(status, status),
        icon=STATUS_ICON.get(status, "?"),
        detail=str(verification.get("detail") or ""),
        signed_by=signed_by,
        anchored=anchored,
        proof_valid=proof_valid,
        proof=str(links.get("proof") or ""),
        attestation=links.get("attestation"),
        blobs=blobs,
    )


def _supply(node: Mapping[str, Any]) -> SupplyView:
    owner = node.get("owner")
    owner_text = None
    if isinstance(owner, Mapping):
        owner_text = str(owner.get("name") or owner.get("member"))
        if owner.get("role"):
            owner_text += f" ({owner['role']})"
    status = str(node.get("status") or "unavailable")
    detail = str(node.get("detail") or "")
    if status in ("unavailable", "failed"):
        detail = f"unverified: {detail or 'no reason given'}"
    return SupplyView(
        kind=KIND_TEXT.get(str(node.get("kind")), _humanize(str(node.get("kind") or "input"))),
        identifier=node.get("id"),
        gtin=node.get("gtin"),
        owner=owner_text,
        status=status,
        status_text=STATUS_TEXT.get(status, status),
        icon=STATUS_ICON.get(status, "?"),
        detail=detail,
        children=tuple(_supply(c) for c in node.get("children") or ()),
    )


def _humanize(text: str) -> str:
    return text.replace("_", " ").strip()


_SYMBOLS = {"AMH": "Ah", "KWH": "kWh", "WHR": "Wh", "KGM": "kg", "P1": "%"}
"""Rec 20 codes a passport shows that the shop-floor unit table does not list."""


def _unit(code: Any) -> str:
    if not isinstance(code, str) or not code:
        return ""
    try:
        return unit_of(code).symbol
    except RecordError:
        return _SYMBOLS.get(code, code)


def _format(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        shown = [
            f"{_humanize(str(k))}: {_format(v)}"
            for k, v in value.items()
            if not str(k).endswith("_blob")
        ]
        return "; ".join(shown[:_LIST_LIMIT]) or "see the data file"
    if isinstance(value, list):
        return ", ".join(_format(v) for v in value[:_LIST_LIMIT]) + (
            " …" if len(value) > _LIST_LIMIT else ""
        )
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
