"""The proof checker: a pasted or uploaded bundle in, a verdict with its reasons out.

Two kinds of bundle are recognised:

- a Merkle proof bundle (``qnode-proof-v1``, :mod:`node.anchoring.proofs`): the record hashes to
  its leaf, the leaf hash is right, the proof leads to the root; on-chain, the batch is anchored
  in an AnchorRegistry of this consortium with that root, in that block, by a member;
- an EIP-712 attestation bundle (``qnode-attestation/1``, :mod:`node.oracles.attestation`): the
  typed data is QualityLedger's, the digest matches the message, each signature recovers to the
  signer it names; on-chain, the domain is this consortium's ledger, the signer an oracle key of a
  member, and the ledger holds the record with that digest.

Every step is a :class:`Check` (pass, fail, warn or skip, with a sentence saying why); a failed
check carries a reason code (:data:`REASONS`), so a page can show the reason and a test can assert
it. After the steps, the library's own verifier (:func:`node.anchoring.proofs.verify_bundle`,
:func:`node.oracles.attestation.parse_bundle`) is run as the final word, so the checker never
accepts what the node's verifiers refuse. Nothing here raises on bad input: every malformed,
truncated, forged or hostile bundle gives a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address

from node.anchoring import proofs
from node.anchoring.merkle import process_proof, standard_leaf_hash
from node.chain.anchor_registry import AnchorRegistry, to_bytes32
from node.chain.consortium import Consortium, Role
from node.chain.contract_errors import UnknownBatch, UnknownRecord
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TransactionSender
from node.errors import ChainUnavailableError, QnodeError
from node.offchain.records import LEAF_ENCODING, content_hash
from node.oracles import attestation as att

__all__ = [
    "MAX_BUNDLE_BYTES",
    "REASONS",
    "Check",
    "ProofContext",
    "ProofVerdict",
    "check_bundle",
]

MAX_BUNDLE_BYTES = 1 << 20
"""Larger uploads are refused unread (a real bundle is a few kilobytes)."""
MAX_JSON_DEPTH = 32
"""Deeper nesting is refused before parsing: the json module's C parser can overflow the stack
(a segfault, not an exception) on a few hundred thousand nested brackets. A bundle nests 4 deep."""

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

REASONS = {
    "too_large": "the upload is too large to be a bundle",
    "malformed_json": "not JSON, or truncated",
    "not_a_bundle": "JSON, but not a bundle this node knows",
    "missing_fields": "required fields are missing",
    "bad_field": "a field has the wrong form",
    "record_altered": "the record does not hash to its leaf",
    "leaf_hash_mismatch": "the leaf hash does not match the leaf",
    "proof_mismatch": "the proof does not lead from the leaf to the root",
    "wrong_chain": "the bundle is for another chain",
    "not_anchored": "the root is not anchored on-chain",
    "root_mismatch": "the batch is anchored with another root",
    "block_mismatch": "the batch was anchored in another block",
    "contract_rejects": "the contract rejects the proof",
    "non_member": "anchored or signed by an account that is not a member",
    "digest_mismatch": "the digest does not match the message",
    "signature_mismatch": "a signature does not recover to its named signer",
    "domain_mismatch": "signed for another contract than this consortium's ledger",
    "not_recorded": "the ledger holds another record under this id",
    "rejected": "the node's verifier refuses the bundle",
}
"""Reason codes of failed checks, with what each means."""


@dataclass(frozen=True)
class Check:
    """One step of the verification: ``status`` is pass, fail, warn or skip; ``reason`` is the
    code from :data:`REASONS` when it failed."""

    name: str
    status: str
    detail: str
    reason: str | None = None


@dataclass(frozen=True)
class ProofContext:
    """What the on-chain checks read: the chain (through any sender: only calls are made) and
    this consortium's contracts. Without a context only the offline checks run."""

    sender: TransactionSender
    consortium: str
    anchor_registry: str | None = None
    quality_ledger: str | None = None


