"""The node's own sender: pipelining, receipts checked, and recovery from nonce trouble."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.connection import ChainConnection, rpc_chain
from node.chain.consortium import Consortium
from node.chain.contract_errors import UnknownProposal
from node.chain.localnode import LocalChain, free_port
from node.chain.sender import SenderOptions, TransactionSender, TxRequest
from node.errors import ChainUnavailableError, TransactionError
from tests.hardhat_node import HardhatChain

SenderFactory = Callable[[LocalAccount], TransactionSender]
TRANSFER_GAS = 21_000


def transfer(to: str, value: int = 1) -> TxRequest:
    return TxRequest(to=to, value=value, gas=TRANSFER_GAS, label="transfer")


def nonce_on_chain(chain: ChainConnection, address: str) -> int:
    return int(chain.w3.eth.get_transaction_count(address, "latest"))


def test_pipelined_transactions_all_land_in_order(
    chain: ChainConnection, make_sender: SenderFactory, dev_accounts: list[LocalAccount]
) -> None:
    sender = make_sender(dev_accounts[5])
    start = nonce_on_chain(chain, sender.address)
    sent = [sender.send(transfer(dev_accounts[6].address)) for _ in range(40)]
    assert [s.nonce for s in sent] == list(range(start, start + 40))
    receipts = sender.wait_all(sent)
    assert len({r.tx_hash for r in receipts}) == 40
    assert nonce_on_chain(chain, sender.address) == start + 40


def test_nonce_too_low_is_resynchronised_and_resent(
    chain: ChainConnection, make_sender: SenderFactory, dev_accounts: list[LocalAccount]
) -> None:
    stale, other = make_sender(dev_accounts[5]), make_sender(dev_accounts[5])
    stale.transact(transfer(dev_accounts[6].address))  # its counter is now primed
    other.wait_all([other.send(transfer(dev_accounts[6].address)) for _ in range(2)])
    before = nonce_on_chain(chain, stale.address)
    receipt = stale.transact(transfer(dev_accounts[6].address))  # would reuse a spent nonce
    assert receipt.block_number > 0
    assert nonce_on_chain(chain, stale.address) == before + 1


def test_a_new_sender_continues_after_a_restarted_node_process(
    chain: ChainConnection, make_sender: SenderFactory, dev_accounts: list[LocalAccount]
) -> None:
    first = make_sender(dev_accounts[5])
    first.transact(transfer(dev_accounts[6].address))
    restarted = make_sender(dev_accounts[5])  # no local state: starts from the chain's count
    expected = nonce_on_chain(chain, restarted.address)
    sent = restarted.send(transfer(dev_accounts[6].address))
    assert sent.nonce == expected
    restarted.wait(sent)


def test_a_revert_is_raised_by_name_before_anything_is_sent(
    chain: ChainConnection, consortium_2_of_3: list[Consortium]
) -> None:
    sender = consortium_2_of_3[0].binding.sender
    before = nonce_on_chain(chain, sender.address)
    with pytest.raises(UnknownProposal) as raised:
        consortium_2_of_3[0].approve(999)
    assert raised.value.args_by_name == {"proposalId": 999}
    assert "Consortium.approve reverted: UnknownProposal(proposalId=999)" in str(raised.value)
    assert nonce_on_chain(chain, sender.address) == before


def test_a_mined_revert_is_explained_from_its_receipt(
    chain: ChainConnection, consortium_2_of_3: list[Consortium]
) -> None:
    binding = consortium_2_of_3[0].binding
    before = nonce_on_chain(chain, binding.sender.address)
    sent = binding.send("approve", 999, gas=200_000)  # explicit gas: no estimate, it is mined
    with pytest.raises(UnknownProposal):
        binding.sender.wait(sent)
    assert nonce_on_chain(chain, binding.sender.address) == before + 1


def test_running_out_of_gas_is_reported(
    consortium_2_of_3: list[Consortium],
) -> None:
    binding = consortium_2_of_3[0].binding
    sent = binding.send("registerOracle", Account.create().address, gas=30_000)
    with pytest.raises(TransactionError, match="ran out of gas"):
        binding.sender.wait(sent)


def test_pending_transactions_of_an_earlier_process_are_not_overwritten(
    hardhat_chain_manual: HardhatChain, dev_accounts: list[LocalAccount]
) -> None:
    chain = rpc_chain(hardhat_chain_manual.url)
    earlier = TransactionSender(chain, dev_accounts[0])
    pending = [earlier.send(transfer(dev_accounts[1].address)) for _ in range(2)]
    later = TransactionSender(chain, dev_accounts[0])  # the node restarted; the pool still holds 2
    third = later.send(transfer(dev_accounts[1].address))
    assert third.nonce == 2
    hardhat_chain_manual.rpc("evm_mine")
    later.wait_all([*pending, third])
    assert nonce_on_chain(chain, dev_accounts[0].address) == 3


def test_a_dropped_transaction_is_broadcast_again(
    hardhat_chain_manual: HardhatChain, dev_accounts: list[LocalAccount]
) -> None:
    chain = rpc_chain(hardhat_chain_manual.url)
    sender = TransactionSender(chain, dev_accounts[0], SenderOptions(drop_check_after=0.2))
    sent = sender.send(transfer(dev_accounts[1].address))
    assert hardhat_chain_manual.rpc("hardhat_dropTransaction", [sent.tx_hash]) is True
    assert chain.rpc("eth_getTransactionByHash", [sent.tx_hash]) is None
    hardhat_chain_manual.rpc("evm_setAutomine", [True])
    receipt = sender.wait(sent, timeout=20)
    assert receipt.tx_hash == sent.tx_hash
    assert nonce_on_chain(chain, dev_accounts[0].address) == 1


def test_a_dropped_transaction_whose_nonce_was_reused_is_an_error(
    hardhat_chain_manual: HardhatChain, dev_accounts: list[LocalAccount]
) -> None:
    chain = rpc_chain(hardhat_chain_manual.url)
    sender = TransactionSender(chain, dev_accounts[0], SenderOptions(drop_check_after=0.2))
    sent = sender.send(transfer(dev_accounts[1].address))
    hardhat_chain_manual.rpc("hardhat_dropTransaction", [sent.tx_hash])
    hardhat_chain_manual.rpc("evm_setAutomine", [True])
    TransactionSender(chain, dev_accounts[0]).transact(transfer(dev_accounts[2].address))
    with pytest.raises(TransactionError, match="was dropped and its nonce 0 was used"):
        sender.wait(sent, timeout=20)


def test_the_sender_recovers_when_the_chain_node_restarts(
    hardhat_available: None,
    tmp_path_factory: pytest.TempPathFactory,
    dev_accounts: list[LocalAccount],
) -> None:
    local = LocalChain(tmp_path_factory.mktemp("restart"))
    started_port = free_port()
    started = local.start(port=started_port)
    try:
        assert started.url is not None
        chain = rpc_chain(started.url)
        sender = TransactionSender(chain, dev_accounts[0])
        sender.wait_all([sender.send(transfer(dev_accounts[1].address)) for _ in range(3)])
        assert sender.nonces.next_nonce == 3
        local.stop()
        with pytest.raises(ChainUnavailableError, match="cannot reach the chain"):
            sender.send(transfer(dev_accounts[1].address))
        local.start(port=started_port)  # a fresh chain on the same URL: the nonce is 0 again
        receipt = sender.transact(transfer(dev_accounts[1].address))
        assert receipt.block_number == 1
        assert sender.nonces.next_nonce == 1
    finally:
        local.stop()
