"""LineControl.sol through the node's binding, on the in-process chain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from node.chain.artifacts import check_fresh, default_node_modules, load_artifact
from node.chain.connection import ChainConnection, embedded_chain
from node.chain.consortium import Consortium, Role
from node.chain.contract_errors import (
    AlreadyAcknowledged,
    DeltaOutOfBounds,
    InvalidBounds,
    InvalidConsortium,
    LineAlreadyRegistered,
    LineAlreadyStopped,
    LineIsStopped,
    LineNotStopped,
    MemberAccountRequired,
    NotLineOwner,
    NotMemberOrOracle,
    OffsetOutOfBounds,
    RequestPending,
    UnknownLine,
    UnknownParameter,
    UnknownRequest,
    WrongRole,
)
from node.chain.contract_events import of_type
from node.chain.line_control import (
    ARTIFACT_NAME,
    CompensationAcknowledgedEvent,
    CompensationFailedEvent,
    CompensationRequestedEvent,
    LineControl,
    LineRegisteredEvent,
    LineRestartedEvent,
    LineStoppedEvent,
    ParameterConfiguredEvent,
    RequestStatus,
)
from node.chain.sender import TransactionSender
from node.settings import LOCAL_CHAIN_ID

DEPLOY_GAS_LIMIT = 1_600_000

OracleSenderFactory = Callable[[Consortium], TransactionSender]  # fixture new_oracle_sender
AdmitFactory = Callable[[LocalAccount, Role, str], Consortium]  # fixture admit


def _id(text: str) -> str:
    return "0x" + keccak(text=text).hex()


COATER = _id("urn:epc:id:giai:0950600013435.COATER01")
BLADE = _id("blade_pressure")
SPEED = _id("line_speed")
# Blade pressure in mm with 2 decimals: ±0.05 mm a request, ±0.15 mm in all from the baseline.
BOUNDS = {"baseline": 120, "min_delta": -5, "max_delta": 5, "max_abs_offset": 15, "decimals": 2}


@pytest.fixture
def chain() -> ChainConnection:
    """These tests run on the in-process chain only (one Hardhat smoke test covers the RPC path)."""
    return embedded_chain(LOCAL_CHAIN_ID)


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
        "contracts/LineControl.sol",
        "contracts/ConsortiumGated.sol",
        "contracts/interfaces/ILineControl.sol",
        "contracts/interfaces/IConsortiumGated.sol",
        "contracts/interfaces/IConsortium.sol",
    } <= set(artifact.sources)


def test_events_are_past_tense_with_at_most_three_indexed_keys() -> None:
    abi = load_artifact(ARTIFACT_NAME).abi
    events = {e["name"]: e for e in abi if e["type"] == "event"}
    assert set(events) == {
        "LineRegistered",
        "ParameterConfigured",
        "CompensationRequested",
        "CompensationAcknowledged",
        "CompensationFailed",
        "LineStopped",
        "LineRestarted",
    }
    for event in events.values():
        assert sum(1 for i in event["inputs"] if i["indexed"]) <= 3
    requested = [(i["name"], i["indexed"]) for i in events["CompensationRequested"]["inputs"]]
    assert requested == [
        ("requestId", True),
        ("lineId", True),
        ("parameterId", True),
        ("delta", False),
        ("decisionHash", False),
    ]


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def control(
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> LineControl:
    """A fresh LineControl, sending as Aster (dev account 0, manufacturer)."""
    deployed, receipt = LineControl.deploy(
        make_sender(dev_accounts[0]), consortium_2_of_3[0].address
    )
    assert receipt.gas_used <= DEPLOY_GAS_LIMIT
    return deployed


@pytest.fixture
def coater(control: LineControl) -> LineControl:
    """Aster's coater line, its blade pressure configured."""
    control.register_line(COATER)
    control.configure_parameter(COATER, BLADE, **BOUNDS)
    return control


@pytest.fixture
def aster_oracle(
    coater: LineControl, consortium_2_of_3: list[Consortium], new_oracle_sender: OracleSenderFactory
) -> LineControl:
    """The coater's line control as one of Aster's oracle keys sees it."""
    return LineControl.at(new_oracle_sender(consortium_2_of_3[0]), coater.address)


def _as(
    control: LineControl, account: LocalAccount, make: Callable[[LocalAccount], TransactionSender]
) -> LineControl:
    return LineControl.at(make(account), control.address)


# --------------------------------------------------------------------------------------------------
# Deployment, lines and parameters


