"""Critical records signed by an oracle, stored with their attestations, relayed on-chain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.consortium import Consortium
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TransactionSender
from node.errors import AttestationError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store, now_us
from node.oracles.attestation import (
    AttestationKind,
    AttestationSigner,
    AttestationStatus,
    attestations_with_status,
    fields_from_record,
    load_stored_attestation,
    verify_bundle,
)
from node.oracles.attestor import Attestor

PART = "https://id.gs1.org/01/09506000134352/10/LOT-0042"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    opened = Store.open(f"sqlite:///{tmp_path / 'store.db'}", classification, BlobStore(tmp_path))
    yield opened
    opened.close()


@pytest.fixture
def attestor(
    store: Store,
    consortium_2_of_3: list[Consortium],
    make_sender: Callable[[LocalAccount], TransactionSender],
    dev_accounts: list[LocalAccount],
) -> Attestor:
    """Aster's oracle signs; Aster's member account relays."""
    aster = consortium_2_of_3[0]
    ledger, _ = QualityLedger.deploy(make_sender(dev_accounts[0]), aster.address, 1)
    oracle: LocalAccount = Account.create()
    aster.register_oracle(oracle.address)
    return Attestor(store, AttestationSigner(oracle, ledger.domain()), ledger)


def _inspection(verdict: str, value: float) -> RecordInput:
    fields = {
        "part_id": PART,
        "characteristic": "coating_thickness",
        "value": value,
        "unit": "4H",
        "verdict": verdict,
        "inspector_id": "EMP-20931",
    }
    return RecordInput("inspection", fields, now_us())


def test_critical_records_reach_the_ledger_in_full_and_personal_data_does_not(
    attestor: Attestor, store: Store
) -> None:
    records = store.add_records([_inspection("pass", 85.2), _inspection("fail", 91.75)])
    attestations = attestor.attest(records)
    outcome = attestor.submit_pending()
    assert outcome.failed == ()
    assert set(outcome.confirmed) == {a.digest_hex for a in attestations}
    on_chain = attestor.ledger.read_record(records[1].record_id)
    assert str(on_chain.value) == "91.75"
    stored = load_stored_attestation(store, attestations[1].digest_hex)
    assert stored.status is AttestationStatus.CONFIRMED
    bundle_text = stored.attestation.to_json()
    assert "EMP-20931" not in bundle_text
    assert verify_bundle(stored.attestation.to_bundle()) == attestor.signer.address
    assert stored.attestation.message["contentHash"] == bytes.fromhex(records[1].content_hash[2:])


def test_a_stale_nonce_is_signed_again_instead_of_sent_to_fail(
    attestor: Attestor, store: Store
) -> None:
    first = attestor.attest(store.add_records([_inspection("pass", 85.0)]))[0]
    # Another process holding the same oracle key used nonce 0 meanwhile.
    other = store.add_records([_inspection("pass", 86.0)])[0]
    fields = fields_from_record(
        AttestationKind.INSPECTION, other, store.classification.of("inspection")
    )
    fields.update(nonce=0, deadline=first.deadline)
    attestor.ledger.record(attestor.signer.sign(AttestationKind.INSPECTION, fields))
    outcome = attestor.submit_pending()
    assert outcome.failed == ()
    assert len(outcome.confirmed) == 1
    assert load_stored_attestation(store, first.digest_hex).status is AttestationStatus.FAILED
    assert attestor.ledger.is_recorded(first.record_id)
    assert attestations_with_status(store, AttestationStatus.SIGNED) == []


def test_a_record_the_chain_refuses_is_marked_failed_with_its_reason(
    attestor: Attestor, store: Store
) -> None:
    record = store.add_records([_inspection("pass", 85.0)])[0]
    attestor.ledger.record(attestor.attest([record])[0])  # recorded behind the attestor's back
    outcome = attestor.submit_pending()
    assert outcome.confirmed == ()
    [(_, reason)] = outcome.failed
    assert "RecordAlreadyRecorded" in reason


def test_only_critical_record_types_are_attested(attestor: Attestor, store: Store) -> None:
    record = store.add_records(
        [RecordInput("environment", {"area": "A", "temperature_c": 21.5}, now_us())]
    )[0]
    with pytest.raises(AttestationError, match="only inspection, setpoint, lab_result"):
        attestor.attest([record])


def test_stored_critical_records_are_found_and_attested_once(
    attestor: Attestor, store: Store
) -> None:
    store.add_records(
        [
            _inspection("pass", 85.0),
            RecordInput("environment", {"area": "A", "temperature_c": 21.5}, now_us()),
            _inspection("fail", 95.0),
        ]
    )
    assert len(attestor.attest_unattested()) == 2
    assert attestor.attest_unattested() == []
    later = store.add_records([_inspection("pass", 84.0)])[0]
    [attestation] = attestor.attest_unattested()
    assert attestation.record_id == later.record_id
    assert len(attestor.submit_pending().confirmed) == 3
