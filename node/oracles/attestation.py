"""EIP-712 attestations of critical records: inspection results, setpoints and lab results.

An oracle key signs a record's typed data under QualityLedger's domain; the signed record travels as
a JSON *bundle* (domain, types with EIP712Domain, primaryType, message, signature, signer, and the
lab co-signatures) from which any EIP-712 library recovers the signer, e.g. ethers v6
``verifyTypedData(domain, types-without-EIP712Domain, message, signature)``.

Signing is the hot path (thousands per second): type hashes and the domain separator are computed
once, a struct is encoded by byte concatenation and hashed with :func:`node.hashing.keccak256`, and
the digest is signed with coincurve directly. :func:`reference_digest` computes the same digest with
eth_account's generic encoder; the tests hold the two equal.

Values are fixed-point (``value / 10**decimals``), converted from :class:`~decimal.Decimal` without
float error. Timestamps are unix microseconds, as in the off-chain store. Personal fields can never
reach the typed data: a field named in ``PERSONAL_FIELDS`` or classed private is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from functools import cached_property
from typing import Any, cast

import coincurve
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address
from sqlalchemy import Connection, insert, select, update

from node.errors import AttestationError, PrivacyError, StoreError
from node.hashing import keccak256
from node.offchain.classification import PERSONAL_FIELDS, RecordType
from node.offchain.models import AttestationRow, Base
from node.offchain.records import StoredRecord
from node.offchain.store import Store, now_us

__all__ = [
    "BUNDLE_FORMAT",
    "DOMAIN_TYPE",
    "LEDGER_NAME",
    "LEDGER_VERSION",
    "MAX_DECIMALS",
    "RECORD_FIELD_MAPS",
    "SCHEMAS",
    "Attestation",
    "AttestationKind",
    "AttestationSigner",
    "AttestationStatus",
    "CoSignature",
    "LedgerDomain",
    "RecordSchema",
    "StoredAttestation",
    "Verdict",
    "attestations_with_status",
    "build_typed_data",
    "fields_from_record",
    "from_fixed_point",
    "load_attestation",
    "load_stored_attestation",
    "mark_confirmed",
    "mark_failed",
    "mark_submitted",
    "parse_bundle",
    "recover_signer",
    "reference_digest",
    "save_attestation",
    "to_fixed_point",
    "verify_bundle",
    "write_attestation",
]

LEDGER_NAME = "QualityLedger"
LEDGER_VERSION = "1"
BUNDLE_FORMAT = "qnode-attestation/1"
MAX_DECIMALS = 77
"""Beyond 77 decimals no int256 value has an integer part: more is a caller's mistake."""

DOMAIN_TYPE: tuple[tuple[str, str], ...] = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
)
_DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_INT256_MIN, _INT256_MAX = -(2**255), 2**255 - 1
_UINT_MAX = {"uint8": 2**8 - 1, "uint64": 2**64 - 1, "uint256": 2**256 - 1}
_WORD_MASK = 2**256 - 1
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class AttestationKind(StrEnum):
    INSPECTION = "inspection"
    SETPOINT = "setpoint"
    LAB_RESULT = "lab_result"


class Verdict(IntEnum):
    """``IQualityLedger.Verdict``; signed as its ``uint8`` value."""

    PASS = 0
    FAIL = 1
    CONDITIONAL = 2
    INCONCLUSIVE = 3

    @classmethod
    def parse(cls, value: object) -> Verdict:
        try:
            if isinstance(value, str):
                return cls[value.strip().upper()]
            if isinstance(value, int) and not isinstance(value, bool):
                return cls(value)
        except (KeyError, ValueError):
            pass
        choices = ", ".join(v.name.lower() for v in cls)
        raise AttestationError(f"verdict {value!r} is not one of {choices}")


# --------------------------------------------------------------------------------------------------
# Typed data definitions


def _encode_bytes32(value: Any) -> bytes:
    return cast(bytes, value)  # normalised to 32 raw bytes beforehand