def test_deployment_needs_a_consortium_contract(
    dev_accounts: list[LocalAccount], make_sender: Callable[[LocalAccount], TransactionSender]
) -> None:
    with pytest.raises(InvalidConsortium) as raised:
        LineControl.deploy(make_sender(dev_accounts[0]), dev_accounts[7].address)
    assert raised.value.args_by_name == {"consortium": dev_accounts[7].address}


def test_a_manufacturer_registers_a_line_and_configures_a_parameter(
    chain: ChainConnection,
    control: LineControl,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
) -> None:
    assert control.consortium() == consortium_2_of_3[0].address
    receipt = control.register_line(COATER)
    block = chain.w3.eth.get_block(receipt.block_number)
    line = control.line(COATER)
    assert (line.line_id, line.owner, line.stopped) == (COATER, dev_accounts[0].address, False)
    assert line.registered_at == int(block["timestamp"])
    assert control.events(receipt) == [
        LineRegisteredEvent(
            line_id=COATER,
            owner=dev_accounts[0].address,
            block_number=receipt.block_number,
            tx_hash=receipt.tx_hash,
            log_index=0,
        )
    ]

    configured = control.configure_parameter(COATER, BLADE, **BOUNDS)
    parameter = control.parameter(COATER, BLADE)
    assert (parameter.baseline, parameter.min_delta, parameter.max_delta) == (120, -5, 5)
    assert (parameter.max_abs_offset, parameter.decimals) == (15, 2)
    assert (parameter.offset, parameter.pending_request_id, parameter.current) == (0, None, 120)
    (event,) = control.events(configured)
    assert isinstance(event, ParameterConfiguredEvent)
    assert (event.line_id, event.parameter_id, event.baseline, event.max_abs_offset) == (
        COATER,
        BLADE,
        120,
        15,
    )
    assert control.offset(COATER, BLADE) == 0
    assert control.request_count() == 0


def test_registration_and_configuration_need_the_manufacturers_own_account(
    control: LineControl,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
    new_oracle_sender: OracleSenderFactory,
) -> None:
    supplier = _as(control, dev_accounts[1], make_sender)
    with pytest.raises(WrongRole) as wrong:
        supplier.register_line(COATER)
    assert wrong.value.args_by_name == {
        "member": dev_accounts[1].address,
        "required": int(Role.MANUFACTURER),
        "actual": int(Role.SUPPLIER),
    }
    outsider = _as(control, dev_accounts[5], make_sender)
    with pytest.raises(NotMemberOrOracle) as raised:
        outsider.register_line(COATER)
    assert raised.value.args_by_name == {"caller": dev_accounts[5].address}
    oracle = LineControl.at(new_oracle_sender(consortium_2_of_3[0]), control.address)
    with pytest.raises(MemberAccountRequired):
        oracle.register_line(COATER)

    control.register_line(COATER)
    with pytest.raises(MemberAccountRequired):
        oracle.configure_parameter(COATER, BLADE, **BOUNDS)
    with pytest.raises(LineAlreadyRegistered) as again:
        control.register_line(COATER)
    assert again.value.args_by_name == {
        "lineId": bytes.fromhex(COATER[2:]),
        "owner": dev_accounts[0].address,
    }
    with pytest.raises(UnknownLine):
        control.configure_parameter(_id("no such line"), BLADE, **BOUNDS)
    with pytest.raises(UnknownLine):
        control.line(_id("no such line"))


def test_line_ids_are_unique_across_members_and_only_the_owner_configures(
    control: LineControl,
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
    admit: AdmitFactory,
) -> None:
    control.register_line(COATER)
    admit(dev_accounts[3], Role.MANUFACTURER, "Delta Motors")
    delta = _as(control, dev_accounts[3], make_sender)
    with pytest.raises(LineAlreadyRegistered):
        delta.register_line(COATER)
    with pytest.raises(NotLineOwner) as raised:
        delta.configure_parameter(COATER, BLADE, **BOUNDS)
    assert raised.value.args_by_name == {
        "lineId": bytes.fromhex(COATER[2:]),
        "member": dev_accounts[3].address,
    }
    delta.register_line(_id("delta line"))
    assert control.line(_id("delta line")).owner == dev_accounts[3].address


def test_bounds_must_be_ordered_and_non_negative(control: LineControl) -> None:
    control.register_line(COATER)
    with pytest.raises(InvalidBounds) as raised:
        control.configure_parameter(COATER, BLADE, **{**BOUNDS, "min_delta": 6})
    assert raised.value.args_by_name == {"minDelta": 6, "maxDelta": 5, "maxAbsOffset": 15}
    with pytest.raises(InvalidBounds):
        control.configure_parameter(COATER, BLADE, **{**BOUNDS, "max_abs_offset": -1})
    with pytest.raises(UnknownParameter):
        control.parameter(COATER, BLADE)
    # A one-sided range and a zero cumulative bound are valid bounds.
    control.configure_parameter(COATER, SPEED, **{**BOUNDS, "min_delta": 1, "max_abs_offset": 0})


