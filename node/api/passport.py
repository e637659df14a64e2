"""The product passport: what this member knows about a product, lot or item, each value with its
verification status, and the upstream parts other members own, fetched and verified.

Aspects (in the spirit of the EU battery passport): general product information; material
composition and origin (``materials``: lab results on the material lots it was made from, and the
parts suppliers serve); process parameters (``process``: bake curves, the setpoints in effect on
its equipment when it was made); inspection and lab results (``inspections``); carbon footprint;
supply-chain due diligence (``dueDiligence``: incoming inspections, audits); and the supply chain
(``supplyChain``: the genealogy records, and the upstream tree).

:class:`PassportBuilder` builds a :class:`Passport` (every tier's values); :func:`passport_json`
writes the JSON of one tier. A passport lists what it was built from (``dependencies``) so a
cache can drop it when any of that changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from node.api.access import Tier
from node.api.catalogue import Catalogue, ProductKey, key_of
from node.api.peers import UpstreamPart, UpstreamSource
from node.api.verification import (
    FAILED,
    PENDING,
    UNAVAILABLE,
    VERIFIED,
    ChainView,
    Verification,
    Verifier,
)
from node.api.views import ASPECTS, PassportValue, is_critical, value_from_fields
from node.errors import ChainError, ConfigError
from node.offchain.genealogy import GenealogyTree, InputKind, upstream
from node.offchain.records import StoredRecord
from node.offchain.store import Store
from node.settings import ApiProductSettings, Settings

FORMAT = "qnode-passport/1"
_HIDDEN_KINDS = frozenset({InputKind.OPERATOR_COMMITMENT.value})
_LOT_KINDS = frozenset({InputKind.MATERIAL_LOT.value, InputKind.PARENT_LOT.value})
MAX_TREE_DEPTH = 16


@dataclass(frozen=True)
class SupplyNode:
    id: str
    kind: str
    gtin: str | None
    owner: str | None
    owner_name: str | None
    owner_role: str | None
    status: str
    detail: str
    children: tuple[SupplyNode, ...] = ()


@dataclass(frozen=True)
class Issuer:
    member: str
    name: str
    role: str


@dataclass(frozen=True)
class Passport:
    key: ProductKey
    uri: str
    canonical_uri: str
    issuer: Issuer
    product: ApiProductSettings | None
    manufactured_at_us: int | None
    values: tuple[PassportValue, ...]
    supply_chain: tuple[SupplyNode, ...]
    built_at_us: int
    record_ids: frozenset[str] = field(default=frozenset())
    keys: frozenset[ProductKey] = field(default=frozenset())
    equipment: frozenset[str] = field(default=frozenset())


class Ownership:
    """Which member owns a GTIN, by GS1 company prefix (``api.company_prefixes``, ``partners``)."""

    def __init__(self, settings: Settings, own_address: str) -> None:
        self.own = own_address
        self.prefixes = tuple(settings.api.company_prefixes)
        self.partners = dict(settings.api.partners)

    def owner(self, gtin: str) -> str | None:
        """The owning member's address; None when nobody configured claims it."""
        digits = gtin[1:] if len(gtin) == 14 else gtin  # the indicator digit is not the prefix
        for prefix in sorted(self.partners, key=len, reverse=True):
            if digits.startswith(prefix):
                return self.partners[prefix]
        if not self.prefixes or any(digits.startswith(p) for p in self.prefixes):
            return self.own
        return None

    def is_own(self, gtin: str) -> bool:
        owner = self.owner(gtin)
        return owner is not None and owner.lower() == self.own.lower()