@dataclass(frozen=True)
class ProofVerdict:
    kind: str
    """``merkle``, ``attestation`` or ``unknown``."""
    checks: tuple[Check, ...]
    on_chain: bool
    """Whether the on-chain checks ran (a context was given and the chain answered)."""
    record_id: str | None = None
    batch_id: str | None = None
    root: str | None = None
    signer: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    """What the bundle says, for the page (record type, anchor block, member, ...)."""

    @property
    def valid(self) -> bool:
        return not any(check.status == FAIL for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status == FAIL)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reason codes of the failed checks, in order."""
        return tuple(check.reason or "rejected" for check in self.failures)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status == WARN)

    @property
    def summary(self) -> str:
        if not self.valid:
            return f"INVALID: {self.failures[0].detail}"
        where = "on-chain" if self.on_chain else "offline only (no chain checked)"
        extra = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"VALID {where}{extra}"


class _Stop(Exception):
    """Internal: a failed check after which the others cannot run."""


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, status: str, detail: str, reason: str | None = None) -> None:
        self.items.append(Check(name, status, detail, reason if status == FAIL else None))

    def passed(self, name: str, detail: str) -> None:
        self.add(name, PASS, detail)

    def failed(self, name: str, reason: str, detail: str) -> None:
        self.add(name, FAIL, detail, reason)

    def stop(self, name: str, reason: str, detail: str) -> _Stop:
        self.failed(name, reason, detail)
        return _Stop()

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.items)


def check_bundle(text: str | bytes, context: ProofContext | None = None) -> ProofVerdict:
    """Check a bundle's text; a verdict, never an exception, whatever the text holds."""
    checks = _Checks()
    try:
        bundle = _parse(text, checks)
    except _Stop:
        return ProofVerdict("unknown", tuple(checks.items), False)
    kind = _kind(bundle)
    try:
        if kind == "attestation":
            return _check_attestation(bundle, checks, context)
        if kind == "merkle":
            return _check_merkle(bundle, checks, context)
    except Exception as exc:  # a library's own error on hostile input: still a verdict
        detail = f"the bundle cannot be checked: {type(exc).__name__}: {str(exc)[:200]}"
        checks.failed("internal", "rejected", detail)
        return ProofVerdict(kind, tuple(checks.items), False)
    known = f"{proofs.BUNDLE_FORMAT} or {att.BUNDLE_FORMAT}"
    checks.failed(
        "format", "not_a_bundle", f"format {str(bundle.get('format'))[:80]!r} is not {known}"
    )
    return ProofVerdict("unknown", tuple(checks.items), False)