def _encode_string(value: Any) -> bytes:
    return keccak256(value.encode())


def _encode_int(value: Any) -> bytes:
    number: int = value  # normalised to an int beforehand; two's complement for negatives
    return (number & _WORD_MASK).to_bytes(32, "big")


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "bytes32": _encode_bytes32,
    "string": _encode_string,
    "int256": _encode_int,
    "uint8": _encode_int,
    "uint64": _encode_int,
    "uint256": _encode_int,
}


@dataclass(frozen=True)
class RecordSchema:
    """One record kind's EIP-712 struct: its name and ``(field, solidity type)`` pairs, in order."""

    kind: AttestationKind
    primary_type: str
    fields: tuple[tuple[str, str], ...]

    @cached_property
    def type_string(self) -> str:
        members = ",".join(f"{kind} {name}" for name, kind in self.fields)
        return f"{self.primary_type}({members})"

    @cached_property
    def type_hash(self) -> bytes:
        return keccak256(self.type_string.encode())

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.fields)

    @cached_property
    def encoders(self) -> tuple[tuple[str, Callable[[Any], bytes]], ...]:
        return tuple((name, _ENCODERS[kind]) for name, kind in self.fields)

    def types_json(self) -> dict[str, list[dict[str, str]]]:
        """The ``types`` of a bundle: EIP712Domain and the primary type."""
        return {
            "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_TYPE],
            self.primary_type: [{"name": n, "type": t} for n, t in self.fields],
        }

    def struct_hash(self, message: Mapping[str, Any]) -> bytes:
        """hashStruct of a normalised message (see :func:`_normalise`)."""
        parts = [self.type_hash]
        parts.extend(encode(message[name]) for name, encode in self.encoders)
        return keccak256(b"".join(parts))


_TAIL = (("contentHash", "bytes32"), ("nonce", "uint256"), ("deadline", "uint256"))
_READING = (("value", "int256"), ("decimals", "uint8"), ("unit", "string"))

SCHEMAS: dict[AttestationKind, RecordSchema] = {
    AttestationKind.INSPECTION: RecordSchema(
        AttestationKind.INSPECTION,
        "InspectionResult",
        (
            ("recordId", "bytes32"),
            ("subject", "string"),
            ("characteristic", "string"),
            *_READING,
            ("verdict", "uint8"),
            ("observedAtUs", "uint64"),
            *_TAIL,
        ),
    ),
    AttestationKind.SETPOINT: RecordSchema(
        AttestationKind.SETPOINT,
        "Setpoint",
        (
            ("recordId", "bytes32"),
            ("equipment", "string"),
            ("parameter", "string"),
            *_READING,
            ("effectiveAtUs", "uint64"),
            *_TAIL,
        ),
    ),
    AttestationKind.LAB_RESULT: RecordSchema(
        AttestationKind.LAB_RESULT,
        "LabResult",
        (
            ("recordId", "bytes32"),
            ("sample", "string"),
            ("method", "string"),
            *_READING,
            ("verdict", "uint8"),
            ("observedAtUs", "uint64"),
            *_TAIL,
        ),
    ),
}
_BY_PRIMARY_TYPE = {schema.primary_type: schema for schema in SCHEMAS.values()}


def _schema(kind: AttestationKind | str) -> RecordSchema:
    try:
        return SCHEMAS[AttestationKind(kind)]
    except ValueError:
        choices = ", ".join(k.value for k in AttestationKind)
        raise AttestationError(f"unknown attestation kind {kind!r}; expected {choices}") from None


