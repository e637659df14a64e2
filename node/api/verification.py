"""The verification status of a record: anchored (Merkle proof against the on-chain root) and,
for critical records, signed (EIP-712 by an oracle of the member, recorded on QualityLedger).

What the chain says about an anchored batch or a recorded attestation never changes once it is
there, so those answers are cached for good; member names are cached for a while. Chain access
is serialised (one lock per verifier): web3 providers and the embedded chain are not meant for
concurrent use.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from node.anchoring.batcher import ANCHORED, CONFIRMED, Batcher
from node.anchoring.merkle import StandardMerkleTree
from node.anchoring.proofs import BUNDLE_FORMAT, verify_bundle
from node.chain.anchor_registry import AnchoredBatch, AnchorRegistry
from node.chain.consortium import Consortium, Member
from node.chain.quality_ledger import Attribution, QualityLedger
from node.errors import (
    AttestationError,
    ChainError,
    ConfigError,
    ContractRevertError,
    ProofError,
    StoreError,
)
from node.offchain.models import AttestationRow, Base
from node.offchain.records import LEAF_ENCODING, StoredRecord
from node.offchain.store import Store
from node.oracles.attestation import Attestation, AttestationStatus, parse_bundle

ATTESTATIONS = Base.metadata.tables[AttestationRow.__tablename__]
VERIFIED, PENDING, FAILED, UNAVAILABLE = "verified", "pending", "failed", "unavailable"
_TREES_KEPT = 8
_MEMBER_TTL_S = 60.0


@dataclass(frozen=True)
class AnchorCheck:
    batch_id: str
    root: str
    chain_id: int | None
    contract: str | None
    tx_hash: str | None
    block_number: int | None
    member: str | None
    proof_valid: bool


@dataclass(frozen=True)
class SignatureCheck:
    signer: str
    member: str | None
    member_name: str | None
    digest: str
    block_number: int | None
    valid: bool


@dataclass(frozen=True)
class Verification:
    status: str
    detail: str
    anchor: AnchorCheck | None = None
    signature: SignatureCheck | None = None


class ChainView:
    """Read-only, cached, serialised access to the contracts a verifier needs."""

    def __init__(
        self,
        registry: Callable[[], AnchorRegistry],
        ledger: Callable[[], QualityLedger],
        consortium: Callable[[], Consortium],
    ) -> None:
        self._registry_factory = registry
        self._ledger_factory = ledger
        self._consortium_factory = consortium
        self._lock = threading.Lock()
        self._batches: dict[str, AnchoredBatch | None] = {}
        self._attributions: dict[str, Attribution | None] = {}
        self._members: dict[str, tuple[float, Member | None]] = {}
        self._oracles: dict[str, str | None] = {}
        self._registry: AnchorRegistry | None = None
        self._ledger: QualityLedger | None = None
        self._consortium: Consortium | None = None

    def registry(self) -> AnchorRegistry:
        if self._registry is None:
            self._registry = self._registry_factory()
        return self._registry

    def batch(self, batch_id: str) -> AnchoredBatch | None:
        """The batch as anchored on-chain; None if it never was (cached once known)."""
        key = batch_id.lower()
        if key in self._batches and self._batches[key] is not None:
            return self._batches[key]
        with self._lock:
            try:
                found: AnchoredBatch | None = self.registry().batch(key)
            except ContractRevertError:
                found = None
        self._batches[key] = found
        return found

    def attribution(self, record_id: str) -> Attribution | None:
        key = record_id.lower()
        if self._attributions.get(key) is not None:
            return self._attributions[key]
        with self._lock:
            if self._ledger is None:
                self._ledger = self._ledger_factory()
            try:
                found: Attribution | None = self._ledger.attribution(key)
            except ContractRevertError:
                found = None
        self._attributions[key] = found
        return found

    def member(self, address: str) -> Member | None:
        key = address.lower()
        cached = self._members.get(key)
        if cached is not None and time.monotonic() - cached[0] < _MEMBER_TTL_S:
            return cached[1]
        with self._lock:
            if self._consortium is None:
                self._consortium = self._consortium_factory()
            try:
                member: Member | None = self._consortium.member(address)
            except ContractRevertError:
                member = None
        if member is not None and int(member.admitted_at) == 0:
            member = None
        self._members[key] = (time.monotonic(), member)
        return member

    def oracle_member(self, oracle: str) -> str | None:
        key = oracle.lower()
        if key in self._oracles:
            return self._oracles[key]
        with self._lock:
            if self._consortium is None:
                self._consortium = self._consortium_factory()
            status = self._consortium.oracle_of(oracle)
        self._oracles[key] = status.member
        return status.member


class Verifier:
    """Verification of this member's own records, from its store and the chain."""

    def __init__(self, store: Store, batcher: Batcher, chain: ChainView, member: str) -> None:
        self.store = store
        self.batcher = batcher
        self.chain = chain
        self.member = member
        self._trees: OrderedDict[str, StandardMerkleTree] = OrderedDict()
        self._tree_lock = threading.Lock()

    # -- bundles -----------------------------------------------------------------------------

    def proof_bundle(self, record: StoredRecord) -> dict[str, Any] | None:
        """The record's proof bundle (as ``node.anchoring.proofs.build_bundle`` makes it), or None
        while it is not anchored; manifests are kept for the last few batches."""
        batch = self.batcher.batch_of(record.record_id)
        if batch is None or batch.status not in (ANCHORED, CONFIRMED):
            return None
        tree = self._tree(batch.batch_id, batch)
        leaf = (record.record_id, record.content_hash)
        return {
            "format": BUNDLE_FORMAT,
            "record": record.canonical(),
            "leafEncoding": list(LEAF_ENCODING),
            "leafValue": list(leaf),
            "leafHash": "0x" + tree.leaf_hash(leaf).hex(),
            "proof": tree.get_proof(leaf),
            "root": tree.root,
            "batchId": batch.batch_id,
            "anchor": {
                "chainId": batch.chain_id,
                "contract": batch.contract,
                "txHash": batch.tx_hash,
                "blockNumber": batch.block_number,
                "oracle": batch.oracle,
            },
        }

    def _tree(self, batch_id: str, batch: Any) -> StandardMerkleTree:
        with self._tree_lock:
            tree = self._trees.get(batch_id)
            if tree is not None:
                self._trees.move_to_end(batch_id)
                return tree
        tree = self.batcher.manifest(batch)
        with self._tree_lock:
            self._trees[batch_id] = tree
            while len(self._trees) > _TREES_KEPT:
                self._trees.popitem(last=False)
        return tree

    def attestation(self, record_id: str) -> tuple[str, Attestation] | None:
        """(status, attestation) of the record's latest attestation, if it has one."""
        with self.store.transaction() as connection:
            row = connection.execute(
                select(ATTESTATIONS.c.status, ATTESTATIONS.c.bundle_json)
                .where(ATTESTATIONS.c.record_id == record_id.lower())
                .order_by(
                    (ATTESTATIONS.c.status == AttestationStatus.CONFIRMED.value).desc(),
                    ATTESTATIONS.c.created_at_us.desc(),
                )
                .limit(1)
            ).first()
        if row is None:
            return None
        try:
            return str(row.status), parse_bundle(row.bundle_json)
        except AttestationError as exc:
            raise StoreError(f"the stored attestation of {record_id} is corrupt: {exc}") from exc

    # -- verification ------------------------------------------------------------------------

    def verify(self, record: StoredRecord, critical: bool) -> Verification:
        try:
            return self._verify(record, critical)
        except (ChainError, ConfigError) as exc:
            return Verification(UNAVAILABLE, f"the chain could not be asked: {exc}")
        except StoreError as exc:
            return Verification(FAILED, str(exc))

    def _verify(self, record: StoredRecord, critical: bool) -> Verification:
        bundle = self.proof_bundle(record)
        anchor: AnchorCheck | None = None
        problems: list[str] = []
        pending: list[str] = []
        if bundle is None:
            pending.append("waiting to be anchored")
        else:
            anchor, problem = check_anchor(bundle, self.chain, self.member)
            if problem:
                problems.append(problem)
        signature: SignatureCheck | None = None
        if critical:
            found = self.attestation(record.record_id)
            if found is None:
                pending.append("not signed yet")
            else:
                status, attestation = found
                if status != AttestationStatus.CONFIRMED.value:
                    pending.append(f"signed, not on-chain yet ({status})")
                else:
                    signature, problem = check_signature(attestation, self.chain, self.member)
                    if problem:
                        problems.append(problem)
                if attestation.message["contentHash"] != bytes.fromhex(record.content_hash[2:]):
                    problems.append("the signed content hash is not the record's")
        return summarise(anchor, signature, problems, pending)


