"""Blocks, transactions with decoded calls and events, members and oracle keys, anchors and
batches, on the in-process chain."""

from __future__ import annotations

from eth_account import Account
from eth_utils.crypto import keccak

from node.chain.anchor_registry import AnchorRegistry
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import TransactionSender
from node.explorer import ContractDirectory, Explorer
from node.explorer.abi import CONTRACT_NAMES
from node.keys import hardhat_dev_key
from tests.explorer.conftest import World


def args_of(entry: object) -> dict[str, object]:
    return {a.name: a.value for a in entry.args}  # type: ignore[attr-defined]


def test_the_directory_holds_every_contract_the_node_recorded(world: World) -> None:
    directory = world.explorer.directory
    assert {ref.name for ref in directory} == set(CONTRACT_NAMES)
    assert directory.named("AnchorRegistry").address == world.registry.address  # type: ignore[union-attr]
    assert directory.at(world.registry.address.lower()) is not None
    assert directory.at("not an address") is None
    assert directory.earliest_block >= 1


def test_latest_blocks_are_newest_first_and_page_backwards(world: World) -> None:
    head = world.aster.connection.head_block()
    blocks = world.explorer.latest_blocks(5)
    assert [b.number for b in blocks] == list(range(head, head - 5, -1))
    assert all(b.transaction_count == 1 for b in blocks)  # automine: a block per transaction
    older = world.explorer.latest_blocks(3, before=blocks[-1].number)
    assert [b.number for b in older] == list(range(head - 5, head - 8, -1))
    assert world.explorer.latest_blocks(1000)[-1].number == 0  # capped, down to genesis


def test_an_anchor_transaction_is_decoded_with_its_event(world: World) -> None:
    detail = world.explorer.transaction(world.batch.tx_hash)
    assert detail is not None
    summary = detail.summary
    assert (summary.contract, summary.function, summary.status) == (
        "AnchorRegistry",
        "anchor",
        "success",
    )
    assert summary.block_number == world.batch.block_number
    assert summary.sender == world.oracle.address
    assert detail.call is not None
    assert detail.call.signature == "anchor(bytes32,bytes32,uint32,bytes32)"
    assert args_of(detail.call) == {
        "batchId": world.batch.batch_id,
        "root": world.batch.root,
        "leafCount": 5,
        "manifestHash": world.batch.manifest_hash,
    }
    (log,) = detail.logs
    assert log.decoded is not None and (log.contract, log.event) == (
        "AnchorRegistry",
        "BatchAnchored",
    )
    args = args_of(log.decoded)
    assert args["member"] == world.aster.address and args["oracle"] == world.oracle.address
    assert args["batchId"] == world.batch.batch_id and args["leafCount"] == 5
    indexed = {a.name for a in log.decoded.args if a.indexed}
    assert indexed == {"member", "batchId", "root"}
    assert log.topics[0] == "0x" + keccak(text=log.decoded.signature).hex()


def test_a_ledger_record_call_decodes_its_struct_and_an_indexed_string_stays_a_hash(
    world: World,
) -> None:
    events = world.ledger.recorded_events(0, record_id=world.attestation.record_id)
    detail = world.explorer.transaction(events[0].tx_hash)
    assert detail is not None and detail.call is not None
    assert (detail.call.contract, detail.call.function) == ("QualityLedger", "recordInspection")
    record = args_of(detail.call)["result"]
    assert isinstance(record, dict)
    assert record["recordId"] == world.attestation.record_id
    assert record["value"] == 8520 and record["decimals"] == 2 and record["unit"] == "4H"
    (log,) = [entry for entry in detail.logs if entry.event == "InspectionRecorded"]
    args = args_of(log.decoded)
    assert args["oracle"] == world.oracle.address
    assert args["subject"] == "0x" + keccak(text=record["subject"]).hex()


def test_a_deployment_decodes_its_constructor(world: World) -> None:
    ref = world.explorer.directory.named("Consortium")
    assert ref is not None and ref.tx_hash is not None
    detail = world.explorer.transaction(ref.tx_hash)
    assert detail is not None and detail.call is not None
    assert (detail.summary.contract, detail.summary.function) == ("Consortium", "constructor")
    assert detail.created == ref.address and detail.summary.to is None
    args = args_of(detail.call)
    assert args["founders"] == [n.address for n in world.plant.nodes.values()]
    assert args["names"] == ["Aster Motors", "Borealis Cells", "Cobalt Test Lab"]
    assert args["threshold_"] == 2
    assert [e.event for e in detail.logs].count("MemberAdmitted") == 3