@dataclass(frozen=True)
class LedgerDomain:
    """The EIP-712 domain of one QualityLedger deployment."""

    chain_id: int
    verifying_contract: str
    name: str = LEDGER_NAME
    version: str = LEDGER_VERSION

    def __post_init__(self) -> None:
        if not is_hex_address(self.verifying_contract):
            raise AttestationError(
                f"verifyingContract {self.verifying_contract!r} is not an address"
            )
        if not 0 < self.chain_id <= _UINT_MAX["uint256"]:
            raise AttestationError(f"chainId {self.chain_id} is out of range")
        object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))

    @cached_property
    def separator(self) -> bytes:
        return keccak256(
            _DOMAIN_TYPEHASH
            + keccak256(self.name.encode())
            + keccak256(self.version.encode())
            + self.chain_id.to_bytes(32, "big")
            + bytes(12)
            + bytes.fromhex(self.verifying_contract[2:])
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    @classmethod
    def from_json(cls, data: object) -> LedgerDomain:
        if not isinstance(data, Mapping) or set(data) != {n for n, _ in DOMAIN_TYPE}:
            raise AttestationError(
                "domain must have exactly name, version, chainId and verifyingContract"
            )
        name, version = data["name"], data["version"]
        if name != LEDGER_NAME or version != LEDGER_VERSION:
            raise AttestationError(
                f"domain {name!r} version {version!r} is not {LEDGER_NAME!r} version "
                f"{LEDGER_VERSION!r}"
            )
        return cls(
            chain_id=_json_uint(data["chainId"], "uint256", "domain.chainId"),
            verifying_contract=str(data["verifyingContract"]),
        )

    def digest(self, struct_hash: bytes) -> bytes:
        return keccak256(b"\x19\x01" + self.separator + struct_hash)


# --------------------------------------------------------------------------------------------------
# Fixed-point values


def to_fixed_point(
    value: Decimal | int | float | str, decimals: int | None = None
) -> tuple[int, int]:
    """``value`` as ``(integer, decimals)`` with ``integer / 10**decimals == value`` exactly.

    Without ``decimals`` the value's own exponent is kept, so ``Decimal("85.20")`` is
    ``(8520, 2)``: trailing zeros state a measurement's resolution. A float is read through its
    shortest repr (``85.2`` is ``"85.2"``), never through its binary expansion. With ``decimals``
    the value is rescaled, and refused if that would round it.
    """
    if isinstance(value, bool):
        raise AttestationError("a boolean is not a measured value")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise AttestationError(f"value {value!r} is not a decimal number") from exc
    if not number.is_finite():
        raise AttestationError(f"value {value!r} is not finite")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    places = max(0, -exponent) if decimals is None else decimals
    if not 0 <= places <= MAX_DECIMALS:
        raise AttestationError(f"{places} decimals is out of range (0..{MAX_DECIMALS})")
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + places
    if shift >= 0:
        scaled = coefficient * 10**shift
    else:
        scaled, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise AttestationError(f"value {value!r} does not fit {places} decimals exactly")
    scaled = -scaled if sign else scaled
    if not _INT256_MIN <= scaled <= _INT256_MAX:
        raise AttestationError(f"value {value!r} does not fit an int256 at {places} decimals")
    return scaled, places


def from_fixed_point(value: int, decimals: int) -> Decimal:
    """The exact decimal of a fixed-point pair (``(8520, 2)`` is ``Decimal("85.20")``)."""
    digits = tuple(int(digit) for digit in str(abs(value)))
    return Decimal((1 if value < 0 else 0, digits, -decimals))  # exact: no context rounding


# --------------------------------------------------------------------------------------------------
# Messages


def _refuse_personal(names: Sequence[str] | frozenset[str], record_type: RecordType | None) -> None:
    personal = sorted(n for n in names if n in PERSONAL_FIELDS)
    if personal:
        raise PrivacyError(
            f"personal field(s) {', '.join(personal)} may never be attested on-chain"
        )
    if record_type is not None:
        record_type.check_public(names)


def _normalise(
    schema: RecordSchema, fields: Mapping[str, Any], record_type: RecordType | None = None
) -> dict[str, Any]:
    """Validated message values: bytes32 as 32 raw bytes, strings as str, integers as int."""
    _refuse_personal(frozenset(fields), record_type)
    values = dict(fields)
    if "decimals" not in values and "value" in values:
        values["value"], values["decimals"] = to_fixed_point(values["value"])
    elif isinstance(values.get("value"), Decimal | float | str):
        values["value"], _ = to_fixed_point(values["value"], _int(values["decimals"], "decimals"))
    if "verdict" in values:
        values["verdict"] = int(Verdict.parse(values["verdict"]))
    unknown = values.keys() - schema.names
    missing = schema.names - values.keys()
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(sorted(missing))}")
        if unknown:
            parts.append(f"unknown {', '.join(sorted(unknown))}")
        raise AttestationError(f"{schema.primary_type}: {'; '.join(parts)}")
    return {name: _normalise_value(name, kind, values[name]) for name, kind in schema.fields}