# --------------------------------------------------------------------------------------------------
# Compensations


def test_an_oracle_requests_and_the_plc_applies_a_compensation(
    chain: ChainConnection, coater: LineControl, aster_oracle: LineControl
) -> None:
    oracle_address = aster_oracle.binding.sender.address
    decision = _id("rule: CV > 0.8 % three times")
    requested = aster_oracle.request_compensation(COATER, BLADE, 5, decision)
    assert requested.request_id == 1
    (event,) = coater.events(requested.receipt)
    assert event == CompensationRequestedEvent(
        request_id=1,
        line_id=COATER,
        parameter_id=BLADE,
        delta=5,
        decision_hash=decision,
        block_number=requested.receipt.block_number,
        tx_hash=requested.receipt.tx_hash,
        log_index=0,
    )
    pending = coater.request(1)
    assert (pending.status, pending.delta, pending.requester) == (
        RequestStatus.PENDING,
        5,
        oracle_address,
    )
    assert (pending.acknowledger, pending.acknowledged_at) == (None, 0)
    assert coater.parameter(COATER, BLADE).pending_request_id == 1
    assert coater.offset(COATER, BLADE) == 0  # nothing moves before the PLC applies it

    detail = _id("plc ack: blade pressure 1.25 mm")
    ack = aster_oracle.record_acknowledgement(1, applied=True, read_back=125, detail_hash=detail)
    (acknowledged,) = coater.events(ack)
    assert isinstance(acknowledged, CompensationAcknowledgedEvent)
    assert (acknowledged.request_id, acknowledged.read_back, acknowledged.offset) == (1, 125, 5)
    assert acknowledged.detail_hash == detail
    done = coater.request(1)
    block = chain.w3.eth.get_block(ack.block_number)
    assert (done.status, done.read_back, done.detail_hash) == (RequestStatus.APPLIED, 125, detail)
    assert (done.acknowledger, done.acknowledged_at) == (oracle_address, int(block["timestamp"]))
    parameter = coater.parameter(COATER, BLADE)
    assert (parameter.offset, parameter.current, parameter.pending_request_id) == (5, 125, None)

    # The owner member's own account may request and acknowledge too; ids are sequential.
    second = coater.request_compensation(COATER, BLADE, -3, decision)
    assert second.request_id == 2
    coater.record_acknowledgement(2, applied=True, read_back=122, detail_hash=detail)
    assert coater.offset(COATER, BLADE) == 2
    assert coater.request_count() == 2


def test_a_failed_compensation_leaves_the_offset_and_an_acknowledgement_is_recorded_once(
    coater: LineControl, aster_oracle: LineControl
) -> None:
    aster_oracle.request_compensation(COATER, BLADE, 4, _id("d"))
    failed = aster_oracle.record_acknowledgement(
        1, applied=False, read_back=120, detail_hash=_id("x")
    )
    (event,) = coater.events(failed)
    assert isinstance(event, CompensationFailedEvent)
    assert (event.request_id, event.read_back, event.detail_hash) == (1, 120, _id("x"))
    assert coater.request(1).status is RequestStatus.FAILED
    assert coater.offset(COATER, BLADE) == 0

    for applied in (True, False):
        with pytest.raises(AlreadyAcknowledged) as raised:
            aster_oracle.record_acknowledgement(
                1, applied=applied, read_back=0, detail_hash=_id("x")
            )
        assert raised.value.args_by_name == {"requestId": 1, "status": int(RequestStatus.FAILED)}
    with pytest.raises(UnknownRequest) as unknown:
        aster_oracle.record_acknowledgement(2, applied=True, read_back=0, detail_hash=_id("x"))
    assert unknown.value.args_by_name == {"requestId": 2}
    with pytest.raises(UnknownRequest):
        coater.request(0)


def test_a_delta_out_of_the_per_request_bounds_is_refused_and_named(
    coater: LineControl, aster_oracle: LineControl
) -> None:
    for delta in (6, -6, 10**30):
        with pytest.raises(DeltaOutOfBounds) as raised:
            aster_oracle.request_compensation(COATER, BLADE, delta, _id("d"))
        assert raised.value.args_by_name == {
            "lineId": bytes.fromhex(COATER[2:]),
            "parameterId": bytes.fromhex(BLADE[2:]),
            "delta": delta,
            "minDelta": -5,
            "maxDelta": 5,
        }
        assert f"delta={delta}" in str(raised.value)
    assert coater.request_count() == 0
    aster_oracle.request_compensation(COATER, BLADE, -5, _id("d"))  # the bounds are inclusive


