"""EIP-712 attestations: the fast signer against eth_account and ethers v6, bundles, fixed-point
values, privacy, and the attestations table."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from node.chain.artifacts import default_node_modules
from node.errors import AttestationError, PrivacyError, StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import Store
from node.oracles.attestation import (
    SCHEMAS,
    Attestation,
    AttestationKind,
    AttestationSigner,
    AttestationStatus,
    LedgerDomain,
    Verdict,
    attestations_with_status,
    build_typed_data,
    fields_from_record,
    from_fixed_point,
    load_stored_attestation,
    mark_confirmed,
    mark_failed,
    mark_submitted,
    parse_bundle,
    recover_signer,
    reference_digest,
    save_attestation,
    to_fixed_point,
    verify_bundle,
)

REPO = Path(__file__).resolve().parents[2]
VERIFY_JS = Path(__file__).with_name("verify_typed_data.js")
DOMAIN = LedgerDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
ALPHABET = "abcXYZ019 _-/:.?=&%~µ°Ωé中文🙂\u0000\n\"'\\"


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40)))


def _random_fields(kind: AttestationKind, rng: random.Random) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, solidity_type in SCHEMAS[kind].fields:
        if solidity_type == "bytes32":
            fields[name] = "0x" + rng.randbytes(32).hex()
        elif solidity_type == "string":
            fields[name] = _random_string(rng)
        elif solidity_type == "int256":
            fields[name] = rng.choice(
                [0, -1, 2**255 - 1, -(2**255), rng.randrange(-(2**255), 2**255)]
            )
        elif name == "decimals":
            fields[name] = rng.randrange(0, 78)
        elif name == "verdict":
            fields[name] = rng.choice(list(Verdict))
        else:
            bits = {"uint8": 8, "uint64": 64, "uint256": 256}[solidity_type]
            fields[name] = rng.choice([0, 2**bits - 1, rng.randrange(0, 2**bits)])
    return fields


def _random_domain(rng: random.Random) -> LedgerDomain:
    return LedgerDomain(rng.randrange(1, 2**64), "0x" + rng.randbytes(20).hex())


def _typed_data(attestation: Attestation) -> dict[str, Any]:
    bundle = attestation.to_bundle()
    return {key: bundle[key] for key in ("domain", "types", "primaryType", "message")}


def inspection(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "recordId": "0x" + "a1" * 32,
        "subject": "https://id.gs1.org/01/09506000134352/10/LOT-0042",
        "characteristic": "coating_thickness",
        "value": Decimal("85.20"),
        "unit": "4H",
        "verdict": "pass",
        "observedAtUs": 1_764_062_130_123_456,
        "contentHash": "0x" + "c0" * 32,
        "nonce": 0,
        "deadline": 2_000_000_000,
    }
    return {**fields, **overrides}


@pytest.fixture
def oracle() -> LocalAccount:
    return Account.create()


@pytest.fixture
def signer(oracle: LocalAccount) -> AttestationSigner:
    return AttestationSigner(oracle, DOMAIN)


# --------------------------------------------------------------------------------------------------
# The fast path against eth_account


@pytest.mark.parametrize("kind", list(AttestationKind))
def test_the_fast_digest_equals_eth_accounts_for_random_inputs(kind: AttestationKind) -> None:
    rng = random.Random(f"attestation-{kind}")
    for _ in range(150):
        domain = _random_domain(rng)
        fields = _random_fields(kind, rng)
        fast = AttestationSigner(Account.create(), domain).digest(kind, fields)
        assert fast == reference_digest(build_typed_data(kind, fields, domain))


def test_the_fast_signature_is_eth_accounts_signature(
    signer: AttestationSigner, oracle: LocalAccount
) -> None:
    rng = random.Random("signatures")
    for kind in AttestationKind:
        for _ in range(5):
            attestation = signer.sign(kind, _random_fields(kind, rng))
            reference = Account.sign_message(
                encode_typed_data(full_message=_typed_data(attestation)), oracle.key
            )
            assert attestation.signature == bytes(reference.signature)
            assert recover_signer(attestation.digest, attestation.signature) == oracle.address


# --------------------------------------------------------------------------------------------------
# Bundles


def test_a_bundle_round_trips_and_names_its_signer(
    signer: AttestationSigner, oracle: LocalAccount
) -> None:
    attestation = signer.sign(AttestationKind.INSPECTION, inspection())
    bundle = json.loads(attestation.to_json())
    assert bundle["primaryType"] == "InspectionResult"
    assert bundle["domain"] == {
        "name": "QualityLedger",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": DOMAIN.verifying_contract,
    }
    assert bundle["message"]["value"] == "8520" and bundle["message"]["decimals"] == 2
    assert bundle["message"]["verdict"] == 0 and "coSignatures" not in bundle
    assert verify_bundle(bundle) == oracle.address
    assert verify_bundle(attestation.to_json(), DOMAIN) == oracle.address
    assert parse_bundle(bundle) == attestation


def _tamper(bundle: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(bundle))
    *parents, leaf = path.split(".")
    target = copy
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return copy


def test_tampered_or_malformed_bundles_are_refused(signer: AttestationSigner) -> None:
    bundle = signer.sign(AttestationKind.INSPECTION, inspection()).to_bundle()
    other = Account.create().address
    signature = bytes.fromhex(bundle["signature"][2:])
    high_s = (
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
        - int.from_bytes(signature[32:64], "big")
    ).to_bytes(32, "big")
    cases = {
        "message.verdict": (1, "digest does not match"),
        "digest": ("0x" + "00" * 32, "digest does not match"),
        "signer": (other, "not the named signer"),
        "domain.name": ("AnchorRegistry", "is not 'QualityLedger'"),
        "domain.version": ("2", "is not 'QualityLedger'"),
        "domain.chainId": ("31337x", "domain.chainId"),
        "domain.salt": ("0x" + "00" * 32, "exactly name, version"),
        "primaryType": ("Mail", "unknown primaryType"),
        "kind": ("setpoint", "contradicts"),
        "types.InspectionResult": ([], "types are not"),
        "message.nonce": (KeyError, "message fields"),
        "message.value": (85.2, "decimal integer"),
        "message.observedAtUs": (-1, "does not fit a uint64"),
        "signature": ("0x" + signature[:64].hex(), "65 bytes"),
        "coSignatures": ([{"signer": other, "signature": bundle["signature"]}], "only lab"),
    }
    for path, (value, message) in cases.items():
        with pytest.raises(AttestationError, match=message):
            verify_bundle(_tamper(bundle, path, value))
    v_zero = "0x" + (signature[:64] + b"\x00").hex()
    with pytest.raises(AttestationError, match="v must be 27 or 28"):
        verify_bundle(_tamper(bundle, "signature", v_zero))
    malleable = "0x" + (signature[:32] + high_s + bytes((55 - signature[64],))).hex()
    with pytest.raises(AttestationError, match="upper half"):
        verify_bundle(_tamper(bundle, "signature", malleable))
    with pytest.raises(AttestationError, match="not JSON"):
        verify_bundle("{not json")
    with pytest.raises(AttestationError, match="malformed"):
        verify_bundle({"primaryType": "InspectionResult"})
    with pytest.raises(AttestationError, match="not chain 1 "):
        verify_bundle(bundle, LedgerDomain(1, DOMAIN.verifying_contract))


def test_lab_results_carry_checked_co_signatures(signer: AttestationSigner) -> None:
    lab = AttestationSigner(Account.create(), DOMAIN)
    fields = {**_random_fields(AttestationKind.LAB_RESULT, random.Random(1)), "verdict": "fail"}
    co_signed = lab.co_sign(signer.sign(AttestationKind.LAB_RESULT, fields))
    bundle = co_signed.to_bundle()
    assert bundle["coSignatures"] == [
        {"signer": lab.address, "signature": "0x" + co_signed.co_signatures[0].signature.hex()}
    ]
    assert parse_bundle(bundle).co_signatures == co_signed.co_signatures
    with pytest.raises(AttestationError, match=r"coSignatures\[0\] recovers"):
        verify_bundle(
            _tamper(
                bundle, "coSignatures", [{**bundle["coSignatures"][0], "signer": signer.address}]
            )
        )
    with pytest.raises(AttestationError, match="only lab results"):
        lab.co_sign(signer.sign(AttestationKind.INSPECTION, inspection()))
    with pytest.raises(AttestationError, match="another QualityLedger domain"):
        AttestationSigner(Account.create(), LedgerDomain(1, DOMAIN.verifying_contract)).co_sign(
            co_signed
        )


# --------------------------------------------------------------------------------------------------
# ethers v6


def _ethers(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (default_node_modules() / "ethers").is_dir():
        pytest.skip("node or hardhat-local/node_modules/ethers is absent (npm ci in hardhat-local)")
    result = subprocess.run(
        [node, str(VERIFY_JS)],
        input=json.dumps(bundles),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QNODE_NODE_MODULES": str(default_node_modules())},
        check=True,
    )
    checked: list[dict[str, Any]] = json.loads(result.stdout)
    return checked


def test_ethers_verify_typed_data_recovers_the_signer_and_refuses_a_tampered_bundle(
    signer: AttestationSigner, oracle: LocalAccount
) -> None:
    rng = random.Random("ethers")
    lab = AttestationSigner(Account.create(), DOMAIN)
    attestations = [signer.sign(kind, _random_fields(kind, rng)) for kind in AttestationKind]
    attestations[2] = lab.co_sign(attestations[2])
    attestations.append(signer.sign(AttestationKind.INSPECTION, inspection(value=Decimal("-0.5"))))
    bundles = [a.to_bundle() for a in attestations]
    tampered = _tamper(bundles[-1], "message.value", "5")

    *valid, forged = _ethers([*bundles, tampered])

    for attestation, checked in zip(attestations, valid, strict=True):
        assert "error" not in checked, checked
        assert checked["signer"] == oracle.address
        assert checked["digest"] == attestation.digest_hex
    assert valid[2]["coSigners"] == [lab.address]
    assert forged["signer"] != oracle.address  # ethers recovers someone else
    with pytest.raises(AttestationError):
        verify_bundle(tampered)


# --------------------------------------------------------------------------------------------------
# Fixed-point values


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (Decimal("85.20"), None, (8520, 2)),
        (85.2, None, (852, 1)),
        (0.1 + 0.2, None, (30000000000000004, 17)),
        ("1E+3", None, (1000, 0)),
        ("-0.001", None, (-1, 3)),
        (42, None, (42, 0)),
        (Decimal("1.5"), 3, (1500, 3)),
        (Decimal("1.500"), 1, (15, 1)),
        ("-0", None, (0, 0)),
        (Decimal(2**255 - 1), None, (2**255 - 1, 0)),
    ],
)
def test_decimal_values_become_exact_fixed_point(
    value: Any, decimals: int | None, expected: tuple[int, int]
) -> None:
    assert to_fixed_point(value, decimals) == expected
    integer, places = expected
    assert from_fixed_point(integer, places) == Decimal(
        repr(value) if isinstance(value, float) else value
    )


@pytest.mark.parametrize(
    ("value", "decimals", "message"),
    [
        (Decimal("1.2345"), 2, "does not fit 2 decimals exactly"),
        (float("nan"), None, "not finite"),
        (Decimal("-Infinity"), None, "not finite"),
        ("12,5", None, "not a decimal number"),
        (True, None, "boolean"),
        (Decimal(2**255), None, "does not fit an int256"),
        (Decimal("1"), 78, "out of range"),
        (Decimal("1E-80"), None, "out of range"),
    ],
)
def test_values_that_cannot_be_exact_are_refused(
    value: Any, decimals: int | None, message: str
) -> None:
    with pytest.raises(AttestationError, match=message):
        to_fixed_point(value, decimals)


def test_message_fields_are_checked(signer: AttestationSigner) -> None:
    with pytest.raises(AttestationError, match="missing nonce"):
        signer.sign(
            AttestationKind.INSPECTION, {k: v for k, v in inspection().items() if k != "nonce"}
        )
    with pytest.raises(AttestationError, match="unknown line"):
        signer.sign(AttestationKind.INSPECTION, inspection(line="L1"))
    with pytest.raises(AttestationError, match="verdict 'maybe'"):
        signer.sign(AttestationKind.INSPECTION, inspection(verdict="maybe"))
    with pytest.raises(AttestationError, match="recordId must be"):
        signer.sign(AttestationKind.INSPECTION, inspection(recordId="0x1234"))
    with pytest.raises(AttestationError, match="does not fit a uint64"):
        signer.sign(AttestationKind.INSPECTION, inspection(observedAtUs=2**64))
    with pytest.raises(AttestationError, match="unknown attestation kind"):
        signer.sign("hold", inspection())
    explicit = signer.sign(AttestationKind.INSPECTION, inspection(value=8520, decimals=2))
    assert explicit.digest == signer.sign(AttestationKind.INSPECTION, inspection()).digest


# --------------------------------------------------------------------------------------------------
# Privacy


@pytest.fixture
def store(tmp_path: Path, store_url: str) -> Store:
    opened = Store.open(
        store_url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(tmp_path / "blobs")
    )
    yield opened  # type: ignore[misc]
    opened.close()


INSPECTOR = "emp-4711-Zoë"
TEMPLATE = "bio:3f9a77e1c0ffee"


def test_an_inspectors_identity_never_reaches_the_typed_data(
    store: Store, signer: AttestationSigner
) -> None:
    inspection_type = store.classification.of("inspection")
    (record,) = store.add_records(
        [
            RecordInput(
                "inspection",
                {
                    "part_id": "https://id.gs1.org/01/09506000134352/21/CELL-0001",
                    "characteristic": "ncm_ratio",
                    "value": "0.8123",
                    "unit": "P1",
                    "verdict": "pass",
                    "inspector_id": INSPECTOR,
                    "biometric_template": TEMPLATE,
                },
                1_764_062_130_123_456,
            )
        ]
    )
    fields = fields_from_record(AttestationKind.INSPECTION, record, inspection_type)
    attestation = signer.sign(
        AttestationKind.INSPECTION, {**fields, "nonce": 0, "deadline": 2**40}, inspection_type
    )
    text = attestation.to_json()
    for secret in (INSPECTOR, TEMPLATE, "inspector_id", "biometric_template"):
        assert secret not in text
    assert attestation.record_id == record.record_id
    assert attestation.message["contentHash"] == bytes.fromhex(record.content_hash[2:])
    assert attestation.message["observedAtUs"] == record.observed_at_us
    assert from_fixed_point(
        attestation.message["value"], attestation.message["decimals"]
    ) == Decimal("0.8123")

    with pytest.raises(PrivacyError, match="inspector_id"):
        fields_from_record(
            AttestationKind.INSPECTION,
            record,
            inspection_type,
            mapping={"subject": "part_id", "characteristic": "inspector_id"},
        )
    with pytest.raises(PrivacyError, match="inspector_id"):
        build_typed_data(AttestationKind.INSPECTION, inspection(inspector_id=INSPECTOR), DOMAIN)
    with pytest.raises(PrivacyError, match="biometric_template"):
        signer.sign(AttestationKind.INSPECTION, inspection(biometric_template=TEMPLATE))
    forged = _tamper(attestation.to_bundle(), "message.inspector_id", INSPECTOR)
    with pytest.raises(PrivacyError):
        verify_bundle(forged)


# --------------------------------------------------------------------------------------------------
# The attestations table


def test_attestations_are_stored_and_move_signed_submitted_confirmed(
    store: Store, signer: AttestationSigner
) -> None:
    attestations = [
        signer.sign(AttestationKind.INSPECTION, inspection(recordId="0x" + f"{i:064x}", nonce=i))
        for i in (2, 0, 1)
    ]
    for attestation in attestations:
        save_attestation(store, attestation)
    signed = attestations_with_status(store, AttestationStatus.SIGNED)
    assert [s.attestation.nonce for s in signed] == [0, 1, 2]  # the order the chain accepts
    first, second = attestations[1], attestations[2]

    mark_submitted(store, first.digest_hex, "0x" + "ee" * 32)
    mark_confirmed(store, first.digest_hex, 42)
    stored = load_stored_attestation(store, first.digest_hex)
    assert stored.attestation == first
    assert (stored.status, stored.tx_hash, stored.block_number) == (
        AttestationStatus.CONFIRMED,
        "0x" + "ee" * 32,
        42,
    )
    with pytest.raises(StoreError, match="is confirmed: it cannot become submitted"):
        mark_submitted(store, first.digest_hex, "0x" + "ff" * 32)
    with pytest.raises(StoreError, match="is signed: it cannot become confirmed"):
        mark_confirmed(store, second.digest_hex, 43)
    mark_failed(store, second.digest_hex, "ExpiredSignature(deadline=1)")
    mark_submitted(store, second.digest_hex, "0x" + "dd" * 32)  # a retry
    assert load_stored_attestation(store, second.digest_hex).error is None
    with pytest.raises(StoreError, match="no attestation"):
        load_stored_attestation(store, "0x" + "00" * 32)
    with pytest.raises(StoreError):  # the same digest twice
        save_attestation(store, first)


# --------------------------------------------------------------------------------------------------
# qnode attest verify


def test_qnode_attest_verify_prints_the_verdict(
    tmp_path: Path, signer: AttestationSigner, oracle: LocalAccount
) -> None:
    good = tmp_path / "good.json"
    bad = tmp_path / "bad.json"
    bundle = signer.sign(AttestationKind.INSPECTION, inspection()).to_bundle()
    good.write_text(json.dumps(bundle), encoding="utf-8")
    bad.write_text(json.dumps(_tamper(bundle, "message.verdict", 1)), encoding="utf-8")

    def attest_verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "node", "attest", "verify", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
        )

    ok = attest_verify(good)
    assert ok.returncode == 0, ok.stderr
    assert "valid: InspectionResult" in ok.stdout and "= 85.20 4H" in ok.stdout
    assert f"signed by {oracle.address}" in ok.stdout
    refused = attest_verify(bad)
    assert refused.returncode == AttestationError.exit_code
    assert refused.stderr.startswith("qnode: error: invalid attestation bundle")
    assert "digest does not match" in refused.stderr and "Traceback" not in refused.stderr
