"""Revert decoding against a real in-process chain, and the Consortium contract's behaviour.

The committed Consortium artifact is deployed to eth-tester (py-evm); reverts are provoked for real
and must decode to the named exception classes. ``Error(string)``, ``Panic`` and empty reverts come
from hand-assembled contracts built in the test (no compiler, nothing committed). JSON-RPC error
shapes are the ones a Hardhat 2.29 node returns (recorded from a real node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.logs import DISCARD

from node.chain import contract_errors as ce
from node.chain.artifacts import Artifact, load_artifact
from node.chain.revert import (
    PanicError,
    RevertedWithReason,
    contract_error_from_exception,
    decode_revert,
    revert_data_from_exception,
)
from node.errors import ContractRevertError

ZERO = "0x0000000000000000000000000000000000000000"
TTL = 3600


class Role:
    NONE, MANUFACTURER, SUPPLIER, LAB, AUDITOR = range(5)


class Kind:
    ADMIT, REMOVE = range(2)


@dataclass
class Chain:
    tester: EthereumTester
    w3: Web3
    accounts: list[str]
    artifact: Artifact

    def deploy(
        self, founders: list[str], threshold: int, ttl: int = TTL, roles: list[int] | None = None
    ) -> Contract:
        factory = self.w3.eth.contract(abi=self.artifact.abi, bytecode=self.artifact.bytecode)
        roles = roles if roles is not None else [Role.MANUFACTURER] * len(founders)
        names = [f"member-{i}" for i in range(len(founders))]
        endpoints = [f"https://node{i}.example" for i in range(len(founders))]
        tx = factory.constructor(founders, roles, names, endpoints, threshold, ttl).transact(
            {"from": self.accounts[0]}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        address = receipt["contractAddress"]
        assert address is not None
        return self.w3.eth.contract(address=address, abi=self.artifact.abi)

    def reverter(self, payload: bytes) -> str:
        """Deploy a hand-assembled contract whose every call reverts with ``payload``."""
        chunks = [payload[i : i + 32].ljust(32, b"\0") for i in range(0, len(payload), 32)]
        runtime = b"".join(
            b"\x7f" + chunk + b"\x61" + (32 * i).to_bytes(2, "big") + b"\x52"  # PUSH32 PUSH2 MSTORE
            for i, chunk in enumerate(chunks)
        )
        runtime += b"\x61" + len(payload).to_bytes(2, "big") + b"\x60\x00\xfd"  # REVERT(0, len)
        init = (  # CODECOPY(0, 13, len(runtime)); RETURN(0, len(runtime))
            b"\x61" + len(runtime).to_bytes(2, "big") + b"\x80\x61\x00\x0d\x60\x00\x39\x60\x00\xf3"
        )
        tx = self.w3.eth.send_transaction({"from": self.accounts[0], "data": init + runtime})
        address = self.w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        assert address is not None
        return str(address)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture(scope="module")
def module_chain() -> Chain:
    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(tester, w3, list(w3.eth.accounts), load_artifact("Consortium"))


@pytest.fixture
def chain(module_chain: Chain) -> Iterator[Chain]:
    snapshot = module_chain.tester.take_snapshot()
    yield module_chain
    module_chain.tester.revert_to_snapshot(snapshot)


@pytest.fixture
def c3(chain: Chain) -> Contract:
    """Three founders (accounts 0-2), 2-of-3."""
    return chain.deploy(chain.accounts[:3], threshold=2)


def reverted(fn: Callable[[], Any], context: str = "Consortium") -> ContractRevertError:
    """Run ``fn``, which must revert, and decode what web3 raised."""
    with pytest.raises(Exception) as excinfo:  # whatever the backend raises
        fn()
    error = contract_error_from_exception(excinfo.value, context)
    assert error is not None, f"not a revert: {excinfo.value!r}"
    return error


def tx(chain: Chain, fn: Any, sender: str) -> Any:
    receipt = chain.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


# --------------------------------------------------------------------------------------------------
# decode_revert on its own


def test_decode_custom_error_from_bytes_and_hex() -> None:
    data = bytes.fromhex(ce.ProposalExpired.selector[2:]) + encode(
        ["uint256", "uint64"], [3, 1_700_000_000]
    )
    for form in (data, "0x" + data.hex(), data.hex(), "Reverted 0x" + data.hex()):
        error = decode_revert(form, "Consortium.approve")
        assert type(error) is ce.ProposalExpired
        assert str(error) == (
            "Consortium.approve reverted: ProposalExpired(proposalId=3, expiresAt=1700000000)"
        )
        assert error.args_by_name == {"proposalId": 3, "expiresAt": 1_700_000_000}


def test_decode_without_context_and_without_data() -> None:
    assert str(decode_revert(bytes.fromhex(ce.EmptyName.selector[2:]))) == (
        "contract call reverted: EmptyName()"
    )
    for empty in (None, b"", "0x", ""):
        error = decode_revert(empty, "X.f")
        assert type(error) is ContractRevertError
        assert str(error) == "X.f reverted without a reason"


def test_decode_unknown_and_malformed() -> None:
    unknown = decode_revert("0xdeadbeef" + "00" * 31 + "05", "X.f")
    assert type(unknown) is ContractRevertError
    assert unknown.selector == "0xdeadbeef"
    assert "unknown custom error 0xdeadbeef" in str(unknown)
    assert "malformed data 0x0102" in str(decode_revert(b"\x01\x02", "X.f"))
    assert "undecodable data" in str(decode_revert("0xzz", "X.f"))
    truncated = decode_revert(ce.ProposalExpired.selector + "00" * 8, "X.f")
    assert type(truncated) is ce.ProposalExpired
    assert "undecodable arguments" in str(truncated)
    assert truncated.args_by_name == {}


def test_decode_reason_and_panic() -> None:
    reason = decode_revert(bytes.fromhex("08c379a0") + encode(["string"], ["boom"]), "X.f")
    assert isinstance(reason, RevertedWithReason)
    assert reason.reason == "boom"
    assert str(reason) == "X.f reverted: boom"
    panic = decode_revert(bytes.fromhex("4e487b71") + encode(["uint256"], [0x32]), "X.f")
    assert isinstance(panic, PanicError)
    assert (panic.code, panic.meaning) == (0x32, "array index out of bounds")
    assert str(panic) == "X.f reverted: Panic(0x32): array index out of bounds"


# --------------------------------------------------------------------------------------------------
# Real reverts on eth-tester


def test_unknown_proposal_on_call_estimate_and_transact(chain: Chain, c3: Contract) -> None:
    sender: Any = {"from": chain.accounts[0]}
    fn = c3.functions.approve(7)
    for attempt in (
        lambda: fn.call(sender),
        lambda: fn.estimate_gas(sender),
        lambda: fn.transact(sender),
    ):
        with pytest.raises(Exception) as excinfo:
            attempt()
        data = revert_data_from_exception(excinfo.value)
        assert data == bytes.fromhex(ce.UnknownProposal.selector[2:]) + encode(["uint256"], [7])
        error = decode_revert(data, "Consortium.approve")
        assert isinstance(error, ce.UnknownProposal)
        assert str(error) == "Consortium.approve reverted: UnknownProposal(proposalId=7)"


def test_non_member_propose(chain: Chain, c3: Contract) -> None:
    outsider = chain.accounts[5]
    fn = c3.functions.propose(Kind.ADMIT, outsider, Role.SUPPLIER, "x", "")
    error = reverted(lambda: fn.call({"from": outsider}), "Consortium.propose")
    assert isinstance(error, ce.NotActiveMember)
    assert error.args_by_name == {"account": outsider}
    assert str(error) == f"Consortium.propose reverted: NotActiveMember(account={outsider})"


def test_view_revert_unknown_proposal(c3: Contract) -> None:
    error = reverted(lambda: c3.functions.proposal(1).call())
    assert isinstance(error, ce.UnknownProposal)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (bytes.fromhex("08c379a0") + encode(["string"], ["boom"]), RevertedWithReason),
        (bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]), PanicError),
        (b"", ContractRevertError),
        (bytes.fromhex("deadbeef") + encode(["uint256"], [5]), ContractRevertError),
    ],
)
def test_builtin_revert_shapes_on_eth_tester(chain: Chain, payload: bytes, expected: type) -> None:
    address = chain.reverter(payload)
    request: Any = {"to": address, "from": chain.accounts[0]}
    with pytest.raises(Exception) as on_estimate:
        chain.w3.eth.estimate_gas(request)
    assert revert_data_from_exception(on_estimate.value) == payload
    with pytest.raises(Exception) as on_call:
        chain.w3.eth.call(request)
    error = contract_error_from_exception(on_call.value, "R.f")
    assert type(error) is expected
    if isinstance(error, RevertedWithReason):
        assert error.reason == "boom"
    elif isinstance(error, PanicError):
        assert error.code == 0x11
        assert error.meaning == "arithmetic overflow or underflow"
    elif not payload:
        assert str(error) == "R.f reverted without a reason"
    else:
        assert "0xdeadbeef" in str(error)


def test_unrelated_exceptions_carry_no_revert() -> None:
    assert revert_data_from_exception(ValueError("nope")) is None
    assert contract_error_from_exception(RuntimeError("boom")) is None


# --------------------------------------------------------------------------------------------------
# JSON-RPC shapes (as returned by a Hardhat 2.29 node)

UNKNOWN_7 = "0x28e0cf5a" + "00" * 31 + "07"
HARDHAT_MESSAGE = (
    "Error: VM Exception while processing transaction: reverted with an unrecognized custom error"
    f" (return data: {UNKNOWN_7})"
)


def test_rpc_call_and_estimate_shape() -> None:
    # eth_call / eth_estimateGas: web3 turns the error into ContractLogicError(data=<dict>)
    exc = ContractLogicError(
        f"execution reverted: {HARDHAT_MESSAGE}",
        data={"message": HARDHAT_MESSAGE, "data": UNKNOWN_7},
    )
    assert isinstance(decode_revert(revert_data_from_exception(exc)), ce.UnknownProposal)


def test_rpc_custom_error_string_shape() -> None:
    # nodes returning the data as a plain string: web3 raises ContractCustomError(data, data=data)
    exc = ContractCustomError(UNKNOWN_7, data=UNKNOWN_7)
    assert isinstance(contract_error_from_exception(exc), ce.UnknownProposal)


def test_rpc_send_shape() -> None:
    # eth_sendRawTransaction / eth_sendTransaction: no error formatter, Web3RPCError
    response: Any = {
        "jsonrpc": "2.0",
        "id": 29,
        "error": {
            "code": -32603,
            "message": HARDHAT_MESSAGE,
            "data": {"message": HARDHAT_MESSAGE, "txHash": "0x" + "ab" * 32, "data": UNKNOWN_7},
        },
    }
    exc = Web3RPCError(str(response["error"]), rpc_response=response)
    error = contract_error_from_exception(exc, "Consortium.approve")
    assert isinstance(error, ce.UnknownProposal)
    assert error.args_by_name == {"proposalId": 7}
    flat: Any = {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "x", "data": UNKNOWN_7}}
    assert revert_data_from_exception(Web3RPCError("x", rpc_response=flat)) == bytes.fromhex(
        UNKNOWN_7[2:]
    )


def test_adapter_error_with_data_attribute() -> None:
    class AdapterError(Exception):
        def __init__(self, data: object) -> None:
            super().__init__("eth_sendRawTransaction failed")
            self.data = data

    shaped = AdapterError(
        {"message": HARDHAT_MESSAGE, "txHash": "0x" + "ab" * 32, "data": UNKNOWN_7}
    )
    assert isinstance(contract_error_from_exception(shaped), ce.UnknownProposal)
    assert revert_data_from_exception(AdapterError(None)) is None
    assert revert_data_from_exception(AdapterError("not hex")) is None


def test_rpc_shape_found_through_exception_chain() -> None:
    inner = ContractLogicError("execution reverted", data={"data": UNKNOWN_7})
    try:
        try:
            raise inner
        except ContractLogicError as exc:
            raise RuntimeError("adapter failed") from exc
    except RuntimeError as outer:
        assert isinstance(contract_error_from_exception(outer), ce.UnknownProposal)


# --------------------------------------------------------------------------------------------------
# Consortium behaviour


def test_deployment_state(chain: Chain, c3: Contract) -> None:
    a0, a1, a2 = chain.accounts[:3]
    assert c3.functions.threshold().call() == 2
    assert c3.functions.proposalTtl().call() == TTL
    assert c3.functions.memberCount().call() == 3
    assert sorted(c3.functions.members().call()) == sorted([a0, a1, a2])
    role, active, name, endpoint, admitted_at = c3.functions.member(a1).call()
    assert (role, active, name, endpoint) == (
        Role.MANUFACTURER,
        True,
        "member-1",
        "https://node1.example",
    )
    assert admitted_at > 0
    assert c3.functions.member(chain.accounts[7]).call() == (Role.NONE, False, "", "", 0)
    assert c3.functions.proposalCount().call() == 0


@pytest.mark.parametrize(
    ("founders", "roles", "threshold", "ttl", "expected", "args"),
    [
        (3, None, 0, TTL, ce.InvalidThreshold, {"threshold": 0, "founders": 3}),
        (3, None, 4, TTL, ce.InvalidThreshold, {"threshold": 4, "founders": 3}),
        (0, None, 1, TTL, ce.InvalidThreshold, {"threshold": 1, "founders": 0}),
        (3, None, 2, 0, ce.InvalidProposalTtl, {}),
        (3, [1, 2], 2, TTL, ce.FounderListMismatch, {}),
        (3, [1, 0, 2], 2, TTL, ce.InvalidRole, {}),
    ],
)
def test_constructor_validation(
    chain: Chain,
    founders: int,
    roles: list[int] | None,
    threshold: int,
    ttl: int,
    expected: type,
    args: dict[str, object],
) -> None:
    error = reverted(lambda: chain.deploy(chain.accounts[:founders], threshold, ttl, roles))
    assert type(error) is expected
    assert error.args_by_name == args


def test_constructor_rejects_duplicate_and_zero_founders(chain: Chain) -> None:
    a0, a1 = chain.accounts[:2]
    error = reverted(lambda: chain.deploy([a0, a1, a0], 2))
    assert isinstance(error, ce.AlreadyMember) and error.args_by_name == {"account": a0}
    assert isinstance(reverted(lambda: chain.deploy([a0, ZERO], 1)), ce.ZeroAddress)


def test_admit_two_of_three(chain: Chain, c3: Contract) -> None:
    a0, a1, a2, newcomer = chain.accounts[:4]
    propose = c3.functions.propose(Kind.ADMIT, newcomer, Role.LAB, "Lab One", "https://lab.example")
    receipt = tx(chain, propose, a0)
    (created,) = c3.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    assert created["args"]["proposalId"] == 1
    assert created["args"]["subject"] == newcomer and created["args"]["proposer"] == a0
    assert created["args"]["expiresAt"] == chain.now() + TTL
    (approved,) = c3.events.ProposalApproved().process_receipt(receipt, errors=DISCARD)
    assert approved["args"]["approvals"] == 1

    p = c3.functions.proposal(1).call()
    assert p[0:5] == (Kind.ADMIT, newcomer, Role.LAB, "Lab One", "https://lab.example")
    assert p[5] == a0 and p[8] == 1 and p[9] is False
    assert c3.functions.hasApproved(1, a0).call() and not c3.functions.hasApproved(1, a1).call()
    assert not c3.functions.isActiveMember(newcomer).call()

    receipt = tx(chain, c3.functions.approve(1), a1)
    assert c3.events.ProposalExecuted().process_receipt(receipt, errors=DISCARD)[0]["args"] == {
        "proposalId": 1
    }
    (admitted,) = c3.events.MemberAdmitted().process_receipt(receipt, errors=DISCARD)
    assert dict(admitted["args"]) == {
        "member": newcomer,
        "role": Role.LAB,
        "name": "Lab One",
        "endpoint": "https://lab.example",
    }
    assert c3.functions.isActiveMember(newcomer).call()
    assert c3.functions.memberCount().call() == 4
    assert c3.functions.member(newcomer).call()[:4] == (
        Role.LAB,
        True,
        "Lab One",
        "https://lab.example",
    )
    p = c3.functions.proposal(1).call()
    assert p[8] == 2 and p[9] is True

    # executed: no more votes
    error = reverted(lambda: c3.functions.approve(1).call({"from": a2}))
    assert isinstance(error, ce.ProposalAlreadyExecuted) and error.args_by_name == {"proposalId": 1}


def test_threshold_one_executes_at_once(chain: Chain) -> None:
    a0, a1 = chain.accounts[:2]
    c = chain.deploy([a0], threshold=1)
    tx(chain, c.functions.propose(Kind.ADMIT, a1, Role.AUDITOR, "Auditor", ""), a0)
    assert c.functions.isActiveMember(a1).call()
    assert c.functions.proposal(1).call()[9] is True


def test_double_vote_and_invalid_admissions(chain: Chain, c3: Contract) -> None:
    a0, a1, _, newcomer = chain.accounts[:4]
    tx(chain, c3.functions.propose(Kind.ADMIT, newcomer, Role.SUPPLIER, "S", ""), a0)
    error = reverted(lambda: c3.functions.approve(1).call({"from": a0}))
    assert isinstance(error, ce.AlreadyApproved)
    assert error.args_by_name == {"proposalId": 1, "member": a0}

    def propose(subject: str, role: int, name: str) -> ContractRevertError:
        fn = c3.functions.propose(Kind.ADMIT, subject, role, name, "")
        return reverted(lambda: fn.call({"from": a0}))

    assert isinstance(propose(a1, Role.LAB, "L"), ce.AlreadyMember)
    assert isinstance(propose(newcomer, Role.NONE, "L"), ce.InvalidRole)
    assert isinstance(propose(newcomer, Role.LAB, ""), ce.EmptyName)
    assert isinstance(propose(ZERO, Role.LAB, "L"), ce.ZeroAddress)
    remove_stranger = c3.functions.propose(Kind.REMOVE, newcomer, Role.NONE, "", "")
    error = reverted(lambda: remove_stranger.call({"from": a0}))
    assert isinstance(error, ce.NotMember) and error.args_by_name == {"account": newcomer}


def test_execution_rechecks_state(chain: Chain, c3: Contract) -> None:
    a0, a1, a2, newcomer = chain.accounts[:4]
    tx(chain, c3.functions.propose(Kind.ADMIT, newcomer, Role.SUPPLIER, "S", ""), a0)
    tx(chain, c3.functions.propose(Kind.ADMIT, newcomer, Role.SUPPLIER, "S", ""), a1)
    tx(chain, c3.functions.approve(1), a2)  # admitted through proposal 1
    error = reverted(lambda: c3.functions.approve(2).call({"from": a2}))
    assert isinstance(error, ce.AlreadyMember) and error.args_by_name == {"account": newcomer}


def test_expired_proposal(chain: Chain, c3: Contract) -> None:
    a0, a1, _, newcomer = chain.accounts[:4]
    tx(chain, c3.functions.propose(Kind.ADMIT, newcomer, Role.SUPPLIER, "S", ""), a0)
    expires_at = c3.functions.proposal(1).call()[7]
    chain.tester.time_travel(expires_at)
    error = reverted(lambda: c3.functions.approve(1).transact({"from": a1}), "Consortium.approve")
    assert isinstance(error, ce.ProposalExpired)
    assert error.args_by_name == {"proposalId": 1, "expiresAt": expires_at}
    assert str(error) == (
        f"Consortium.approve reverted: ProposalExpired(proposalId=1, expiresAt={expires_at})"
    )


def test_removed_members_vote_no_longer_counts(chain: Chain) -> None:
    a0, a1, a2, a3, newcomer = chain.accounts[:5]
    c = chain.deploy([a0, a1, a2, a3], threshold=3)
    tx(chain, c.functions.propose(Kind.ADMIT, newcomer, Role.LAB, "L", ""), a0)
    tx(chain, c.functions.approve(1), a1)
    assert c.functions.proposal(1).call()[8] == 2

    tx(chain, c.functions.propose(Kind.REMOVE, a1, Role.NONE, "", ""), a2)
    tx(chain, c.functions.approve(2), a3)
    receipt = tx(chain, c.functions.approve(2), a0)
    assert c.events.MemberRemoved().process_receipt(receipt, errors=DISCARD)[0]["args"] == {
        "member": a1
    }
    assert not c.functions.isActiveMember(a1).call()
    assert c.functions.member(a1).call()[:3] == (Role.MANUFACTURER, False, "member-1")
    assert c.functions.memberCount().call() == 3
    assert c.functions.hasApproved(1, a1).call()  # the vote is recorded...
    assert c.functions.proposal(1).call()[8] == 1  # ...but no longer counted

    error = reverted(lambda: c.functions.approve(1).call({"from": a1}))
    assert isinstance(error, ce.NotActiveMember)
    receipt = tx(chain, c.functions.approve(1), a2)
    assert (
        c.events.ProposalApproved().process_receipt(receipt, errors=DISCARD)[0]["args"]["approvals"]
        == 2
    )
    assert not c.functions.isActiveMember(newcomer).call()
    tx(chain, c.functions.approve(1), a3)
    assert c.functions.isActiveMember(newcomer).call()


def test_readmitted_members_earlier_vote_does_not_count(chain: Chain) -> None:
    a0, a1, a2, a3, newcomer = chain.accounts[:5]
    c = chain.deploy([a0, a1, a2, a3], threshold=3)
    tx(chain, c.functions.propose(Kind.ADMIT, newcomer, Role.LAB, "L", ""), a0)
    tx(chain, c.functions.approve(1), a1)
    tx(chain, c.functions.propose(Kind.REMOVE, a1, Role.NONE, "", ""), a2)
    tx(chain, c.functions.approve(2), a3)
    tx(chain, c.functions.approve(2), a0)
    tx(chain, c.functions.propose(Kind.ADMIT, a1, Role.SUPPLIER, "Again", ""), a2)
    tx(chain, c.functions.approve(3), a3)
    tx(chain, c.functions.approve(3), a0)
    assert c.functions.isActiveMember(a1).call()

    assert c.functions.proposal(1).call()[8] == 1  # a1's vote from its first membership is gone
    assert not c.functions.hasApproved(1, a1).call()
    receipt = tx(chain, c.functions.approve(1), a1)  # so it may vote again
    (approved,) = c.events.ProposalApproved().process_receipt(receipt, errors=DISCARD)
    assert approved["args"]["approvals"] == 2
    error = reverted(lambda: c.functions.approve(1).call({"from": a1}))
    assert isinstance(error, ce.AlreadyApproved)
    tx(chain, c.functions.approve(1), a2)
    assert c.functions.isActiveMember(newcomer).call()


def test_removal_cannot_break_quorum(chain: Chain, c3: Contract) -> None:
    a0, a1, a2 = chain.accounts[:3]
    tx(chain, c3.functions.propose(Kind.REMOVE, a2, Role.NONE, "", ""), a0)
    tx(chain, c3.functions.approve(1), a1)
    assert c3.functions.memberCount().call() == 2
    fn = c3.functions.propose(Kind.REMOVE, a1, Role.NONE, "", "")
    error = reverted(lambda: fn.call({"from": a0}))
    assert isinstance(error, ce.QuorumWouldBreak)
    assert error.args_by_name == {"remaining": 1, "threshold": 2}


def test_update_endpoint(chain: Chain, c3: Contract) -> None:
    a0 = chain.accounts[0]
    receipt = tx(chain, c3.functions.updateEndpoint("https://new.example"), a0)
    (event,) = c3.events.MemberEndpointUpdated().process_receipt(receipt, errors=DISCARD)
    assert dict(event["args"]) == {"member": a0, "endpoint": "https://new.example"}
    assert c3.functions.member(a0).call()[3] == "https://new.example"
    outsider = chain.accounts[6]
    error = reverted(lambda: c3.functions.updateEndpoint("x").call({"from": outsider}))
    assert isinstance(error, ce.NotActiveMember)


def test_oracle_register_rotate_revoke(chain: Chain, c3: Contract) -> None:
    a0, a1 = chain.accounts[:2]
    k1, k2, k3 = (Web3.to_checksum_address(f"0x{i:040x}") for i in (0xA1, 0xA2, 0xA3))
    assert tuple(c3.functions.oracleOf(k1).call()) == (False, ZERO)

    receipt = tx(chain, c3.functions.registerOracle(k1), a0)
    (event,) = c3.events.OracleRegistered().process_receipt(receipt, errors=DISCARD)
    assert dict(event["args"]) == {"member": a0, "oracle": k1}
    assert tuple(c3.functions.oracleOf(k1).call()) == (True, a0)
    assert c3.functions.isActiveOracle(k1).call()
    assert c3.functions.oraclesOf(a0).call() == [k1]
    assert c3.functions.oraclesOf(a1).call() == []

    for sender in (a0, a1):
        params: Any = {"from": sender}
        error = reverted(partial(c3.functions.registerOracle(k1).call, params))
        assert isinstance(error, ce.OracleAlreadyRegistered)
        assert error.args_by_name == {"oracle": k1}
    error = reverted(lambda: c3.functions.revokeOracle(k1).call({"from": a1}))
    assert isinstance(error, ce.NotOracleOwner)
    assert error.args_by_name == {"oracle": k1, "caller": a1}
    error = reverted(lambda: c3.functions.registerOracle(ZERO).call({"from": a0}))
    assert isinstance(error, ce.ZeroAddress)
    error = reverted(lambda: c3.functions.registerOracle(k3).call({"from": chain.accounts[8]}))
    assert isinstance(error, ce.NotActiveMember)

    receipt = tx(chain, c3.functions.rotateOracle(k1, k2), a0)
    assert [
        dict(e["args"]) for e in c3.events.OracleRevoked().process_receipt(receipt, errors=DISCARD)
    ] == [{"member": a0, "oracle": k1}]
    assert tuple(c3.functions.oracleOf(k1).call()) == (False, a0)
    assert tuple(c3.functions.oracleOf(k2).call()) == (True, a0)
    assert c3.functions.oraclesOf(a0).call() == [k2]

    error = reverted(lambda: c3.functions.revokeOracle(k1).call({"from": a0}))
    assert isinstance(error, ce.OracleNotActive) and error.args_by_name == {"oracle": k1}
    error = reverted(lambda: c3.functions.rotateOracle(k2, k1).call({"from": a0}))
    assert isinstance(error, ce.OracleAlreadyRegistered)  # atomic: k2 is still active
    assert c3.functions.isActiveOracle(k2).call()
    error = reverted(lambda: c3.functions.revokeOracle(k3).call({"from": a0}))
    assert isinstance(error, ce.OracleNotActive)

    tx(chain, c3.functions.revokeOracle(k2), a0)
    assert not c3.functions.isActiveOracle(k2).call()
    assert c3.functions.oraclesOf(a0).call() == []


def test_readmitted_members_old_oracle_stays_inactive(chain: Chain, c3: Contract) -> None:
    a0, a1, a2 = chain.accounts[:3]
    old_key, new_key = (Web3.to_checksum_address(f"0x{i:040x}") for i in (0xB1, 0xB2))
    tx(chain, c3.functions.registerOracle(old_key), a2)
    assert c3.functions.isActiveOracle(old_key).call()

    tx(chain, c3.functions.propose(Kind.REMOVE, a2, Role.NONE, "", ""), a0)
    tx(chain, c3.functions.approve(1), a1)
    assert tuple(c3.functions.oracleOf(old_key).call()) == (False, a2)
    assert c3.functions.oraclesOf(a2).call() == []

    tx(chain, c3.functions.propose(Kind.ADMIT, a2, Role.LAB, "Back again", ""), a0)
    tx(chain, c3.functions.approve(2), a1)
    assert c3.functions.isActiveMember(a2).call()
    assert c3.functions.member(a2).call()[:3] == (Role.LAB, True, "Back again")
    assert tuple(c3.functions.oracleOf(old_key).call()) == (False, a2)
    assert c3.functions.oraclesOf(a2).call() == []
    error = reverted(lambda: c3.functions.revokeOracle(old_key).call({"from": a2}))
    assert isinstance(error, ce.OracleNotActive)
    error = reverted(lambda: c3.functions.registerOracle(old_key).call({"from": a2}))
    assert isinstance(error, ce.OracleAlreadyRegistered)

    tx(chain, c3.functions.registerOracle(new_key), a2)
    assert tuple(c3.functions.oracleOf(new_key).call()) == (True, a2)
    assert c3.functions.oraclesOf(a2).call() == [new_key]