def _parse(text: str | bytes, checks: _Checks) -> dict[str, Any]:
    if len(text) > MAX_BUNDLE_BYTES:
        raise checks.stop(
            "size", "too_large", f"{len(text)} bytes; a bundle is at most {MAX_BUNDLE_BYTES}"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise checks.stop("json", "malformed_json", f"not UTF-8 text: {exc.reason}") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise checks.stop(
            "json", "malformed_json", f"the JSON nests deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        bundle = proofs.load_bundle(text)
    except QnodeError as exc:
        reason = "malformed_json" if "not JSON" in str(exc) else "not_a_bundle"
        raise checks.stop("json", reason, str(exc)) from None
    except RecursionError:
        raise checks.stop("json", "malformed_json", "the JSON is nested too deeply") from None
    checks.passed("json", "well-formed JSON object")
    return bundle


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _nesting(text: str) -> int:
    """How deep the brackets of a JSON text nest (outside its strings), without parsing it."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _kind(bundle: Mapping[str, Any]) -> str:
    format_ = bundle.get("format")
    if format_ == att.BUNDLE_FORMAT or (format_ is None and "primaryType" in bundle):
        return "attestation"
    if format_ == proofs.BUNDLE_FORMAT or (format_ is None and "leafValue" in bundle):
        return "merkle"
    return "unknown"


# -- Merkle proof bundles ---------------------------------------------------------------------

_MERKLE_FIELDS = (
    "format",
    "record",
    "leafEncoding",
    "leafValue",
    "proof",
    "root",
    "batchId",
    "anchor",
)


def _check_merkle(
    bundle: dict[str, Any], checks: _Checks, context: ProofContext | None
) -> ProofVerdict:
    facts: dict[str, Any] = {}
    record_id = batch_id = root = None
    on_chain = False
    try:
        _require(bundle, _MERKLE_FIELDS, checks)
        record, leaf_value, proof, anchor = _merkle_shapes(bundle, checks)
        record_id, batch_id, root = str(record["id"]), str(bundle["batchId"]), str(bundle["root"])
        facts = {
            "record_type": record.get("type"),
            "observed_at_us": record.get("observed_at_us"),
            **{f"anchor_{k}": v for k, v in anchor.items()},
        }
        leaf = _offline_merkle(bundle, record, leaf_value, proof, checks)
        _authority("offline verifier", lambda: proofs.verify_bundle(bundle), checks)
        if context is not None and checks.ok:
            on_chain = _merkle_on_chain(context, bundle, leaf, proof, anchor, checks, facts)
    except _Stop:
        pass
    return ProofVerdict(
        "merkle",
        tuple(checks.items),
        on_chain,
        record_id=record_id,
        batch_id=batch_id,
        root=root,
        facts=facts,
    )


def _require(bundle: Mapping[str, Any], names: tuple[str, ...], checks: _Checks) -> None:
    missing = [name for name in names if name not in bundle]
    if missing:
        raise checks.stop("fields", "missing_fields", f"missing field(s): {', '.join(missing)}")
    checks.passed("fields", "every required field is present")


def _merkle_shapes(
    bundle: Mapping[str, Any], checks: _Checks
) -> tuple[dict[str, Any], list[str], list[str], dict[str, Any]]:
    problems = []
    record, leaf_value, proof, anchor = (
        bundle["record"],
        bundle["leafValue"],
        bundle["proof"],
        bundle["anchor"],
    )
    if bundle["format"] != proofs.BUNDLE_FORMAT:
        problems.append(f"format is {str(bundle['format'])[:40]!r}, not {proofs.BUNDLE_FORMAT}")
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        problems.append("record must be an object with a string id")
    encoding = bundle["leafEncoding"]
    if not _is_list(encoding) or list(encoding) != list(LEAF_ENCODING):
        problems.append(f"leafEncoding must be {list(LEAF_ENCODING)}")
    if not (_is_list(leaf_value) and len(leaf_value) == 2 and all(map(_is_b32, leaf_value))):
        problems.append("leafValue must be two 0x-prefixed 32-byte hex strings")
    if not (_is_list(proof) and all(map(_is_b32, proof))):
        problems.append("proof must be a list of 0x-prefixed 32-byte hex strings")
    if not _is_b32(bundle["root"]):
        problems.append("root must be a 0x-prefixed 32-byte hex string")
    if not _is_b32(bundle["batchId"]):
        problems.append("batchId must be a 0x-prefixed 32-byte hex string")
    if "leafHash" in bundle and not _is_b32(bundle["leafHash"]):
        problems.append("leafHash must be a 0x-prefixed 32-byte hex string")
    if not isinstance(anchor, dict):
        problems.append("anchor must be an object")
    if problems:
        raise checks.stop("form", "bad_field", "; ".join(problems))
    checks.passed("form", "fields have the expected types")
    return record, list(leaf_value), list(proof), anchor


def _offline_merkle(
    bundle: Mapping[str, Any],
    record: dict[str, Any],
    leaf_value: list[str],
    proof: list[str],
    checks: _Checks,
) -> bytes:
    try:
        recomputed = content_hash(record)
    except QnodeError as exc:
        raise checks.stop(
            "record", "bad_field", f"the record has no canonical form: {exc}"
        ) from None
    if record["id"].lower() != leaf_value[0].lower():
        raise checks.stop(
            "record", "record_altered", "the record's id is not the leaf's id: it was altered"
        )
    if recomputed != leaf_value[1].lower():
        raise checks.stop(
            "record",
            "record_altered",
            f"the record hashes to {recomputed}, not to the leaf's {leaf_value[1]}: it was altered",
        )
    checks.passed("record", f"the record hashes to its leaf's content hash {recomputed}")
    leaf = standard_leaf_hash(list(LEAF_ENCODING), leaf_value)
    leaf_hex = "0x" + leaf.hex()
    claimed = str(bundle.get("leafHash", leaf_hex)).lower()
    if claimed != leaf_hex:
        raise checks.stop(
            "leaf",
            "leaf_hash_mismatch",
            f"the leaf hashes to {leaf_hex}, the bundle says {claimed}",
        )
    checks.passed("leaf", f"leaf hash {leaf_hex}")
    reached = "0x" + process_proof(leaf, proof).hex()
    if reached != str(bundle["root"]).lower():
        raise checks.stop(
            "proof",
            "proof_mismatch",
            f"the {len(proof)}-step proof leads to {reached}, not to the root {bundle['root']}",
        )
    checks.passed("proof", f"the {len(proof)}-step proof leads to the root {reached}")
    return leaf


def _merkle_on_chain(
    context: ProofContext,
    bundle: Mapping[str, Any],
    leaf: bytes,
    proof: list[str],
    anchor: Mapping[str, Any],
    checks: _Checks,
    facts: dict[str, Any],
) -> bool:
    connection = context.sender.connection
    try:
        if anchor.get("chainId") != connection.chain_id:
            raise checks.stop(
                "chain",
                "wrong_chain",
                f"anchored on chain {str(anchor.get('chainId'))[:40]}, "
                f"this node is on chain {connection.chain_id}",
            )
        checks.passed("chain", f"chain {connection.chain_id}")
        registry = _registry(context, anchor, checks)
        batch_id = str(bundle["batchId"])
        try:
            on_chain = registry.batch(batch_id)
        except UnknownBatch:
            raise checks.stop(
                "anchored",
                "not_anchored",
                f"batch {batch_id} is not anchored in {registry.address} on chain "
                f"{connection.chain_id}",
            ) from None
        facts.update(
            anchored_member=on_chain.member,
            anchored_oracle=on_chain.oracle,
            anchored_block=on_chain.block_number,
            anchored_at=on_chain.anchored_at,
            leaf_count=on_chain.leaf_count,
        )
        if on_chain.root.lower() != str(bundle["root"]).lower():
            raise checks.stop(
                "anchored",
                "root_mismatch",
                f"batch {batch_id} is anchored with root {on_chain.root}, "
                f"not the bundle's {bundle['root']}",
            )
        if anchor.get("blockNumber") != on_chain.block_number:
            raise checks.stop(
                "anchored",
                "block_mismatch",
                f"batch {batch_id} was anchored in block {on_chain.block_number}, "
                f"not {str(anchor.get('blockNumber'))[:40]} as the bundle says",
            )
        checks.passed(
            "anchored",
            f"root anchored in block {on_chain.block_number} ({on_chain.leaf_count} leaves)",
        )
        if not registry.verify(batch_id, leaf, proof):
            raise checks.stop(
                "contract", "contract_rejects", "AnchorRegistry.verify rejects the proof"
            )
        checks.passed("contract", "AnchorRegistry.verify accepts the proof")
        _anchoring_member(context, registry, on_chain.member, checks)
        _authority("on-chain verifier", lambda: proofs.verify_bundle(bundle, registry), checks)
    except ChainUnavailableError as exc:
        checks.add("chain", SKIP, f"the chain is unavailable: {exc}")
        return False
    except QnodeError as exc:  # the chain refused a call the bundle made it do
        raise checks.stop("chain call", "rejected", str(exc)[:300]) from None
    return True


def _registry(context: ProofContext, anchor: Mapping[str, Any], checks: _Checks) -> AnchorRegistry:
    address = anchor.get("contract")
    if not isinstance(address, str) or not is_hex_address(address):
        raise checks.stop("registry", "bad_field", f"anchor.contract {str(address)[:60]!r}")
    try:
        registry = AnchorRegistry.at(context.sender, address)
        consortium = registry.consortium()
    except ChainUnavailableError:
        raise
    except QnodeError:
        raise checks.stop(
            "registry", "not_anchored", f"there is no AnchorRegistry at {address}"
        ) from None
    ours = to_checksum_address(context.consortium)
    if context.anchor_registry and to_checksum_address(address) == to_checksum_address(
        context.anchor_registry
    ):
        checks.passed("registry", f"this consortium's AnchorRegistry {registry.address}")
    elif consortium == ours:
        checks.add(
            "registry",
            WARN,
            f"{registry.address} is an AnchorRegistry of this consortium, "
            "but not the one this node uses",
        )
    else:
        checks.passed("registry", f"AnchorRegistry {registry.address} of consortium {consortium}")
    return registry


def _anchoring_member(
    context: ProofContext, registry: AnchorRegistry, member: str, checks: _Checks
) -> None:
    ours = Consortium.at(context.sender, context.consortium)
    if registry.consortium() != ours.address:
        raise checks.stop(
            "member",
            "non_member",
            f"anchored by {member} in a registry of another consortium "
            f"({registry.consortium()}), not this one",
        )
    record = ours.member(member)
    if record.role is Role.NONE:
        raise checks.stop("member", "non_member", f"anchored by {member}, which was never a member")
    if not record.active:
        checks.add("member", WARN, f"anchored by {record.name} ({member}), since removed")
        return
    checks.passed("member", f"anchored by {record.name} ({member}), an active member")


# -- attestation bundles ----------------------------------------------------------------------

_ATTESTATION_FIELDS = ("domain", "types", "primaryType", "message", "signature", "signer")


def _check_attestation(
    bundle: dict[str, Any], checks: _Checks, context: ProofContext | None
) -> ProofVerdict:
    record_id = signer = None
    facts: dict[str, Any] = {}
    on_chain = False
    try:
        _require(bundle, _ATTESTATION_FIELDS, checks)
        schema, domain = _attestation_shapes(bundle, checks)
        message = bundle["message"]
        record_id = str(message.get("recordId"))
        facts = {"primary_type": schema.primary_type, "domain": domain.to_json()}
        digest = _attestation_digest(bundle, checks)
        signer = _signatures(bundle, digest, checks)
        attestation = _authority("offline verifier", lambda: att.parse_bundle(bundle), checks)
        if context is not None and attestation is not None:
            on_chain = _attestation_on_chain(context, attestation, checks, facts)
    except _Stop:
        pass
    return ProofVerdict(
        "attestation",
        tuple(checks.items),
        on_chain,
        record_id=record_id,
        signer=signer,
        facts=facts,
    )


def _attestation_shapes(
    bundle: Mapping[str, Any], checks: _Checks
) -> tuple[att.RecordSchema, att.LedgerDomain]:
    schemas = {s.primary_type: s for s in att.SCHEMAS.values()}
    schema = schemas.get(str(bundle["primaryType"]))
    if schema is None:
        known = ", ".join(schemas)
        raise checks.stop(
            "form", "bad_field", f"primaryType {str(bundle['primaryType'])[:60]!r} is not {known}"
        )
    if bundle["types"] != schema.types_json():
        raise checks.stop(
            "form", "bad_field", f"types are not QualityLedger's {schema.primary_type}"
        )
    if not isinstance(bundle["message"], dict):
        raise checks.stop("form", "bad_field", "message must be an object")
    try:
        domain = att.LedgerDomain.from_json(bundle["domain"])
    except (QnodeError, TypeError, ValueError, KeyError) as exc:
        raise checks.stop("form", "bad_field", f"domain: {exc}") from None
    checks.passed("form", f"{schema.primary_type} under {domain.name} v{domain.version}")
    return schema, domain


def _attestation_digest(bundle: Mapping[str, Any], checks: _Checks) -> bytes:
    typed = {k: bundle[k] for k in ("domain", "types", "primaryType", "message")}
    try:
        digest = att.reference_digest(typed)
    except Exception as exc:  # eth_account and eth_abi raise errors of their own on bad values
        raise checks.stop("digest", "bad_field", f"the typed data does not encode: {exc}") from None
    digest_hex = "0x" + digest.hex()
    claimed = bundle.get("digest")
    if claimed is not None and str(claimed).lower() != digest_hex:
        raise checks.stop(
            "digest",
            "digest_mismatch",
            f"the message's EIP-712 digest is {digest_hex}, the bundle says {str(claimed)[:80]}",
        )
    checks.passed("digest", f"EIP-712 digest {digest_hex}")
    return digest


def _signatures(bundle: Mapping[str, Any], digest: bytes, checks: _Checks) -> str:
    signer = _recovered(digest, bundle["signature"], bundle["signer"], "signature", checks)
    co = bundle.get("coSignatures", [])
    if not _is_list(co):
        raise checks.stop("co-signatures", "bad_field", "coSignatures must be a list")
    for index, item in enumerate(co):
        if not isinstance(item, dict) or not {"signer", "signature"} <= set(item):
            raise checks.stop(
                "co-signatures", "bad_field", f"coSignatures[{index}] needs signer and signature"
            )
        _recovered(digest, item["signature"], item["signer"], f"coSignatures[{index}]", checks)
    return signer


def _recovered(digest: bytes, signature: Any, claimed: Any, where: str, checks: _Checks) -> str:
    if not isinstance(claimed, str) or not is_hex_address(claimed):
        raise checks.stop(where, "bad_field", f"{where}: signer {str(claimed)[:60]!r}")
    raw = _hex_bytes(signature)
    if raw is None:
        raise checks.stop(where, "bad_field", f"{where} must be 0x-prefixed hex")
    try:
        recovered = att.recover_signer(digest, raw)
    except QnodeError as exc:
        raise checks.stop(where, "signature_mismatch", f"{where}: {exc}") from None
    if recovered != to_checksum_address(claimed):
        raise checks.stop(
            where,
            "signature_mismatch",
            f"{where} recovers {recovered}, not the named signer {to_checksum_address(claimed)}",
        )
    checks.passed(where, f"{where} recovers the named signer {recovered}")
    return recovered


def _attestation_on_chain(
    context: ProofContext,
    attestation: att.Attestation,
    checks: _Checks,
    facts: dict[str, Any],
) -> bool:
    connection = context.sender.connection
    domain = attestation.domain
    try:
        if domain.chain_id != connection.chain_id:
            raise checks.stop(
                "chain",
                "wrong_chain",
                f"signed for chain {domain.chain_id}, this node is on chain {connection.chain_id}",
            )
        checks.passed("chain", f"chain {connection.chain_id}")
        ledger = _ledger(context, domain.verifying_contract, checks)
        consortium = Consortium.at(context.sender, context.consortium)
        for name, key in [("signer", attestation.signer)] + [
            (f"co-signer {c.signer}", c.signer) for c in attestation.co_signatures
        ]:
            status = consortium.oracle_of(key)
            if status.member is None:
                raise checks.stop(name, "non_member", f"{key} is not an oracle key of any member")
            owner = consortium.member(status.member)
            if status.active:
                checks.passed(name, f"{key}: an active oracle key of {owner.name}")
            else:
                checks.add(name, WARN, f"{key}: an oracle key of {owner.name}, no longer active")
        try:
            attribution = ledger.attribution(attestation.record_id)
        except UnknownRecord:
            checks.add("recorded", WARN, f"{attestation.record_id} is not on the ledger (yet)")
            return True
        facts.update(
            recorded_block=attribution.block_number,
            recorded_member=attribution.member,
            relayer=attribution.relayer,
        )
        if attribution.digest.lower() != attestation.digest_hex:
            raise checks.stop(
                "recorded",
                "not_recorded",
                f"the ledger holds another record under {attestation.record_id} "
                f"(digest {attribution.digest})",
            )
        checks.passed("recorded", f"recorded on the ledger in block {attribution.block_number}")
    except ChainUnavailableError as exc:
        checks.add("chain", SKIP, f"the chain is unavailable: {exc}")
        return False
    except QnodeError as exc:  # the chain refused a call the bundle made it do
        raise checks.stop("chain call", "rejected", str(exc)[:300]) from None
    return True


def _ledger(context: ProofContext, address: str, checks: _Checks) -> QualityLedger:
    known = context.quality_ledger
    if known and to_checksum_address(known) == to_checksum_address(address):
        ledger = QualityLedger.at(context.sender, address)
        checks.passed("ledger", f"this consortium's QualityLedger {ledger.address}")
        return ledger
    try:
        ledger = QualityLedger.at(context.sender, address)
        consortium = ledger.consortium()
    except ChainUnavailableError:
        raise
    except QnodeError:
        raise checks.stop(
            "ledger", "domain_mismatch", f"there is no QualityLedger at {address}"
        ) from None
    if consortium != to_checksum_address(context.consortium):
        raise checks.stop(
            "ledger",
            "domain_mismatch",
            f"signed for the QualityLedger {address} of another consortium ({consortium})",
        )
    checks.add("ledger", WARN, "a QualityLedger of this consortium, not the one this node uses")
    return ledger


# -- shared -------------------------------------------------------------------------------------


def _authority(name: str, verify: Callable[[], Any], checks: _Checks) -> Any:
    """Run the library's verifier; the checks above should have caught what it refuses, so a
    refusal here (a check this module does not know) is reported as it words it."""
    try:
        result = verify()
    except (QnodeError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise checks.stop(name, "rejected", str(exc) or type(exc).__name__) from None
    checks.passed(name, "accepted")
    return result


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_b32(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        to_bytes32(value)
    except ValueError:
        return False
    return value.startswith(("0x", "0X"))


def _hex_bytes(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value.startswith("0x"):
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None
