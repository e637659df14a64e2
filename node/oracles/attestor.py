"""Critical records onto the chain: signed by this member's oracle key, relayed by its sender.

An attestation is signed when its record is accepted and stored with it (status ``signed``), then
relayed in nonce order. The ledger's per-oracle nonce must match exactly, so an attestation whose
nonce went stale (an earlier one failed, or the chain was reset) is signed again with the chain's
next nonce rather than sent to fail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select

from node.chain.quality_ledger import QualityLedger
from node.chain.sender import SentTx
from node.errors import AttestationError, ChainError
from node.offchain.models import AttestationRow, Base
from node.offchain.records import StoredRecord
from node.offchain.store import RECORDS, Store, stored_record
from node.oracles.attestation import (
    Attestation,
    AttestationKind,
    AttestationSigner,
    AttestationStatus,
    attestations_with_status,
    fields_from_record,
    mark_confirmed,
    mark_failed,
    mark_submitted,
    write_attestation,
)

ATTESTED_TYPES: dict[str, AttestationKind] = {
    "inspection": AttestationKind.INSPECTION,
    "setpoint": AttestationKind.SETPOINT,
    "lab_result": AttestationKind.LAB_RESULT,
}
"""Record types whose critical fields go on-chain, and the ledger struct they go in."""

ATTESTATIONS = Base.metadata.tables[AttestationRow.__tablename__]
RECORD_GAS = 1_000_000
"""Gas limit per recording (an inspection uses ~420k): fixed, because estimating the second of two
pipelined records before the first is mined would fail on its nonce."""


@dataclass(frozen=True)
class SubmitOutcome:
    confirmed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    """(digest, reason) of attestations the chain refused."""


class Attestor:
    """Signs one member's critical records and relays them to QualityLedger."""

    def __init__(
        self,
        store: Store,
        signer: AttestationSigner,
        ledger: QualityLedger,
        validity_s: int = 24 * 3600,
    ) -> None:
        if signer.domain != ledger.domain():
            raise AttestationError(
                f"the signer's domain is not QualityLedger {ledger.address}'s on this chain"
            )
        self.store = store
        self.signer = signer
        self.ledger = ledger
        self.validity_s = validity_s
        self._cursor = "0x"

    def attest(self, records: Sequence[StoredRecord]) -> list[Attestation]:
        """Sign ``records`` (all of critical types) and store the attestations, all or nothing."""
        nonce = self._next_nonce()
        attestations = []
        for record in records:
            attestations.append(self._sign(record, nonce))
            nonce += 1
        with self.store.transaction() as connection:
            for attestation in attestations:
                write_attestation(connection, attestation)
        return attestations

    def attest_unattested(self, limit: int = 1000) -> list[Attestation]:
        """Sign the stored critical records that have no attestation yet (oldest first).

        Records are examined once per process, from a cursor over the time-ordered record ids.
        """
        query = (
            select(RECORDS)
            .where(
                RECORDS.c.record_type.in_(ATTESTED_TYPES),
                RECORDS.c.record_id > self._cursor,
                ~exists().where(ATTESTATIONS.c.record_id == RECORDS.c.record_id),
            )
            .order_by(RECORDS.c.record_id)
            .limit(limit)
        )
        with self.store.transaction() as connection:
            records = [stored_record(row._mapping) for row in connection.execute(query)]
        if not records:
            return []
        attestations = self.attest(records)
        self._cursor = records[-1].record_id
        return attestations

    def submit_pending(self, timeout: float | None = None) -> SubmitOutcome:
        """Relay this signer's stored attestations in nonce order and wait for their receipts."""
        sender = self.ledger.binding.sender
        expected = self.ledger.nonce_of(self.signer.address)
        sent: list[tuple[Attestation, SentTx]] = []
        failed: list[tuple[str, str]] = []
        for stored in attestations_with_status(self.store, AttestationStatus.SIGNED):
            attestation = stored.attestation
            if attestation.signer != self.signer.address:
                continue
            if attestation.nonce != expected:
                attestation = self._resign(attestation, expected)
            try:
                tx = sender.send(self.ledger.record_request(attestation, gas=RECORD_GAS))
            except ChainError as exc:
                mark_failed(self.store, attestation.digest_hex, str(exc))
                failed.append((attestation.digest_hex, str(exc)))
                continue
            mark_submitted(self.store, attestation.digest_hex, tx.tx_hash)
            sent.append((attestation, tx))
            expected += 1
        confirmed = []
        for attestation, tx in sent:
            try:
                receipt = sender.wait(tx, timeout)
            except ChainError as exc:
                mark_failed(self.store, attestation.digest_hex, str(exc))
                failed.append((attestation.digest_hex, str(exc)))
                continue
            mark_confirmed(self.store, attestation.digest_hex, receipt.block_number)
            confirmed.append(attestation.digest_hex)
        return SubmitOutcome(tuple(confirmed), tuple(failed))

    def _sign(self, record: StoredRecord, nonce: int) -> Attestation:
        kind = ATTESTED_TYPES.get(record.record_type)
        if kind is None:
            raise AttestationError(
                f"record {record.record_id} is a {record.record_type!r}: only "
                f"{', '.join(ATTESTED_TYPES)} records are attested on-chain"
            )
        record_type = self.store.classification.of(record.record_type)
        fields = fields_from_record(kind, record, record_type)
        fields.update(nonce=nonce, deadline=int(time.time()) + self.validity_s)
        return self.signer.sign(kind, fields, record_type)

    def _resign(self, stale: Attestation, nonce: int) -> Attestation:
        message: dict[str, Any] = dict(stale.message)
        message.update(nonce=nonce, deadline=int(time.time()) + self.validity_s)
        fresh = self.signer.sign(stale.kind, message)
        mark_failed(self.store, stale.digest_hex, f"nonce {stale.nonce} went stale; re-signed")
        with self.store.transaction() as connection:
            write_attestation(connection, fresh)
        return fresh

    def _next_nonce(self) -> int:
        """After the chain's nonce and every attestation of this signer still on its way."""
        chain_nonce = self.ledger.nonce_of(self.signer.address)
        waiting = (AttestationStatus.SIGNED.value, AttestationStatus.SUBMITTED.value)
        query = select(func.max(ATTESTATIONS.c.nonce)).where(
            ATTESTATIONS.c.signer == self.signer.address, ATTESTATIONS.c.status.in_(waiting)
        )
        with self.store.transaction() as connection:
            highest = connection.execute(query).scalar()
        return chain_nonce if highest is None else max(chain_nonce, int(highest) + 1)
