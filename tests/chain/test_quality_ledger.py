"""QualityLedger.sol through the node's binding and signer, on the in-process chain and Hardhat."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.artifacts import check_fresh, default_node_modules, load_artifact
from node.chain.connection import ChainConnection, rpc_chain
from node.chain.consortium import Consortium, Role
from node.chain.contract_errors import (
    DuplicateLabCoSigner,
    ECDSAInvalidSignatureLength,
    ExpiredSignature,
    InvalidAccountNonce,
    InvalidConsortium,
    InvalidLabQuorum,
    InvalidVerdict,
    LabQuorumNotMet,
    NotActiveMember,
    NotLabOracle,
    RecordAlreadyRecorded,
    SignerNotActiveOracle,
    UnknownRecord,
    ZeroRecordId,
)
from node.chain.quality_ledger import ARTIFACT_NAME, QualityLedger, RecordKind
from node.chain.sender import TransactionSender
from node.errors import AttestationError
from node.oracles.attestation import (
    Attestation,
    AttestationKind,
    AttestationSigner,
    LedgerDomain,
    Verdict,
)
from node.settings import LOCAL_CHAIN_ID, load_settings
from tests.hardhat_node import HardhatChain
from tests.test_cli import init_member, qnode

PART = "https://id.gs1.org/01/09506000134352/10/LOT-0042"
COATER = "https://id.gs1.org/8004/0950600013435COATER01"
SAMPLE = "https://id.gs1.org/01/09506000134352/10/LOT-0042/21/S7"
RECORD_GAS = 600_000


def _record_id() -> str:
    return "0x" + os.urandom(32).hex()


def _content_hash(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def inspection_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "recordId": _record_id(),
        "subject": PART,
        "characteristic": "coating_thickness",
        "value": Decimal("-85.20"),
        "unit": "4H",
        "verdict": "fail",
        "observedAtUs": 1_764_062_130_123_456,
        "contentHash": _content_hash("inspection"),
    }
    return {**fields, **overrides}


def setpoint_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "recordId": _record_id(),
        "equipment": COATER,
        "parameter": "blade_pressure",
        "value": Decimal("0.05"),
        "unit": "BAR",
        "effectiveAtUs": 1_764_062_131_000_000,
        "contentHash": _content_hash("setpoint"),
    }
    return {**fields, **overrides}


def lab_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "recordId": _record_id(),
        "sample": SAMPLE,
        "method": "ICP-OES NCM ratio",
        "value": Decimal("0.8123"),
        "unit": "P1",
        "verdict": Verdict.PASS,
        "observedAtUs": 1_764_062_140_000_000,
        "contentHash": _content_hash("lab"),
    }
    return {**fields, **overrides}


class Oracle:
    """An oracle key registered by a member, signing for one ledger; tracks its own nonce."""

    def __init__(self, account: LocalAccount, ledger: QualityLedger, domain: LedgerDomain) -> None:
        self.account = account
        self.ledger = ledger
        self.signer = AttestationSigner(account, domain)
        self.next_nonce = 0

    @property
    def address(self) -> str:
        return self.account.address

    def sign(self, kind: AttestationKind, fields: dict[str, Any], **extra: Any) -> Attestation:
        values = {"nonce": self.next_nonce, "deadline": _deadline(self.ledger), **fields, **extra}
        if "nonce" not in extra:
            self.next_nonce += 1
        return self.signer.sign(kind, values)


def _deadline(ledger: QualityLedger) -> int:
    head = ledger.binding.sender.connection.w3.eth.get_block("latest")
    return int(head["timestamp"]) + 3600


# --------------------------------------------------------------------------------------------------
# The artifact


@pytest.mark.skipif(
    not (default_node_modules() / "@openzeppelin" / "contracts").is_dir(),
    reason="hardhat-local/node_modules/@openzeppelin/contracts is absent (npm ci in hardhat-local)",
)
def test_committed_artifact_is_fresh() -> None:
    artifact = load_artifact(ARTIFACT_NAME)
    check_fresh(artifact)
    assert {
        "contracts/QualityLedger.sol",
        "contracts/interfaces/IQualityLedger.sol",
        "@openzeppelin/contracts/utils/cryptography/EIP712.sol",
        "@openzeppelin/contracts/utils/Nonces.sol",
    } <= set(artifact.sources)


def test_events_are_past_tense_with_at_most_three_indexed_keys() -> None:
    abi = load_artifact(ARTIFACT_NAME).abi
    events = {e["name"]: e for e in abi if e["type"] == "event"}
    assert {"InspectionRecorded", "SetpointRecorded", "LabResultRecorded"} <= set(events)
    for event in events.values():
        assert sum(1 for i in event["inputs"] if i["indexed"]) <= 3


# --------------------------------------------------------------------------------------------------
# Fixtures

LedgerFactory = Callable[[int], QualityLedger]
OracleFactory = Callable[[Consortium], Oracle]


@pytest.fixture
def deploy_ledger(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> LedgerFactory:
    def deploy(lab_quorum: int) -> QualityLedger:
        ledger, _ = QualityLedger.deploy(
            make_sender(dev_accounts[0]), consortium_2_of_3[0].address, lab_quorum
        )
        return ledger

    return deploy


@pytest.fixture
def ledger(deploy_ledger: LedgerFactory) -> QualityLedger:
    """A ledger with lab quorum 1, relaying as Aster (dev account 0, manufacturer)."""
    return deploy_ledger(1)


@pytest.fixture
def relay_as(
    ledger: QualityLedger,
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> Callable[[int], QualityLedger]:
    return lambda index: QualityLedger.at(make_sender(dev_accounts[index]), ledger.address)


@pytest.fixture
def new_oracle(ledger: QualityLedger) -> OracleFactory:
    """A fresh oracle key registered by the member behind ``consortium``; it needs no gas: members
    relay what it signs."""
    domain = ledger.domain()

    def make(consortium: Consortium) -> Oracle:
        account: LocalAccount = Account.create()
        consortium.register_oracle(account.address)
        return Oracle(account, ledger, domain)

    return make


# --------------------------------------------------------------------------------------------------
# Recording and reading back


def test_the_domain_and_digests_match_the_contract(
    chain: ChainConnection,
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
) -> None:
    domain = ledger.domain()
    assert domain == LedgerDomain(chain.chain_id, ledger.address)
    oracle = new_oracle(consortium_2_of_3[0])
    for kind, fields in (
        (AttestationKind.INSPECTION, inspection_fields()),
        (AttestationKind.SETPOINT, setpoint_fields()),
        (AttestationKind.LAB_RESULT, lab_fields()),
    ):
        attestation = oracle.sign(kind, fields)
        assert ledger.digest(attestation) == attestation.digest


def test_an_inspection_is_recorded_and_read_back_with_the_same_values(
    chain: ChainConnection,
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    attestation = oracle.sign(AttestationKind.INSPECTION, inspection_fields())
    assert ledger.nonce_of(oracle.address) == 0

    receipt = ledger.record_inspection(attestation.to_bundle())  # the JSON bundle, as relayed

    stored = ledger.inspection(attestation.record_id)
    assert stored.message == attestation.message
    assert stored.value == Decimal("-85.20")
    assert stored.message["verdict"] == Verdict.FAIL
    assert ledger.nonce_of(oracle.address) == 1
    assert ledger.is_recorded(attestation.record_id) and ledger.record_count() == 1
    who = ledger.attribution(attestation.record_id)
    assert who.kind is RecordKind.INSPECTION
    assert (who.member, who.oracle, who.relayer) == (
        dev_accounts[0].address,
        oracle.address,
        dev_accounts[0].address,
    )
    assert who.digest == attestation.digest_hex and who.block_number == receipt.block_number
    block = chain.w3.eth.get_block(receipt.block_number)
    assert who.recorded_at == int(block["timestamp"])

    (event,) = ledger.recorded_events(receipt.block_number)
    assert (event.kind, event.record_id, event.member) == (
        AttestationKind.INSPECTION,
        attestation.record_id,
        dev_accounts[0].address,
    )
    assert event.key_hash == "0x" + keccak(text=PART).hex()
    assert (event.oracle, event.verdict, event.digest) == (
        oracle.address,
        int(Verdict.FAIL),
        attestation.digest_hex,
    )


def test_a_setpoint_relayed_by_another_member_is_recorded_for_the_signers_member(
    ledger: QualityLedger,
    relay_as: Callable[[int], QualityLedger],
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])  # Aster's oracle
    attestation = oracle.sign(AttestationKind.SETPOINT, setpoint_fields())
    relay_as(1).record_setpoint(attestation)  # relayed by Borealis

    stored = ledger.setpoint(attestation.record_id)
    assert stored.message == attestation.message
    assert stored.value == Decimal("0.05")
    who = ledger.attribution(attestation.record_id)
    assert (who.kind, who.member, who.relayer) == (
        RecordKind.SETPOINT,
        dev_accounts[0].address,
        dev_accounts[1].address,
    )
    assert ledger.read_record(attestation.record_id) == stored


def test_lab_results_count_the_labs_own_oracle_and_lab_co_signers(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    aster, _, cobalt = consortium_2_of_3[:3]
    lab_oracle = new_oracle(cobalt)
    own = lab_oracle.sign(AttestationKind.LAB_RESULT, lab_fields())
    ledger.record_lab_result(own)  # a lab's own oracle: its signature is the lab's approval
    assert ledger.lab_result(own.record_id).co_signers == ()

    plant_oracle = new_oracle(aster)
    result = plant_oracle.sign(AttestationKind.LAB_RESULT, lab_fields(verdict="conditional"))
    co_signed = lab_oracle.signer.co_sign(result)
    ledger.record_lab_result(co_signed.to_bundle())
    stored = ledger.lab_result(result.record_id)
    assert stored.message == result.message
    assert stored.co_signers == (lab_oracle.address,)
    (event,) = ledger.recorded_events(0, kinds=(AttestationKind.LAB_RESULT,), key=SAMPLE)[1:]
    assert event.co_signers == (lab_oracle.address,) and event.verdict == int(Verdict.CONDITIONAL)


def test_a_lab_quorum_of_two_needs_two_distinct_labs(
    deploy_ledger: LedgerFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    aster, borealis, cobalt, dev3 = consortium_2_of_3[:4]
    admission = aster.propose_admission(dev_accounts[3].address, Role.LAB, "Delta Labs", "")
    borealis.approve(admission.proposal_id)
    ledger = deploy_ledger(2)
    assert ledger.lab_quorum() == 2
    domain = ledger.domain()

    def oracle_of(consortium: Consortium) -> Oracle:
        account: LocalAccount = Account.create()
        consortium.register_oracle(account.address)
        return Oracle(account, ledger, domain)

    plant, cobalt_a, cobalt_b, delta, supplier = (
        oracle_of(aster),
        oracle_of(cobalt),
        oracle_of(cobalt),
        oracle_of(dev3),
        oracle_of(borealis),
    )

    alone = cobalt_a.sign(AttestationKind.LAB_RESULT, lab_fields(), nonce=0)
    with pytest.raises(LabQuorumNotMet) as not_met:
        ledger.record_lab_result(alone)
    assert not_met.value.args_by_name == {"approvals": 1, "quorum": 2}

    result = plant.sign(AttestationKind.LAB_RESULT, lab_fields(), nonce=0)
    cases = [
        ([cobalt_a, cobalt_a], DuplicateLabCoSigner),  # the same key twice
        ([cobalt_a, cobalt_b], DuplicateLabCoSigner),  # two keys of one lab
        ([cobalt_a, supplier], NotLabOracle),  # a supplier is not a lab
    ]
    for co_signers, error in cases:
        bundle = result
        for co_signer in co_signers:
            bundle = co_signer.signer.co_sign(bundle)
        with pytest.raises(error):
            ledger.record_lab_result(bundle)
    own_lab_twice = delta.signer.co_sign(cobalt_b.signer.co_sign(alone))
    with pytest.raises(DuplicateLabCoSigner) as duplicate:
        ledger.record_lab_result(cobalt_a.signer.co_sign(alone))  # its own lab again
    assert duplicate.value.args_by_name == {"member": dev_accounts[2].address}
    with pytest.raises(DuplicateLabCoSigner):
        ledger.record_lab_result(own_lab_twice)

    ledger.record_lab_result(delta.signer.co_sign(cobalt_a.signer.co_sign(result)))
    assert ledger.lab_result(result.record_id).co_signers == (cobalt_a.address, delta.address)
    ledger.record_lab_result(delta.signer.co_sign(alone))
    assert ledger.record_count() == 2


# --------------------------------------------------------------------------------------------------
# Refusals


def test_an_expired_deadline_is_refused(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    expired = oracle.sign(AttestationKind.INSPECTION, inspection_fields(), deadline=1, nonce=0)
    with pytest.raises(ExpiredSignature) as raised:
        ledger.record(expired)
    assert raised.value.args_by_name == {"deadline": 1}
    assert ledger.nonce_of(oracle.address) == 0


def test_a_wrong_nonce_and_a_replayed_signature_are_refused(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    ahead = oracle.sign(AttestationKind.INSPECTION, inspection_fields(), nonce=5)
    with pytest.raises(InvalidAccountNonce) as raised:
        ledger.record(ahead)
    assert raised.value.args_by_name == {"account": oracle.address, "currentNonce": 0}

    first = oracle.sign(AttestationKind.INSPECTION, inspection_fields())
    ledger.record(first)
    with pytest.raises(InvalidAccountNonce) as replay:
        ledger.record(first)
    assert replay.value.args_by_name == {"account": oracle.address, "currentNonce": 1}
    # With explicit gas nothing is estimated: the receipt fails, and the error is still named.
    with pytest.raises(InvalidAccountNonce):
        ledger.binding.sender.transact(ledger.record_request(first, gas=RECORD_GAS))
    assert ledger.record_count() == 1


def test_signers_that_are_not_active_oracles_are_refused(
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    domain = ledger.domain()
    stranger = Oracle(Account.create(), ledger, domain)  # never registered
    member_key = Oracle(dev_accounts[0], ledger, domain)  # a member, but not one of its oracles
    for oracle in (stranger, member_key):
        with pytest.raises(SignerNotActiveOracle) as raised:
            ledger.record(oracle.sign(AttestationKind.INSPECTION, inspection_fields()))
        assert raised.value.args_by_name == {"signer": oracle.address}


def test_a_revoked_oracle_is_refused(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    borealis = consortium_2_of_3[1]
    oracle = new_oracle(borealis)
    ledger.record(oracle.sign(AttestationKind.SETPOINT, setpoint_fields()))
    borealis.revoke_oracle(oracle.address)
    with pytest.raises(SignerNotActiveOracle):
        ledger.record(oracle.sign(AttestationKind.SETPOINT, setpoint_fields()))
    assert ledger.record_count() == 1


def test_an_oracle_of_a_removed_member_is_refused(
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    aster, borealis, cobalt = consortium_2_of_3[:3]
    oracle = new_oracle(cobalt)
    recorded = oracle.sign(AttestationKind.LAB_RESULT, lab_fields())
    ledger.record(recorded)
    removal = aster.propose_removal(dev_accounts[2].address)
    borealis.approve(removal.proposal_id)
    with pytest.raises(SignerNotActiveOracle):
        ledger.record(oracle.sign(AttestationKind.LAB_RESULT, lab_fields()))
    # What was recorded before the removal stays, under the member it was recorded for.
    assert ledger.attribution(recorded.record_id).member == dev_accounts[2].address


def test_a_signature_for_another_chain_or_contract_is_refused(
    chain: ChainConnection,
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    other_chain = LedgerDomain(chain.chain_id + 1, ledger.address)
    other_contract = LedgerDomain(chain.chain_id, consortium_2_of_3[0].address)
    for domain in (other_chain, other_contract):
        foreign = AttestationSigner(oracle.account, domain).sign(
            AttestationKind.INSPECTION,
            {**inspection_fields(), "nonce": 0, "deadline": _deadline(ledger)},
        )
        with pytest.raises(SignerNotActiveOracle) as raised:
            ledger.record(foreign)
        assert raised.value.args_by_name["signer"] != oracle.address
    assert ledger.nonce_of(oracle.address) == 0


def test_only_active_members_relay(
    ledger: QualityLedger,
    new_oracle: OracleFactory,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    attestation = oracle.sign(AttestationKind.INSPECTION, inspection_fields())
    outsider = QualityLedger.at(make_sender(dev_accounts[5]), ledger.address)
    with pytest.raises(NotActiveMember) as raised:
        outsider.record(attestation)
    assert raised.value.args_by_name == {"account": dev_accounts[5].address}
    assert not ledger.is_recorded(attestation.record_id)


def test_a_record_id_is_recorded_once_whatever_its_kind(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    record_id = _record_id()
    ledger.record(oracle.sign(AttestationKind.INSPECTION, inspection_fields(recordId=record_id)))
    for kind, fields in (
        (AttestationKind.INSPECTION, inspection_fields(recordId=record_id, verdict="pass")),
        (AttestationKind.SETPOINT, setpoint_fields(recordId=record_id)),
    ):
        with pytest.raises(RecordAlreadyRecorded) as raised:
            ledger.record(oracle.sign(kind, fields, nonce=1))
        assert raised.value.args_by_name == {"recordId": bytes.fromhex(record_id[2:])}
    assert ledger.inspection(record_id).message["verdict"] == Verdict.FAIL
    with pytest.raises(UnknownRecord):
        ledger.setpoint(record_id)  # it holds an inspection result, not a setpoint
    with pytest.raises(UnknownRecord):
        ledger.attribution(_record_id())


def test_malformed_records_are_refused(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    good = oracle.sign(AttestationKind.INSPECTION, inspection_fields(), nonce=0)
    with pytest.raises(ZeroRecordId):
        ledger.record(replace(good, message={**good.message, "recordId": bytes(32)}))
    with pytest.raises(InvalidVerdict) as raised:
        ledger.record(replace(good, message={**good.message, "verdict": 9}))
    assert raised.value.args_by_name == {"verdict": 9}
    with pytest.raises(ECDSAInvalidSignatureLength):
        ledger.record(replace(good, signature=good.signature[:64]))
    with pytest.raises(AttestationError, match="expected a setpoint"):
        ledger.record_setpoint(good)
    tampered = good.to_bundle()
    tampered["message"]["verdict"] = int(Verdict.PASS)
    with pytest.raises(AttestationError):  # checked offline before anything is sent
        ledger.record(tampered)
    assert ledger.record_count() == 0


def test_deployment_checks_the_consortium_and_the_quorum(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> None:
    sender = make_sender(dev_accounts[0])
    with pytest.raises(InvalidConsortium):
        QualityLedger.deploy(sender, dev_accounts[7].address, 1)
    with pytest.raises(InvalidLabQuorum):
        QualityLedger.deploy(sender, consortium_2_of_3[0].address, 0)


def test_records_pipeline_in_nonce_order_with_explicit_gas(
    ledger: QualityLedger, new_oracle: OracleFactory, consortium_2_of_3: list[Consortium]
) -> None:
    oracle = new_oracle(consortium_2_of_3[0])
    attestations = [
        oracle.sign(AttestationKind.INSPECTION, inspection_fields(value=Decimal(i) / 10))
        for i in range(6)
    ]
    sender = ledger.binding.sender
    sent = [sender.send(ledger.record_request(a, gas=RECORD_GAS)) for a in attestations]
    receipts = sender.wait_all(sent)
    assert all(r.gas_used < RECORD_GAS for r in receipts)
    assert ledger.nonce_of(oracle.address) == 6
    assert [ledger.inspection(a.record_id).value for a in attestations] == [
        Decimal(i) / 10 for i in range(6)
    ]
    events = ledger.recorded_events(receipts[0].block_number, member=sender.address, key=PART)
    assert [e.record_id for e in events] == [a.record_id for a in attestations]
    assert ledger.recorded_events(receipts[0].block_number, key="urn:other") == []


# --------------------------------------------------------------------------------------------------
# qnode attest deploy


def test_qnode_attest_deploy_records_the_deployment(
    tmp_path: Path, hardhat_chain: HardhatChain, dev_accounts: list[LocalAccount]
) -> None:
    config = init_member(tmp_path / "aster", hardhat_chain.url, 0)
    assert qnode("consortium", "deploy", "-c", str(config), "--threshold", "1").returncode == 0
    deployed = qnode("attest", "deploy", "-c", str(config), "--lab-quorum", "2")
    assert deployed.returncode == 0, deployed.stderr
    assert "QualityLedger deployed at" in deployed.stdout

    data_path = load_settings(config).data_path
    deployments = json.loads((data_path / "deployments.json").read_text(encoding="utf-8"))
    address = deployments[str(LOCAL_CHAIN_ID)]["QualityLedger"]["address"]
    sender = TransactionSender(rpc_chain(hardhat_chain.url), dev_accounts[0])
    ledger = QualityLedger.at(sender, address)
    assert ledger.lab_quorum() == 2
    assert ledger.consortium() == deployments[str(LOCAL_CHAIN_ID)]["Consortium"]["address"]