def summarise(
    anchor: AnchorCheck | None,
    signature: SignatureCheck | None,
    problems: list[str],
    pending: list[str],
) -> Verification:
    if problems:
        return Verification(FAILED, "; ".join(problems), anchor, signature)
    if pending:
        return Verification(PENDING, "; ".join(pending), anchor, signature)
    parts = []
    if anchor is not None:
        parts.append(f"anchored in block {anchor.block_number}, Merkle proof valid")
    if signature is not None:
        who = signature.member_name or signature.member
        parts.append(f"signed by oracle {signature.signer} of {who}")
    return Verification(VERIFIED, "; ".join(parts), anchor, signature)


def check_anchor(
    bundle: Mapping[str, Any], chain: ChainView, owner: str
) -> tuple[AnchorCheck | None, str | None]:
    """Check a proof bundle offline, then its root against the batch anchored on-chain, and that
    ``owner`` anchored it. (check, the first problem or None)."""
    anchor_data = bundle.get("anchor") if isinstance(bundle.get("anchor"), Mapping) else {}
    assert isinstance(anchor_data, Mapping)
    try:
        checked = verify_bundle(bundle)
    except ProofError as exc:
        return None, f"the proof does not verify: {exc}"
    on_chain = chain.batch(checked.batch_id)
    check = AnchorCheck(
        batch_id=checked.batch_id,
        root=checked.root,
        chain_id=_int_or_none(anchor_data.get("chainId")),
        contract=_str_or_none(anchor_data.get("contract")),
        tx_hash=_str_or_none(anchor_data.get("txHash")),
        block_number=None if on_chain is None else on_chain.block_number,
        member=None if on_chain is None else on_chain.member,
        proof_valid=False,
    )
    if on_chain is None:
        return check, f"batch {checked.batch_id} is not anchored on this chain"
    if on_chain.root.lower() != checked.root.lower():
        return check, f"batch {checked.batch_id} is anchored with another root"
    if anchor_data.get("blockNumber") != on_chain.block_number:
        return check, (
            f"batch {checked.batch_id} was anchored in block {on_chain.block_number}, "
            f"not {anchor_data.get('blockNumber')} as the bundle says"
        )
    if on_chain.member.lower() != owner.lower():
        return check, f"batch {checked.batch_id} was anchored by {on_chain.member}, not {owner}"
    return AnchorCheck(**{**check.__dict__, "proof_valid": True}), None


def check_signature(
    attestation: Attestation, chain: ChainView, owner: str
) -> tuple[SignatureCheck, str | None]:
    """Check a (signature-checked) attestation against QualityLedger and the consortium."""
    attribution = chain.attribution(attestation.record_id)
    member = chain.member(owner)
    check = SignatureCheck(
        signer=attestation.signer,
        member=None if attribution is None else attribution.member,
        member_name=None if member is None else member.name,
        digest=attestation.digest_hex,
        block_number=None if attribution is None else attribution.block_number,
        valid=False,
    )
    if attribution is None:
        return check, "the attestation is not recorded on QualityLedger"
    if attribution.digest.lower() != attestation.digest_hex.lower():
        return check, "QualityLedger holds another digest for this record"
    if attribution.oracle.lower() != attestation.signer.lower():
        return check, f"QualityLedger says oracle {attribution.oracle} signed it"
    if attribution.member.lower() != owner.lower():
        return check, f"recorded for member {attribution.member}, not {owner}"
    return SignatureCheck(**{**check.__dict__, "valid": True}), None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