def test_the_cumulative_offset_from_the_baseline_is_bounded_both_ways(
    coater: LineControl, aster_oracle: LineControl
) -> None:
    def apply(delta: int) -> None:
        request_id = aster_oracle.request_compensation(COATER, BLADE, delta, _id("d")).request_id
        aster_oracle.record_acknowledgement(
            request_id, applied=True, read_back=0, detail_hash=_id("a")
        )

    for _ in range(3):
        apply(5)
    assert coater.offset(COATER, BLADE) == 15  # exactly the bound
    with pytest.raises(OffsetOutOfBounds) as raised:
        aster_oracle.request_compensation(COATER, BLADE, 1, _id("d"))
    assert raised.value.args_by_name == {
        "lineId": bytes.fromhex(COATER[2:]),
        "parameterId": bytes.fromhex(BLADE[2:]),
        "delta": 1,
        "offset": 16,
        "maxAbsOffset": 15,
    }
    for _ in range(6):
        apply(-5)
    assert coater.offset(COATER, BLADE) == -15
    with pytest.raises(OffsetOutOfBounds) as below:
        aster_oracle.request_compensation(COATER, BLADE, -2, _id("d"))
    assert below.value.args_by_name["offset"] == -17

    # Re-basing restarts the offset at zero from the new baseline.
    coater.configure_parameter(COATER, BLADE, **{**BOUNDS, "baseline": 105})
    assert (coater.offset(COATER, BLADE), coater.parameter(COATER, BLADE).current) == (0, 105)
    apply(-5)
    assert coater.offset(COATER, BLADE) == -5


def test_one_request_in_flight_per_parameter(
    coater: LineControl, aster_oracle: LineControl
) -> None:
    coater.configure_parameter(COATER, SPEED, **BOUNDS)
    aster_oracle.request_compensation(COATER, BLADE, 5, _id("d"))
    with pytest.raises(RequestPending) as raised:
        aster_oracle.request_compensation(COATER, BLADE, 5, _id("d"))
    assert raised.value.args_by_name["requestId"] == 1
    with pytest.raises(RequestPending):  # no re-basing under a request in flight
        coater.configure_parameter(COATER, BLADE, **BOUNDS)
    aster_oracle.request_compensation(COATER, SPEED, 1, _id("d"))  # another parameter is free
    aster_oracle.record_acknowledgement(1, applied=True, read_back=125, detail_hash=_id("a"))
    assert aster_oracle.request_compensation(COATER, BLADE, 5, _id("d")).request_id == 3


def test_unknown_parameters_are_refused(coater: LineControl, aster_oracle: LineControl) -> None:
    with pytest.raises(UnknownParameter) as raised:
        aster_oracle.request_compensation(COATER, SPEED, 1, _id("d"))
    assert raised.value.args_by_name == {
        "lineId": bytes.fromhex(COATER[2:]),
        "parameterId": bytes.fromhex(SPEED[2:]),
    }
    with pytest.raises(UnknownLine):
        aster_oracle.request_compensation(_id("nowhere"), BLADE, 1, _id("d"))
    with pytest.raises(UnknownParameter):
        coater.offset(COATER, SPEED)


def test_only_the_owner_and_its_active_oracles_write_to_a_line(
    coater: LineControl,
    aster_oracle: LineControl,
    consortium_2_of_3: list[Consortium],
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
    new_oracle_sender: OracleSenderFactory,
    admit: AdmitFactory,
) -> None:
    outsider = _as(coater, dev_accounts[5], make_sender)
    with pytest.raises(NotMemberOrOracle):
        outsider.request_compensation(COATER, BLADE, 1, _id("d"))
    with pytest.raises(NotMemberOrOracle):
        outsider.stop_line(COATER, _id("r"))

    delta_consortium = admit(dev_accounts[3], Role.MANUFACTURER, "Delta Motors")
    delta_oracle = LineControl.at(new_oracle_sender(delta_consortium), coater.address)
    borealis = _as(coater, dev_accounts[1], make_sender)
    for other, member in ((delta_oracle, dev_accounts[3]), (borealis, dev_accounts[1])):
        with pytest.raises(NotLineOwner) as raised:
            other.request_compensation(COATER, BLADE, 1, _id("d"))
        assert raised.value.args_by_name["member"] == member.address
        with pytest.raises(NotLineOwner):
            other.stop_line(COATER, _id("r"))

    aster_oracle.request_compensation(COATER, BLADE, 1, _id("d"))
    with pytest.raises(NotLineOwner):
        delta_oracle.record_acknowledgement(1, applied=True, read_back=0, detail_hash=_id("a"))

    # A revoked key is refused at once.
    consortium_2_of_3[0].revoke_oracle(aster_oracle.binding.sender.address)
    with pytest.raises(NotMemberOrOracle):
        aster_oracle.record_acknowledgement(1, applied=True, read_back=0, detail_hash=_id("a"))
    coater.record_acknowledgement(1, applied=True, read_back=121, detail_hash=_id("a"))