def test_unknown_contracts_and_plain_transfers_are_shown_raw(world: World) -> None:
    sender = TransactionSender(world.aster.connection, hardhat_dev_key(7))
    founder = Founder(sender.address, Role.MANUFACTURER, "Rogue", "")
    rogue, receipt = Consortium.deploy(sender, [founder], 1, 3600)
    detail = world.explorer.transaction(receipt.tx_hash)
    assert detail is not None
    # Consortium bytecode is recognised, but the address is not one of ours: the call is decoded
    # as a deployment of that artifact, the contract shown by name only through the call.
    assert detail.call is not None and detail.call.function == "constructor"
    assert all(log.decoded is None for log in detail.logs)  # logs of an unknown address: raw
    assert all(log.address == rogue.address for log in detail.logs)
    assert detail.logs[0].topics and detail.logs[0].data.startswith("0x")
    transfer = sender.transfer(Account.create().address, 1)
    plain = world.explorer.transaction(transfer.tx_hash)
    assert plain is not None
    assert (plain.call, plain.summary.contract, plain.summary.function) == (None, None, None)
    assert plain.input == "0x" and plain.logs == ()


def test_a_block_lists_its_transactions_decoded(world: World) -> None:
    block = world.explorer.block(world.batch.block_number)  # type: ignore[arg-type]
    assert block is not None
    (tx,) = block.transactions
    assert (tx.hash, tx.function) == (world.batch.tx_hash, "anchor")
    by_hash = world.explorer.block(block.block.hash)
    assert by_hash is not None and by_hash.block.number == block.block.number
    assert world.explorer.block(10**9) is None
    assert world.explorer.block("0x" + "ab" * 32) is None
    assert world.explorer.block("latest-ish") is None
    assert world.explorer.transaction("0x" + "cd" * 32) is None
    assert world.explorer.transaction("0x1234") is None


def test_members_and_their_oracle_keys_active_and_revoked(world: World) -> None:
    members = world.explorer.members()
    assert [(m.name, m.role, m.active) for m in members] == [
        ("Aster Motors", "manufacturer", True),
        ("Borealis Cells", "supplier", True),
        ("Cobalt Test Lab", "lab", True),
    ]
    aster, borealis, _ = members
    assert [(o.address, o.status) for o in aster.oracles] == [(world.oracle.address, "active")]
    assert [o.status for o in borealis.oracles] == ["active", "revoked"]
    revoked = borealis.oracles[1]
    assert revoked.address == world.revoked_oracle
    assert revoked.revoked_block is not None and revoked.revoked_tx is not None
    assert revoked.registered_block is not None and revoked.registered_block < revoked.revoked_block
    assert all(m.admitted_block is not None for m in members)


def test_anchors_list_every_batch_and_a_batch_shows_its_records(world: World) -> None:
    (anchor,) = world.explorer.anchors(member=world.aster.address)
    assert (anchor.batch_id, anchor.root, anchor.leaf_count) == (
        world.batch.batch_id,
        world.batch.root,
        5,
    )
    assert (anchor.block_number, anchor.tx_hash) == (world.batch.block_number, world.batch.tx_hash)
    assert anchor.member == world.aster.address and anchor.local_status == "anchored"
    view = world.explorer.batch(world.batch.batch_id.upper().replace("0X", "0x"))
    assert view is not None and view.anchor == anchor and view.manifest_matches is True
    assert view.record_count == 5
    assert [r.record_id for r in view.records] == [r.record_id for r in world.anchored]
    assert all(r.intact for r in view.records)
    assert all("inspector_id" not in r.fields for r in view.records)  # private: never shown
    page = world.explorer.batch(world.batch.batch_id, offset=3, limit=10)
    assert page is not None and len(page.records) == 2 and page.offset == 3
    assert world.explorer.batch("0x" + "00" * 32) is None
    assert world.explorer.batch("nonsense") is None


def test_another_members_batch_is_listed_without_records(world: World) -> None:
    cobalt = world.plant.nodes["cobalt"]
    registry = AnchorRegistry.at(cobalt.oracle_sender(), world.registry.address)
    registry.anchor("0x" + "11" * 32, "0x" + "22" * 32, 3, "0x" + "33" * 32)
    anchors = world.explorer.anchors()
    assert [a.member for a in anchors][:2] == [cobalt.address, world.aster.address]
    assert world.explorer.anchors(member=cobalt.address)[0].local_status is None
    view = world.explorer.batch("0x" + "11" * 32)
    assert view is not None and view.local is None and view.records == ()
    assert view.anchor is not None and view.anchor.leaf_count == 3


def test_an_explorer_over_explicit_addresses(world: World) -> None:
    directory = ContractDirectory.of(
        {"Consortium": world.aster.consortium().address, "AnchorRegistry": None}
    )
    explorer = Explorer(world.aster.sender, directory)
    assert len(explorer.members()) == 3
    assert explorer.anchors() == [] and explorer.batch(world.batch.batch_id) is None
