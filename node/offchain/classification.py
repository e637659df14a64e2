"""Data classes: which fields of which record type are critical, anchored or private.

The class of every field is configuration, checked at ingestion: an unknown record type or field is
refused, and a private field can never be routed into a leaf or a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from node.errors import ConfigError, PrivacyError, RecordError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")

PERSONAL_FIELDS = (
    "operator_id",
    "operator_badge",
    "inspector_id",
    "employee_id",
    "biometric_template",
    "person_name",
    "email",
    "phone",
    "analyst_id",
)
"""Field names that are personal or biometric data in any record type; the config's
``privacy.always_private`` adds more, it cannot remove these."""


class DataClass(StrEnum):
    CRITICAL = "critical"  # the full value goes on-chain, signed by an oracle
    ANCHORED = "anchored"  # stays off-chain; its leaf is in a batch whose root is on-chain
    PRIVATE = "private"  # stays off-chain; on-chain at most a salted commitment


@dataclass(frozen=True)
class RecordType:
    name: str
    fields: Mapping[str, DataClass]

    def split(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(public fields, private fields) of ``values``; unknown fields are refused."""
        if not self.fields.keys() >= values.keys():
            unknown = ", ".join(sorted(values.keys() - self.fields.keys()))
            raise RecordError(f"record type {self.name!r} has no field(s) {unknown}")
        private_names = self.private_fields
        if not private_names:
            return dict(values), {}
        public = dict(values)
        private = {name: public.pop(name) for name in private_names if name in public}
        return public, private

    @cached_property
    def private_fields(self) -> frozenset[str]:
        return frozenset(n for n, c in self.fields.items() if c is DataClass.PRIVATE)

    def check_public(self, field_names: Iterable[str]) -> None:
        """Refuse to route any private field of this type into a leaf, transaction or log."""
        leaking = sorted(n for n in field_names if self.fields.get(n) is DataClass.PRIVATE)
        if leaking:
            raise PrivacyError(
                f"private field(s) {', '.join(leaking)} of record type {self.name!r} "
                "may not leave the store"
            )

    @property
    def critical_fields(self) -> tuple[str, ...]:
        return tuple(n for n, c in self.fields.items() if c is DataClass.CRITICAL)


@dataclass(frozen=True)
class Classification:
    types: Mapping[str, RecordType]

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Mapping[str, str]],
        always_private: Iterable[str] = (),
    ) -> Classification:
        """Record types from configuration. A field named in PERSONAL_FIELDS or ``always_private``
        (personal and biometric data) must be classed private wherever it appears: configuration
        cannot route it into a leaf or a transaction."""
        personal = frozenset(PERSONAL_FIELDS) | frozenset(always_private)
        types: dict[str, RecordType] = {}
        for name, fields in config.items():
            if not _NAME.fullmatch(name):
                raise ConfigError(f"record type name {name!r} must match {_NAME.pattern}")
            try:
                classes = {field: DataClass(value) for field, value in fields.items()}
            except ValueError as exc:
                choices = ", ".join(c.value for c in DataClass)
                raise ConfigError(f"record_types.{name}: {exc} (expected {choices})") from exc
            if not classes:
                raise ConfigError(f"record_types.{name}: a record type needs at least one field")
            for field, data_class in classes.items():
                if field in personal and data_class is not DataClass.PRIVATE:
                    raise ConfigError(
                        f"record_types.{name}.{field}: personal data must be private; "
                        f"it may not be routed on-chain as {data_class.value!r}"
                    )
            types[name] = RecordType(name, classes)
        return cls(types)

    def of(self, record_type: str) -> RecordType:
        try:
            return self.types[record_type]
        except KeyError:
            raise RecordError(f"unknown record type {record_type!r}") from None


DEFAULT_RECORD_TYPES: dict[str, dict[str, str]] = {
    "coating_thickness": {
        "line": "anchored",
        "station": "anchored",
        "thickness_um": "anchored",
        "operator_id": "private",
    },
    "bake_curve": {
        "cell_id": "anchored",
        "sampling_ms": "anchored",
        "curve_blob": "anchored",
        "operator_badge": "private",
    },
    # Critical types: their critical fields go on-chain in full (QualityLedger), EIP-712 signed.
    "inspection": {
        "part_id": "critical",
        "characteristic": "critical",
        "value": "critical",
        "unit": "critical",
        "verdict": "critical",
        "inspector_id": "private",
        "biometric_template": "private",
    },
    "setpoint": {
        "equipment": "critical",
        "parameter": "critical",
        "value": "critical",
        "unit": "critical",
        "reason": "anchored",
        "operator_id": "private",
    },
    "lab_result": {
        "sample": "critical",
        "method": "critical",
        "value": "critical",
        "unit": "critical",
        "verdict": "critical",
        "report_blob": "anchored",
        "analyst_id": "private",
    },
    "environment": {"area": "anchored", "temperature_c": "anchored", "humidity_pct": "anchored"},
    "measurement": {
        "device": "anchored",
        "seq": "anchored",
        "sent_at": "anchored",
        "source": "anchored",
        "quality": "anchored",
        "points": "anchored",
        # signed messages only: the ed25519 signature (hex) and the exact bytes it covers
        "signature": "anchored",
        "signed_message": "anchored",
    },
    # A product or lot made from inputs (EPCIS TransformationEvent); see node/offchain/genealogy.py.
    "genealogy": {
        "output": "anchored",
        "inputs": "anchored",
        "process_step": "anchored",
        "equipment": "anchored",
        "operator_id": "private",
    },
    # A supplier's lot at incoming inspection: one characteristic against its limits. Recorded
    # on-chain too (SupplierQuality.recordLot), where the consecutive out-of-spec count is kept.
    "incoming_lot": {
        "supplier": "anchored",
        "part": "anchored",
        "characteristic": "anchored",
        "lot": "anchored",
        "value": "anchored",
        "unit": "anchored",
        "lsl": "anchored",
        "usl": "anchored",
        "inspector_id": "private",
    },
    # An automated decision and its whole path, so that an auditor can replay it: the rule and
    # its file's hash, the inputs (record ids and content hashes), thresholds, computed values,
    # the action taken and the key that signed it. Its hash goes on-chain with the action.
    "decision": {
        "rule_id": "anchored",
        "rule_hash": "anchored",
        "inputs": "anchored",
        "thresholds": "anchored",
        "computed": "anchored",
        "action": "anchored",
        "signer": "anchored",
    },
    # A contingency plan, one record per review (its observation time is the review); the
    # resilience dashboard's freshness counts from the latest review of each plan_id.
    "contingency_plan": {
        "plan_id": "anchored",
        "title": "anchored",
        "scope": "anchored",
        "version": "anchored",
        "review_interval_days": "anchored",
        "document_blob": "anchored",
        "reviewer_id": "private",
    },
    # Items packed into (or unpacked from) a logistic unit (EPCIS AggregationEvent).
    "packing": {
        "parent": "anchored",
        "children": "anchored",
        "action": "anchored",
        "operator_id": "private",
    },
}
"""Record types known out of the box; a member's config can add or replace them."""