# --------------------------------------------------------------------------------------------------
# Stops


def test_a_stopped_line_refuses_compensations_until_restarted(
    coater: LineControl, aster_oracle: LineControl
) -> None:
    oracle_address = aster_oracle.binding.sender.address
    aster_oracle.request_compensation(COATER, BLADE, 2, _id("d"))
    reason = _id("red line: metal detection >= 0.3 mm breached")
    stopped = aster_oracle.stop_line(COATER, reason)
    (event,) = coater.events(stopped)
    assert isinstance(event, LineStoppedEvent)
    assert (event.line_id, event.by, event.reason_hash) == (COATER, oracle_address, reason)
    assert coater.is_stopped(COATER) and coater.line(COATER).stopped

    # What was in flight is still acknowledged; nothing new is requested.
    aster_oracle.record_acknowledgement(1, applied=True, read_back=122, detail_hash=_id("a"))
    with pytest.raises(LineIsStopped) as raised:
        aster_oracle.request_compensation(COATER, BLADE, 1, _id("d"))
    assert raised.value.args_by_name == {"lineId": bytes.fromhex(COATER[2:])}
    with pytest.raises(LineAlreadyStopped):
        coater.stop_line(COATER, reason)

    restarted = coater.restart_line(COATER, _id("detector recalibrated"))
    (event,) = coater.events(restarted)
    assert isinstance(event, LineRestartedEvent)
    assert event.by == coater.binding.sender.address
    assert not coater.is_stopped(COATER)
    with pytest.raises(LineNotStopped):
        aster_oracle.restart_line(COATER, _id("again"))
    assert aster_oracle.request_compensation(COATER, BLADE, 1, _id("d")).request_id == 2


# --------------------------------------------------------------------------------------------------
# Events and arguments


def test_events_between_decodes_every_event_in_chain_order(
    chain: ChainConnection,
    control: LineControl,
    consortium_2_of_3: list[Consortium],
    new_oracle_sender: OracleSenderFactory,
) -> None:
    start = chain.head_block() + 1
    control.register_line(COATER)
    control.configure_parameter(COATER, BLADE, **BOUNDS)
    oracle = LineControl.at(new_oracle_sender(consortium_2_of_3[0]), control.address)
    oracle.request_compensation(COATER, BLADE, 3, _id("d"))
    oracle.record_acknowledgement(1, applied=False, read_back=120, detail_hash=_id("a"))
    oracle.stop_line(COATER, _id("r"))
    oracle.restart_line(COATER, _id("r"))

    events = control.events_between(start)
    assert [type(e).__name__ for e in events] == [
        "LineRegisteredEvent",
        "ParameterConfiguredEvent",
        "CompensationRequestedEvent",
        "CompensationFailedEvent",
        "LineStoppedEvent",
        "LineRestartedEvent",
    ]
    assert [e.block_number for e in events] == sorted(e.block_number for e in events)
    only = control.events_between(start, "latest", ("CompensationRequested", "LineStopped"))
    assert [type(e) for e in only] == [CompensationRequestedEvent, LineStoppedEvent]
    assert of_type(events, LineStoppedEvent) == of_type(only, LineStoppedEvent)
    with pytest.raises(ValueError, match="has no event Nope"):
        control.events_between(start, names=("Nope",))


def test_malformed_arguments_are_refused_before_sending(coater: LineControl) -> None:
    with pytest.raises(ValueError, match=r"delta \d+ does not fit an int256"):
        coater.request_compensation(COATER, BLADE, 2**255, _id("d"))
    with pytest.raises(ValueError, match="decimals 256 does not fit a uint8"):
        coater.configure_parameter(COATER, BLADE, **{**BOUNDS, "decimals": 256})
    with pytest.raises(ValueError, match="line_id must be 0x"):
        coater.stop_line("coater-1", _id("r"))
    with pytest.raises(ValueError, match="delta must be an int"):
        coater.request_compensation(COATER, BLADE, 0.05, _id("d"))  # type: ignore[arg-type]
    assert coater.request_count() == 0