class PassportBuilder:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalogue: Catalogue,
        verifier: Verifier,
        chain: ChainView,
        upstream_source: UpstreamSource | None,
        own_address: str,
        lock: threading.RLock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalogue = catalogue
        self.verifier = verifier
        self.chain = chain
        self.upstream_source = upstream_source
        self.ownership = Ownership(settings, own_address)
        self.own = own_address
        self.lock = lock

    def issuer(self) -> Issuer:
        try:
            member = self.chain.member(self.own)
        except (ChainError, ConfigError):
            member = None
        if member is None:
            return Issuer(self.own, self.settings.member.name, self.settings.member.role)
        return Issuer(self.own, member.name, member.role.label)

    def build(self, key: ProductKey) -> Passport:
        with self.lock:
            return self._build(key)

    def _build(self, key: ProductKey) -> Passport:
        catalogue = self.catalogue
        subjects = [key] + ([k] if (k := key.parent()) is not None and k.level == "lot" else [])
        tree_root, made_at = self._tree(key)
        keys: set[ProductKey] = set(subjects)
        equipment: set[str] = set()
        record_ids: dict[str, str | None] = {}  # id -> aspect override
        supply: list[SupplyNode] = []
        upstream_values: list[PassportValue] = []
        genealogy_ids: set[str] = set()
        if tree_root is not None:
            genealogy_ids.update(tree_root.record_ids)
            for child in tree_root.children:
                node = self._supply_node(
                    child, keys, equipment, record_ids, upstream_values, genealogy_ids
                )
                if node is not None:
                    supply.append(node)
        for subject in subjects:
            for record_id in catalogue.record_ids(subject):
                record_ids.setdefault(record_id, None)
        for record_id in genealogy_ids:
            record_ids.setdefault(record_id, None)
        setpoints = self._setpoints(equipment, made_at)
        for record_id in setpoints:
            record_ids.setdefault(record_id, None)
        records = self.store.records(sorted(record_ids)) if record_ids else []
        values = [
            v
            for record in records
            if (v := self._value(record, record_ids.get(record.record_id))) is not None
        ]
        values.extend(upstream_values)
        values.sort(key=lambda v: (ASPECTS.index(v.aspect), v.observed_at_us, v.record_id))
        link = key.link()
        return Passport(
            key=key,
            uri=link.uri(self.settings.api.resolver_domain),
            canonical_uri=link.canonical_uri(),
            issuer=self.issuer(),
            product=self.settings.api.products.get(key.gtin),
            manufactured_at_us=made_at,
            values=tuple(values),
            supply_chain=tuple(supply),
            built_at_us=time.time_ns() // 1000,
            record_ids=frozenset(record_ids),
            keys=frozenset(keys),
            equipment=frozenset(equipment),
        )

    def _tree(self, key: ProductKey) -> tuple[GenealogyTree | None, int | None]:
        """The upstream tree of the item (or, if it has none, of its lot) and when it was made."""
        for candidate in (key, key.parent()):
            if candidate is None or candidate.level == "product":
                continue
            for uri in sorted(self.catalogue.uris.get(candidate, ())):
                tree = upstream(self.store, uri, max_depth=MAX_TREE_DEPTH)
                if tree.children:
                    made = self.catalogue.made_by.get(candidate, [])
                    records = self.store.records(made[:1]) if made else []
                    return tree, (records[0].observed_at_us if records else None)
        return None, None

    def _supply_node(
        self,
        tree: GenealogyTree,
        keys: set[ProductKey],
        equipment: set[str],
        record_ids: dict[str, str | None],
        upstream_values: list[PassportValue],
        genealogy_ids: set[str],
    ) -> SupplyNode | None:
        if tree.kind in _HIDDEN_KINDS:
            return None
        genealogy_ids.update(tree.record_ids)
        children = tuple(
            node
            for child in tree.children
            if (
                node := self._supply_node(
                    child, keys, equipment, record_ids, upstream_values, genealogy_ids
                )
            )
            is not None
        )
        if tree.kind == InputKind.EQUIPMENT.value:
            equipment.add(tree.id)
            return SupplyNode(tree.id, tree.kind, None, self.own, None, None, "own", "")
        if tree.kind not in _LOT_KINDS:
            return SupplyNode(tree.id, tree.kind, None, None, None, None, "own", "", children)
        key = key_of(tree.id)
        if key is None:
            return SupplyNode(
                tree.id,
                tree.kind,
                None,
                None,
                None,
                None,
                FAILED,
                "not a GS1 Digital Link URI",
                children,
            )
        keys.add(key)
        owner = self.ownership.owner(key.gtin)
        if owner is not None and owner.lower() == self.own.lower():
            for record_id in self.catalogue.record_ids(key):
                record_ids.setdefault(record_id, "materials")
            return SupplyNode(
                tree.id, tree.kind, key.gtin, self.own, None, None, "own", "", children
            )
        if owner is None or self.upstream_source is None:
            why = (
                "no configured member owns its GS1 company prefix"
                if owner is None
                else ("upstream parts are not fetched by this node")
            )
            for record_id in self.catalogue.record_ids(key):
                record_ids.setdefault(record_id, "materials")
            return SupplyNode(
                tree.id, tree.kind, key.gtin, owner, None, None, UNAVAILABLE, why, children
            )
        part: UpstreamPart = self.upstream_source.part(owner, tree.id)
        upstream_values.extend(part.values)
        # what this member itself recorded about a supplier's lot (incoming inspection, lab)
        for record_id in self.catalogue.record_ids(key):
            record_ids.setdefault(record_id, "materials")
        return SupplyNode(
            tree.id,
            tree.kind,
            key.gtin,
            owner,
            part.owner_name,
            part.owner_role,
            part.status,
            part.detail,
            children,
        )

    def _setpoints(self, equipment: Iterable[str], made_at: int | None) -> list[str]:
        """The setpoints in effect on ``equipment`` when the product was made (the latest per
        parameter at or before then)."""
        ids = [i for name in equipment for i in self.catalogue.setpoints.get(name, ())]
        if not ids or made_at is None:
            return []
        latest: dict[tuple[str, str], StoredRecord] = {}
        for record in self.store.records(ids):
            if record.observed_at_us > made_at:
                continue
            slot = (str(record.public.get("equipment")), str(record.public.get("parameter")))
            if slot not in latest or latest[slot].observed_at_us < record.observed_at_us:
                latest[slot] = record
        return [r.record_id for r in latest.values()]

    def _value(self, record: StoredRecord, aspect: str | None) -> PassportValue | None:
        if aspect == "materials" and record.record_type not in ("lab_result", "inspection"):
            aspect = None  # incoming inspections, audits: keep their own aspect
        verification = self.verifier.verify(record, is_critical(record.record_type))
        return value_from_fields(
            record.record_type,
            record.record_id,
            record.observed_at_us,
            record.public,
            self.own,
            verification,
            aspect=aspect,
        )


