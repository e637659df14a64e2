"""The proof checker: a verdict with its reasons for every bad bundle, and for good ones; it never
raises, whatever it is given."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.anchoring.merkle import StandardMerkleTree
from node.anchoring.proofs import BUNDLE_FORMAT
from node.chain.anchor_registry import AnchorRegistry
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import TransactionSender
from node.explorer import REASONS, ProofVerdict, check_bundle
from node.explorer.proof_check import MAX_BUNDLE_BYTES
from node.keys import hardhat_dev_key
from node.offchain.records import LEAF_ENCODING, canonical_record, content_hash, new_record_id
from node.oracles.attestation import AttestationKind, AttestationSigner, LedgerDomain
from tests.explorer.conftest import CELL, OBSERVED, World

Bundle = dict[str, Any]


def check(world: World, bundle: Bundle | str | bytes, offline: bool = False) -> ProofVerdict:
    text = bundle if isinstance(bundle, str | bytes) else json.dumps(bundle)
    verdict = world.explorer.check_proof(text, offline=offline)
    for failure in verdict.failures:
        assert failure.reason in REASONS, failure
    return verdict


def changed(bundle: Bundle, change: Callable[[Bundle], object]) -> Bundle:
    copied = copy.deepcopy(bundle)
    change(copied)
    return copied


def replaced(bundle: Bundle, *path: str, value: object) -> Bundle:
    """A copy of ``bundle`` with the value at ``path`` (keys, outermost first) replaced."""
    copied = copy.deepcopy(bundle)
    inner = copied
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return copied


def assert_fails(verdict: ProofVerdict, reason: str, fragment: str = "") -> None:
    assert not verdict.valid
    assert verdict.reasons == (reason,), verdict.checks
    assert fragment.lower() in verdict.failures[0].detail.lower(), verdict.failures[0].detail
    assert verdict.summary.startswith("INVALID: ")


def random_b32() -> str:
    return "0x" + os.urandom(32).hex()


# -- Merkle proof bundles: good ---------------------------------------------------------------


def test_a_good_bundle_is_valid_offline_and_on_chain(world: World) -> None:
    verdict = check(world, world.bundle)
    assert verdict.valid and verdict.on_chain and verdict.kind == "merkle"
    assert verdict.summary == "VALID on-chain"
    assert {c.status for c in verdict.checks} == {"pass"}
    names = [c.name for c in verdict.checks]
    for name in ("record", "leaf", "proof", "anchored", "contract", "member", "on-chain verifier"):
        assert name in names
    assert verdict.record_id == world.anchored[2].record_id
    assert verdict.batch_id == world.batch.batch_id and verdict.root == world.batch.root
    assert verdict.facts["anchored_member"] == world.aster.address
    assert verdict.facts["anchored_block"] == world.batch.block_number
    offline = check(world, world.bundle, offline=True)
    assert offline.valid and not offline.on_chain
    assert offline.summary == "VALID offline only (no chain checked)"
    assert "anchored" not in [c.name for c in offline.checks]


# -- Merkle proof bundles: bad input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"format": "qnode-proof-v1", "record": ', "malformed_json"),
        ("", "malformed_json"),
        ("not json at all", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        ("[" * 100_000 + "]" * 100_000, "malformed_json"),
        ("[1, 2]", "not_a_bundle"),
        ("42", "not_a_bundle"),
        ('{"format": "something-else"}', "not_a_bundle"),
        ("{}", "not_a_bundle"),
        (" " * (MAX_BUNDLE_BYTES + 1), "too_large"),
    ],
)
def test_text_that_is_not_a_bundle(world: World, text: str | bytes, reason: str) -> None:
    verdict = check(world, text)
    assert_fails(verdict, reason)
    assert verdict.kind == "unknown" and not verdict.on_chain


def test_a_truncated_bundle_is_malformed_json(world: World) -> None:
    text = json.dumps(world.bundle)
    assert_fails(check(world, text[: len(text) // 2]), "malformed_json", "truncated")


def test_missing_fields_are_named(world: World) -> None:
    def drop(bundle: Bundle) -> None:
        del bundle["proof"], bundle["root"]

    assert_fails(check(world, changed(world.bundle, drop)), "missing_fields", "proof, root")
    no_format = changed(world.bundle, lambda b: b.pop("format"))
    assert_fails(check(world, no_format), "missing_fields", "format")
    other_format = changed(world.bundle, lambda b: b.__setitem__("format", "qnode-proof-v0"))
    assert_fails(check(world, other_format), "not_a_bundle", "qnode-proof-v0")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("proof", "0x12"),
        ("proof", ["0x12"]),
        ("root", 7),
        ("batchId", None),
        ("leafValue", ["0x00"]),
        ("leafEncoding", ["bytes32"]),
        ("record", []),
        ("anchor", "here"),
    ],
)
def test_fields_of_the_wrong_form(world: World, field: str, value: object) -> None:
    bundle = changed(world.bundle, lambda b: b.__setitem__(field, value))
    assert_fails(check(world, bundle), "bad_field", field)


def test_an_altered_record_does_not_hash_to_its_leaf(world: World) -> None:
    bundle = changed(world.bundle, lambda b: b["record"]["fields"].__setitem__("value", 99.9))
    assert_fails(check(world, bundle), "record_altered", "altered")
    other_id = changed(world.bundle, lambda b: b["record"].__setitem__("id", random_b32()))
    assert_fails(check(world, other_id), "record_altered", "id")


def test_a_wrong_leaf_hash(world: World) -> None:
    bundle = changed(world.bundle, lambda b: b.__setitem__("leafHash", random_b32()))
    assert_fails(check(world, bundle), "leaf_hash_mismatch", "leaf hashes to")


def test_a_proof_that_does_not_lead_to_the_root(world: World) -> None:
    bundle = changed(world.bundle, lambda b: b["proof"].__setitem__(0, random_b32()))
    assert_fails(check(world, bundle), "proof_mismatch", "not to the root")
    other_root = changed(world.bundle, lambda b: b.__setitem__("root", random_b32()))
    assert_fails(check(world, other_root), "proof_mismatch")


def test_a_root_that_is_not_anchored(world: World) -> None:
    bundle = changed(world.bundle, lambda b: b.__setitem__("batchId", random_b32()))
    assert check(world, bundle, offline=True).valid  # the hashes alone hold
    assert_fails(check(world, bundle), "not_anchored", "is not anchored")
    nowhere = changed(world.bundle, lambda b: b["anchor"].__setitem__("contract", "0x" + "42" * 20))
    assert_fails(check(world, nowhere), "not_anchored", "no AnchorRegistry")


def test_a_batch_anchored_with_another_root(world: World) -> None:
    record = world.bundle["record"]
    leaf = (record["id"], content_hash(record))  # type: ignore[index]
    tree = StandardMerkleTree.of([leaf, (random_b32(), random_b32())], list(LEAF_ENCODING))
    forged = {**copy.deepcopy(world.bundle), **_tree_fields(tree, leaf)}
    assert check(world, forged, offline=True).valid
    assert_fails(check(world, forged), "root_mismatch", "anchored with root")


def test_another_chain_or_block(world: World) -> None:
    chain = changed(world.bundle, lambda b: b["anchor"].__setitem__("chainId", 1))
    assert_fails(check(world, chain), "wrong_chain", "chain 1")
    block = changed(world.bundle, lambda b: b["anchor"].__setitem__("blockNumber", 1))
    assert_fails(check(world, block), "block_mismatch", "not 1")


def test_a_root_anchored_by_a_non_member(world: World) -> None:
    """A registry of another consortium accepts roots from its own oracles: a bundle anchored
    there is internally consistent, and anchored, but not by a member of this consortium."""
    connection = world.aster.connection
    outsider = TransactionSender(connection, hardhat_dev_key(6))
    rogue, _ = Consortium.deploy(
        outsider, [Founder(outsider.address, Role.MANUFACTURER, "Rogue", "")], 1, 3600
    )
    oracle: LocalAccount = Account.create()
    outsider.transfer(oracle.address, 10**18)
    rogue.register_oracle(oracle.address)
    registry, _ = AnchorRegistry.deploy(outsider, rogue.address)
    record = canonical_record(
        new_record_id(),
        "inspection",
        OBSERVED,
        {"part_id": "P-1", "characteristic": "bore", "value": 10.0, "unit": "MMT"},
        None,
    )
    leaf = (record["id"], content_hash(record))
    tree = StandardMerkleTree.of([leaf, (random_b32(), random_b32())], list(LEAF_ENCODING))
    batch_id = random_b32()
    as_oracle = AnchorRegistry.at(TransactionSender(connection, oracle), registry.address)
    receipt = as_oracle.anchor(batch_id, tree.root, 2, random_b32())
    bundle = {
        "format": BUNDLE_FORMAT,
        "record": record,
        "leafEncoding": list(LEAF_ENCODING),
        **_tree_fields(tree, leaf),
        "batchId": batch_id,
        "anchor": {
            "chainId": connection.chain_id,
            "contract": registry.address,
            "txHash": receipt.tx_hash,
            "blockNumber": receipt.block_number,
            "oracle": oracle.address,
        },
    }
    assert check(world, bundle, offline=True).valid
    verdict = check(world, bundle)
    assert_fails(verdict, "non_member", outsider.address)
    assert [c.name for c in verdict.checks if c.status == "pass"][-1] == "contract"


def _tree_fields(tree: StandardMerkleTree, leaf: tuple[str, str]) -> dict[str, Any]:
    return {
        "leafValue": list(leaf),
        "leafHash": "0x" + tree.leaf_hash(leaf).hex(),
        "proof": tree.get_proof(leaf),
        "root": tree.root,
    }


JUNK: list[object] = [None, True, -1, 2**300, 1.5, float("nan"), "", "0x", "x" * 500, [], {}, [[]]]


def test_no_bundle_makes_the_checker_raise(world: World) -> None:
    """Every field (and every anchor field) replaced by every kind of junk: a verdict each."""
    verdicts = []
    for field in list(world.bundle):
        for junk in JUNK:
            verdicts.append(check(world, replaced(world.bundle, field, value=junk)))
    for field in list(world.bundle["anchor"]):  # type: ignore[arg-type]
        for junk in JUNK:
            verdicts.append(check(world, replaced(world.bundle, "anchor", field, value=junk)))
    for junk in JUNK:
        verdicts.append(check(world, replaced(world.bundle, "record", "fields", value=junk)))
    assert all(isinstance(v.summary, str) for v in verdicts)
    assert sum(not v.valid for v in verdicts) > len(verdicts) * 0.8


# -- EIP-712 attestation bundles --------------------------------------------------------------


def attested(world: World, signer: LocalAccount, domain: LedgerDomain | None = None) -> Bundle:
    head = world.aster.connection.w3.eth.get_block("latest")
    attestation = AttestationSigner(signer, domain or world.ledger.domain()).sign(
        AttestationKind.INSPECTION,
        {
            "recordId": random_b32(),
            "subject": CELL,
            "characteristic": "coating_thickness",
            "value": Decimal("84.10"),
            "unit": "4H",
            "verdict": "pass",
            "observedAtUs": OBSERVED,
            "contentHash": random_b32(),
            "nonce": 0,
            "deadline": int(head["timestamp"]) + 3600,
        },
    )
    return attestation.to_bundle()


def test_a_recorded_attestation_is_valid_on_chain(world: World) -> None:
    verdict = check(world, world.attestation.to_json())
    assert verdict.valid and verdict.on_chain and verdict.kind == "attestation"
    assert {c.status for c in verdict.checks} == {"pass"}
    assert verdict.signer == world.oracle.address
    assert verdict.record_id == world.attestation.record_id
    assert verdict.facts["recorded_member"] == world.aster.address


def test_an_attestation_not_on_the_ledger_is_valid_with_a_warning(world: World) -> None:
    verdict = check(world, attested(world, world.oracle))
    assert verdict.valid and verdict.summary == "VALID on-chain, 1 warning(s)"
    (warning,) = verdict.warnings
    assert warning.name == "recorded" and "not on the ledger" in warning.detail


def test_an_altered_message_with_its_digest_kept(world: World) -> None:
    bundle = changed(world.attestation.to_bundle(), lambda b: b["message"].__setitem__("value", 1))
    assert_fails(check(world, bundle), "digest_mismatch", "digest")


def test_signature_mismatches(world: World) -> None:
    good = world.attestation.to_bundle()

    def alter_value(bundle: Bundle) -> None:
        bundle["message"]["value"] = 1
        del bundle["digest"]

    assert_fails(check(world, changed(good, alter_value)), "signature_mismatch", "not the named")
    other = changed(good, lambda b: b.__setitem__("signer", Account.create().address))
    assert_fails(check(world, other), "signature_mismatch", "recovers")

    def flip(bundle: Bundle) -> None:
        signature = bytearray(bytes.fromhex(bundle["signature"][2:]))
        signature[5] ^= 0xFF
        bundle["signature"] = "0x" + signature.hex()

    assert_fails(check(world, changed(good, flip)), "signature_mismatch")
    short = changed(good, lambda b: b.__setitem__("signature", "0x1234"))
    assert_fails(check(world, short), "signature_mismatch", "65 bytes")


def test_malformed_attestation_bundles(world: World) -> None:
    good = world.attestation.to_bundle()
    assert_fails(
        check(world, changed(good, lambda b: b.pop("signature"))), "missing_fields", "signature"
    )
    wrong_type = changed(good, lambda b: b.__setitem__("primaryType", "Invoice"))
    assert_fails(check(world, wrong_type), "bad_field", "primaryType")
    wrong_domain = changed(good, lambda b: b["domain"].__setitem__("name", "Other"))
    assert_fails(check(world, wrong_domain), "bad_field", "domain")
    not_hex = changed(good, lambda b: b.__setitem__("signature", "zz"))
    assert_fails(check(world, not_hex), "bad_field", "hex")
    for field in list(good):
        for junk in JUNK:
            verdict = check(world, replaced(good, field, value=junk))
            assert isinstance(verdict.summary, str)
    out_of_range: list[object] = ["0x" + "00" * 33, "-5", "1e5", 2**256, -(2**255) - 1]
    for section in ("message", "domain"):
        for field in list(good[section]):
            for junk in JUNK + out_of_range:
                verdict = check(world, replaced(good, section, field, value=junk))
                assert not verdict.valid, (section, field, junk)


def test_an_attestation_signed_by_a_key_of_no_member(world: World) -> None:
    stranger: LocalAccount = Account.create()
    bundle = attested(world, stranger)
    assert check(world, bundle, offline=True).valid  # the signature itself is fine
    assert_fails(check(world, bundle), "non_member", "not an oracle key")


def test_an_attestation_for_another_chain_or_contract(world: World) -> None:
    ledger = world.ledger.address
    other_chain = attested(world, world.oracle, LedgerDomain(1, ledger))
    assert_fails(check(world, other_chain), "wrong_chain", "chain 1")
    elsewhere = attested(
        world, world.oracle, LedgerDomain(world.ledger.domain().chain_id, "0x" + "42" * 20)
    )
    assert_fails(check(world, elsewhere), "domain_mismatch", "no QualityLedger")


def test_without_a_chain_only_the_offline_checks_run(world: World) -> None:
    verdict = check_bundle(json.dumps(world.bundle))
    assert verdict.valid and not verdict.on_chain
    attestation = check_bundle(world.attestation.to_json().encode())
    assert attestation.valid and attestation.signer == world.oracle.address