def _normalise_value(name: str, kind: str, value: Any) -> Any:
    if kind == "bytes32":
        return _bytes32(value, name)
    if kind == "string":
        if not isinstance(value, str):
            raise AttestationError(f"{name} must be a string, got {type(value).__name__}")
        return value
    number = _int(value, name)
    low, high = (_INT256_MIN, _INT256_MAX) if kind == "int256" else (0, _UINT_MAX[kind])
    if not low <= number <= high:
        raise AttestationError(f"{name} = {number} does not fit a {kind}")
    if name == "decimals" and number > MAX_DECIMALS:
        raise AttestationError(f"{number} decimals is out of range (0..{MAX_DECIMALS})")
    return number


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise AttestationError(f"{name} must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise AttestationError(f"{name} must be an integer, got {value!r}")


def _bytes32(value: Any, name: str) -> bytes:
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return bytes(value)
    if isinstance(value, str) and len(value) == 66 and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise AttestationError(f"{name} must be 0x + 64 hex digits or 32 bytes, got {value!r:.80}")


def _message_json(schema: RecordSchema, message: Mapping[str, Any]) -> dict[str, Any]:
    """JSON values: bytes32 as 0x-hex, uint8 as a number, wider integers as decimal strings (a
    JavaScript number would round them)."""
    out: dict[str, Any] = {}
    for name, kind in schema.fields:
        value = message[name]
        if kind == "bytes32":
            out[name] = "0x" + value.hex()
        elif kind == "string" or kind == "uint8":
            out[name] = value
        else:
            out[name] = str(value)
    return out


def build_typed_data(
    kind: AttestationKind | str,
    fields: Mapping[str, Any],
    domain: LedgerDomain,
    record_type: RecordType | None = None,
) -> dict[str, Any]:
    """The full EIP-712 typed data (``domain``, ``types`` with EIP712Domain, ``primaryType``,
    ``message``) of a record, as JSON data. ``fields`` holds every field of the kind's struct;
    ``value`` may be a Decimal (then ``decimals`` may be left out). Personal fields, and fields
    ``record_type`` classes private, are refused with PrivacyError."""
    schema = _schema(kind)
    message = _normalise(schema, fields, record_type)
    return {
        "domain": domain.to_json(),
        "types": schema.types_json(),
        "primaryType": schema.primary_type,
        "message": _message_json(schema, message),
    }


RECORD_FIELD_MAPS: dict[AttestationKind, dict[str, str]] = {
    AttestationKind.INSPECTION: {
        "subject": "part_id",
        "characteristic": "characteristic",
        "value": "value",
        "unit": "unit",
        "verdict": "verdict",
    },
    AttestationKind.SETPOINT: {
        "equipment": "equipment",
        "parameter": "parameter",
        "value": "value",
        "unit": "unit",
    },
    AttestationKind.LAB_RESULT: {
        "sample": "sample",
        "method": "method",
        "value": "value",
        "unit": "unit",
        "verdict": "verdict",
    },
}
"""Typed-data field -> the off-chain record's field it is taken from, per kind (the default)."""


def fields_from_record(
    kind: AttestationKind | str,
    record: StoredRecord,
    record_type: RecordType,
    *,
    mapping: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The typed-data fields of a stored record (all but ``nonce`` and ``deadline``).

    Only the mapped public fields are read; a mapping onto a private field of ``record_type`` is
    refused (PrivacyError), whatever the record holds. ``recordId``, ``contentHash`` and the
    observation time come from the stored record, binding the signature to its off-chain form.
    """
    schema = _schema(kind)
    field_map = dict(RECORD_FIELD_MAPS[schema.kind] if mapping is None else mapping)
    if record.record_type != record_type.name:
        raise AttestationError(
            f"record {record.record_id} is a {record.record_type!r}, not a {record_type.name!r}"
        )
    _refuse_personal(frozenset(field_map.values()), record_type)
    missing = sorted(source for source in field_map.values() if source not in record.public)
    if missing:
        raise AttestationError(f"record {record.record_id} has no field(s) {', '.join(missing)}")
    fields = {target: record.public[source] for target, source in field_map.items()}
    time_field = "effectiveAtUs" if schema.kind is AttestationKind.SETPOINT else "observedAtUs"
    fields.update(
        recordId=record.record_id,
        contentHash=record.content_hash,
        **{time_field: record.observed_at_us},
    )
    return fields


# --------------------------------------------------------------------------------------------------
# Attestations and bundles


@dataclass(frozen=True)
class CoSignature:
    signer: str
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class Attestation:
    """A signed record: its normalised message, digest, signature and (lab) co-signatures."""

    kind: AttestationKind
    domain: LedgerDomain
    message: Mapping[str, Any]
    digest: bytes
    signer: str
    signature: bytes = field(repr=False)
    co_signatures: tuple[CoSignature, ...] = ()

    @property
    def schema(self) -> RecordSchema:
        return SCHEMAS[self.kind]

    @property
    def record_id(self) -> str:
        return "0x" + bytes(self.message["recordId"]).hex()

    @property
    def nonce(self) -> int:
        return int(self.message["nonce"])

    @property
    def deadline(self) -> int:
        return int(self.message["deadline"])

    @property
    def digest_hex(self) -> str:
        return "0x" + self.digest.hex()

    def struct_values(self) -> tuple[Any, ...]:
        """The message as the contract's struct tuple, in ABI field order."""
        return tuple(self.message[name] for name, _ in self.schema.fields)

    def with_co_signature(self, co_signature: CoSignature) -> Attestation:
        return replace(self, co_signatures=(*self.co_signatures, co_signature))

    def to_bundle(self) -> dict[str, Any]:
        schema = self.schema
        bundle: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "kind": self.kind.value,
            "domain": self.domain.to_json(),
            "types": schema.types_json(),
            "primaryType": schema.primary_type,
            "message": _message_json(schema, self.message),
            "digest": self.digest_hex,
            "signer": self.signer,
            "signature": "0x" + self.signature.hex(),
        }
        if self.kind is AttestationKind.LAB_RESULT:
            bundle["coSignatures"] = [
                {"signer": c.signer, "signature": "0x" + c.signature.hex()}
                for c in self.co_signatures
            ]
        return bundle

    def to_json(self) -> str:
        return json.dumps(self.to_bundle(), sort_keys=True, separators=(",", ":"))


class AttestationSigner:
    """One oracle key signing attestations under one domain (fast path: coincurve on digests)."""

    def __init__(self, key: bytes | str | LocalAccount, domain: LedgerDomain) -> None:
        if isinstance(key, LocalAccount):
            secret = bytes(key.key)
        elif isinstance(key, str):
            secret = bytes.fromhex(key.removeprefix("0x"))
        else:
            secret = bytes(key)
        if len(secret) != 32:
            raise AttestationError("an oracle key is 32 bytes")
        self._key = coincurve.PrivateKey(secret)
        self.address: str = Account.from_key(secret).address
        self.domain = domain

    def digest(self, kind: AttestationKind | str, fields: Mapping[str, Any]) -> bytes:
        schema = _schema(kind)
        return self.domain.digest(schema.struct_hash(_normalise(schema, fields)))

    def sign(
        self,
        kind: AttestationKind | str,
        fields: Mapping[str, Any],
        record_type: RecordType | None = None,
    ) -> Attestation:
        """Sign a record's fields: every field of the kind's struct, nonce and deadline too."""
        schema = _schema(kind)
        message = _normalise(schema, fields, record_type)
        digest = self.domain.digest(schema.struct_hash(message))
        return Attestation(
            schema.kind, self.domain, message, digest, self.address, self.sign_digest(digest)
        )

    def co_sign(self, attestation: Attestation) -> Attestation:
        """Add this key's co-signature of the same digest (a lab approving a lab result)."""
        if attestation.kind is not AttestationKind.LAB_RESULT:
            raise AttestationError("only lab results carry co-signatures")
        if attestation.domain != self.domain:
            raise AttestationError("the attestation is for another QualityLedger domain")
        signature = self.sign_digest(attestation.digest)
        return attestation.with_co_signature(CoSignature(self.address, signature))

    def sign_digest(self, digest: bytes) -> bytes:
        """65 bytes r ‖ s ‖ v (v = 27 or 28; s is low, as libsecp256k1 always makes it)."""
        raw = self._key.sign_recoverable(digest, hasher=None)
        return raw[:64] + bytes((raw[64] + 27,))


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The address a 65-byte signature of ``digest`` recovers to; AttestationError if malformed
    (wrong length, v not 27/28, high s: the forms OpenZeppelin's ECDSA refuses too)."""
    if len(signature) != 65:
        raise AttestationError(f"a signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise AttestationError(f"signature v must be 27 or 28, got {v}")
    if int.from_bytes(signature[32:64], "big") > _SECP256K1_HALF_N:
        raise AttestationError("signature s is in the upper half of the curve order")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes((v - 27,)), digest, hasher=None
        )
    except (ValueError, TypeError) as exc:
        raise AttestationError(f"the signature recovers no key: {exc}") from exc
    return to_checksum_address(keccak256(public.format(compressed=False)[1:])[-20:])


def reference_digest(typed_data: Mapping[str, Any]) -> bytes:
    """The digest of full typed data by eth_account's generic encoder (the reference path)."""
    try:
        signable = encode_typed_data(full_message=dict(typed_data))
    except (ValueError, TypeError, KeyError) as exc:
        raise AttestationError(f"typed data does not encode: {exc}") from exc
    return keccak256(b"\x19" + signable.version + signable.header + signable.body)


def parse_bundle(bundle: object, domain: LedgerDomain | None = None) -> Attestation:
    """A bundle as an :class:`Attestation`, with every signature checked.

    AttestationError if it is malformed, its domain is not a QualityLedger one (or not ``domain``
    when given), its types differ from the ledger's, its digest does not match its message, or a
    signature does not recover to the signer it names.
    """
    if isinstance(bundle, str | bytes):
        try:
            bundle = json.loads(bundle)
        except ValueError as exc:
            raise AttestationError(f"the bundle is not JSON: {exc}") from exc
    if not isinstance(bundle, Mapping):
        raise AttestationError("a bundle is a JSON object")
    try:
        return _parse_bundle(bundle, domain)
    except (KeyError, TypeError) as exc:
        raise AttestationError(f"malformed bundle: {exc!r}") from exc


def _parse_bundle(bundle: Mapping[str, Any], expected: LedgerDomain | None) -> Attestation:
    schema = _BY_PRIMARY_TYPE.get(bundle["primaryType"])
    if schema is None:
        raise AttestationError(f"unknown primaryType {bundle['primaryType']!r}")
    if "kind" in bundle and bundle["kind"] != schema.kind.value:
        raise AttestationError(f"kind {bundle['kind']!r} contradicts {schema.primary_type}")
    if bundle["types"] != schema.types_json():
        raise AttestationError(f"types are not QualityLedger's {schema.primary_type} types")
    domain = LedgerDomain.from_json(bundle["domain"])
    if expected is not None and domain != expected:
        raise AttestationError(
            f"the bundle is for chain {domain.chain_id} contract {domain.verifying_contract}, "
            f"not chain {expected.chain_id} contract {expected.verifying_contract}"
        )
    message = _message_from_json(schema, bundle["message"])
    digest = domain.digest(schema.struct_hash(message))
    if "digest" in bundle and bundle["digest"] != "0x" + digest.hex():
        raise AttestationError("the bundle's digest does not match its message")
    signer = _checked_signer(digest, bundle["signature"], bundle["signer"], "signature")
    co_signatures: list[CoSignature] = []
    raw_co = bundle.get("coSignatures", [])
    if raw_co and schema.kind is not AttestationKind.LAB_RESULT:
        raise AttestationError("only lab results carry co-signatures")
    for index, item in enumerate(raw_co):
        where = f"coSignatures[{index}]"
        co_signer = _checked_signer(digest, item["signature"], item["signer"], where)
        co_signatures.append(CoSignature(co_signer, _hex_bytes(item["signature"], where)))
    return Attestation(
        schema.kind,
        domain,
        message,
        digest,
        signer,
        _hex_bytes(bundle["signature"], "signature"),
        tuple(co_signatures),
    )


def _message_from_json(schema: RecordSchema, data: object) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise AttestationError("message must be a JSON object")
    _refuse_personal(frozenset(data), None)
    if set(data) != schema.names:
        raise AttestationError(f"message fields are not those of {schema.primary_type}")
    values: dict[str, Any] = {}
    for name, kind in schema.fields:
        value = data[name]
        if kind == "bytes32":
            values[name] = _bytes32(value, name)
        elif kind == "string":
            if not isinstance(value, str):
                raise AttestationError(f"message.{name} must be a string")
            values[name] = value
        elif kind == "int256":
            values[name] = _normalise_value(name, kind, _json_int(value, name))
        else:
            values[name] = _json_uint(value, kind, f"message.{name}")
    return values


def _json_int(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise AttestationError(f"message.{name} must be a decimal integer, got {value!r:.80}")


def _json_uint(value: object, kind: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AttestationError(f"{name} must be an unsigned integer, got {value!r:.80}")
    if isinstance(value, str) and not value.isdigit():
        raise AttestationError(f"{name} must be a decimal integer, got {value!r:.80}")
    number = int(value)
    if not 0 <= number <= _UINT_MAX[kind]:
        raise AttestationError(f"{name} = {number} does not fit a {kind}")
    return number


def _hex_bytes(value: object, name: str) -> bytes:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise AttestationError(f"{name} must be 0x-prefixed hex")


def _checked_signer(digest: bytes, signature: object, claimed: object, where: str) -> str:
    recovered = recover_signer(digest, _hex_bytes(signature, where))
    if not isinstance(claimed, str) or not is_hex_address(claimed):
        raise AttestationError(f"{where}: the signer {claimed!r:.80} is not an address")
    if recovered != to_checksum_address(claimed):
        raise AttestationError(f"{where} recovers {recovered}, not the named signer {claimed}")
    return recovered


def verify_bundle(bundle: object, domain: LedgerDomain | None = None) -> str:
    """Check a bundle offline; return its signer (AttestationError if anything does not match)."""
    return parse_bundle(bundle, domain).signer


def load_attestation(text: str | bytes) -> Attestation:
    """A bundle from its JSON text, checked (see :func:`parse_bundle`)."""
    return parse_bundle(text)


# --------------------------------------------------------------------------------------------------
# The attestations table: signed -> submitted -> confirmed | failed


class AttestationStatus(StrEnum):
    SIGNED = "signed"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


_ALLOWED_FROM: dict[AttestationStatus, tuple[AttestationStatus, ...]] = {
    AttestationStatus.SUBMITTED: (AttestationStatus.SIGNED, AttestationStatus.FAILED),
    AttestationStatus.CONFIRMED: (AttestationStatus.SUBMITTED,),
    AttestationStatus.FAILED: (AttestationStatus.SIGNED, AttestationStatus.SUBMITTED),
}
_TABLE = Base.metadata.tables[AttestationRow.__tablename__]


@dataclass(frozen=True)
class StoredAttestation:
    attestation: Attestation
    status: AttestationStatus
    created_at_us: int
    tx_hash: str | None
    block_number: int | None
    error: str | None


def write_attestation(connection: Connection, attestation: Attestation) -> None:
    """Insert a signed attestation inside the caller's transaction (e.g. with its record)."""
    connection.execute(
        insert(_TABLE).values(
            digest=attestation.digest_hex,
            record_id=attestation.record_id,
            kind=attestation.kind.value,
            signer=attestation.signer,
            nonce=_stored_nonce(attestation.nonce),
            bundle_json=attestation.to_json(),
            status=AttestationStatus.SIGNED.value,
            created_at_us=now_us(),
        )
    )


def _stored_nonce(nonce: int) -> int:
    if nonce >= 2**63:
        raise StoreError(f"nonce {nonce} does not fit the attestations table (BIGINT)")
    return nonce


def save_attestation(store: Store, attestation: Attestation) -> None:
    with store.transaction() as connection:
        write_attestation(connection, attestation)


def mark_submitted(store: Store, digest: str, tx_hash: str) -> None:
    _transition(store, digest, AttestationStatus.SUBMITTED, tx_hash=tx_hash, error=None)


def mark_confirmed(store: Store, digest: str, block_number: int) -> None:
    _transition(store, digest, AttestationStatus.CONFIRMED, block_number=block_number)


def mark_failed(store: Store, digest: str, error: str) -> None:
    _transition(store, digest, AttestationStatus.FAILED, error=error)


def _transition(store: Store, digest: str, status: AttestationStatus, **values: Any) -> None:
    allowed = [s.value for s in _ALLOWED_FROM[status]]
    with store.transaction() as connection:
        result = connection.execute(
            update(_TABLE)
            .where(_TABLE.c.digest == digest.lower(), _TABLE.c.status.in_(allowed))
            .values(status=status.value, **values)
        )
        if result.rowcount == 1:
            return
        current = connection.execute(
            select(_TABLE.c.status).where(_TABLE.c.digest == digest.lower())
        ).scalar()
    if current is None:
        raise StoreError(f"no attestation with digest {digest}")
    raise StoreError(f"attestation {digest} is {current}: it cannot become {status.value}")


def load_stored_attestation(store: Store, digest: str) -> StoredAttestation:
    with store.transaction() as connection:
        row = connection.execute(select(_TABLE).where(_TABLE.c.digest == digest.lower())).first()
    if row is None:
        raise StoreError(f"no attestation with digest {digest}")
    return _stored(row)


def attestations_with_status(
    store: Store, status: AttestationStatus, limit: int = 1000
) -> list[StoredAttestation]:
    """Attestations in ``status``, by signer then nonce (the order the chain accepts them in)."""
    query = (
        select(_TABLE)
        .where(_TABLE.c.status == status.value)
        .order_by(_TABLE.c.signer, _TABLE.c.nonce, _TABLE.c.created_at_us)
        .limit(limit)
    )
    with store.transaction() as connection:
        rows = connection.execute(query).all()
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredAttestation:
    return StoredAttestation(
        attestation=parse_bundle(row.bundle_json),
        status=AttestationStatus(row.status),
        created_at_us=int(row.created_at_us),
        tx_hash=row.tx_hash,
        block_number=None if row.block_number is None else int(row.block_number),
        error=row.error,
    )