# -- JSON ------------------------------------------------------------------------------------


def iso(timestamp_us: int | None) -> str | None:
    if timestamp_us is None:
        return None
    moment = datetime.fromtimestamp(timestamp_us / 1e6, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def passport_json(
    passport: Passport, tier: Tier, base: str, member_names: Mapping[str, str]
) -> dict[str, Any]:
    """The passport as one tier sees it; links are relative to ``base`` ("" for relative)."""
    values = [v for v in passport.values if v.tier <= tier]
    aspects: dict[str, list[dict[str, Any]]] = {aspect: [] for aspect in ASPECTS}
    counts = {VERIFIED: 0, PENDING: 0, FAILED: 0, UNAVAILABLE: 0}
    for value in values:
        aspects[value.aspect].append(_value_json(value, base, member_names))
        counts[value.verification.status] = counts.get(value.verification.status, 0) + 1
    key = passport.key
    product = passport.product
    path = key.link().uri("")
    return {
        "format": FORMAT,
        "id": passport.uri,
        "canonicalId": passport.canonical_uri,
        "level": key.level,
        "gtin": key.gtin,
        "lot": key.lot,
        "serial": key.serial,
        "tier": tier.label,
        "issuer": {
            "member": passport.issuer.member,
            "name": passport.issuer.name,
            "role": passport.issuer.role,
        },
        "generatedAt": iso(passport.built_at_us),
        "product": None
        if product is None
        else {
            "name": product.name,
            "category": product.category,
            "model": product.model,
            "description": product.description,
            "attributes": dict(product.attributes),
        },
        "manufacturedAt": iso(passport.manufactured_at_us),
        "summary": {"values": len(values), **counts},
        "aspects": aspects,
        "supplyChain": [
            _node_json(n, tier, member_names)
            for n in passport.supply_chain
            if tier >= Tier.LEGITIMATE_INTEREST or n.kind in _LOT_KINDS
        ],
        "links": {
            "self": base + path,
            "linkset": base + path + "?linkType=all",
            "verify": base + "/api/v1/verify",
        },
    }


def _value_json(value: PassportValue, base: str, names: Mapping[str, str]) -> dict[str, Any]:
    root = value.link_base or base
    record_path = f"{root}/api/v1/records/{value.record_id}"
    verification = value.verification
    return {
        "label": value.label,
        "value": value.value,
        "unit": value.unit,
        "details": dict(value.details),
        "subject": value.subject,
        "observedAt": iso(value.observed_at_us) if value.observed_at_us else None,
        "source": {"member": value.source, "name": names.get(value.source.lower())},
        "record": {"id": value.record_id, "type": value.record_type},
        "verification": _verification_json(verification),
        "links": {
            "proof": record_path + "/proof",
            "attestation": record_path + "/attestation" if value.critical else None,
            "blobs": {name: f"{record_path}/blobs/{name}" for name in value.blobs},
        },
    }


def _verification_json(verification: Verification) -> dict[str, Any]:
    anchor = verification.anchor
    signature = verification.signature
    return {
        "status": verification.status,
        "detail": verification.detail,
        "anchor": None
        if anchor is None
        else {
            "batchId": anchor.batch_id,
            "root": anchor.root,
            "chainId": anchor.chain_id,
            "contract": anchor.contract,
            "txHash": anchor.tx_hash,
            "blockNumber": anchor.block_number,
            "member": anchor.member,
            "proofValid": anchor.proof_valid,
        },
        "signature": None
        if signature is None
        else {
            "signer": signature.signer,
            "member": signature.member,
            "memberName": signature.member_name,
            "digest": signature.digest,
            "blockNumber": signature.block_number,
            "valid": signature.valid,
        },
    }


def _node_json(node: SupplyNode, tier: Tier, names: Mapping[str, str]) -> dict[str, Any]:
    """Public: what kind of input, its GTIN and owner; legitimate interest and above: its id."""
    detailed = tier >= Tier.LEGITIMATE_INTEREST
    shown_id = node.id if detailed else None
    return {
        "id": shown_id,
        "kind": node.kind,
        "gtin": node.gtin,
        "owner": None
        if node.owner is None
        else {
            "member": node.owner,
            "name": node.owner_name or names.get(node.owner.lower()),
            "role": node.owner_role,
        },
        "status": node.status,
        "detail": node.detail,
        "children": [
            _node_json(child, tier, names)
            for child in node.children
            if detailed or child.kind in _LOT_KINDS
        ],
    }
