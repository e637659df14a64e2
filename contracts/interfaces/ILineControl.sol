// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsortiumGated} from "./IConsortiumGated.sol";

/**
 * @title ILineControl
 * @notice Bounded process compensations for a manufacturer's lines (e.g. a coater's blade
 * pressure), their acknowledgement by the PLC, and line stops and restarts, all on the record.
 * @dev A manufacturer member registers its lines and, per line parameter, a baseline and bounds:
 * the smallest and largest delta one request may ask for, and the largest absolute cumulative
 * offset from the baseline. Values are fixed-point: `value / 10**decimals` in the parameter's unit.
 * Requests, acknowledgements, stops and restarts come from the line owner's account or one of its
 * active oracle keys; registering lines and configuring parameters needs the owner's own account.
 * A parameter has at most one request in flight: the next one is accepted after the PLC's
 * acknowledgement is recorded, so the cumulative bound holds exactly.
 */
interface ILineControl is IConsortiumGated {
    /// @notice Where a compensation request stands. `None` marks an id never used.
    enum RequestStatus {
        None,
        Pending,
        Applied,
        Failed
    }

    /// @notice A registered line; `owner == address(0)` means the line id was never registered.
    struct Line {
        address owner;
        bool stopped;
        uint64 registeredAt;
    }

    /// @notice A line parameter's bounds and state. `offset` is the sum of the applied deltas since
    /// `baseline` was configured; `pendingRequestId` is the request in flight (0 if none).
    struct Parameter {
        int256 baseline;
        int256 minDelta;
        int256 maxDelta;
        int256 maxAbsOffset;
        int256 offset;
        uint256 pendingRequestId;
        uint8 decimals;
        bool configured;
    }

    /// @notice A compensation request and, once recorded, the PLC's acknowledgement. `requester`
    /// and `acknowledger` are the accounts that sent them (the owner's account or an oracle key).
    struct CompensationRequest {
        bytes32 lineId;
        bytes32 parameterId;
        int256 delta;
        bytes32 decisionHash;
        address requester;
        uint64 requestedAt;
        RequestStatus status;
        int256 readBack;
        bytes32 detailHash;
        address acknowledger;
        uint64 acknowledgedAt;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice No line is registered under this id.
    /// @param lineId The line id.
    error UnknownLine(bytes32 lineId);

    /// @notice This line id is registered already; line ids are unique across members.
    /// @param lineId The line id.
    /// @param owner The member that registered it.
    error LineAlreadyRegistered(bytes32 lineId, address owner);

    /// @notice The caller acts for another member than the line's owner.
    /// @param lineId The line.
    /// @param member The member the caller acts for.
    error NotLineOwner(bytes32 lineId, address member);

    /// @notice The parameter was never configured on this line.
    /// @param lineId The line.
    /// @param parameterId The parameter.
    error UnknownParameter(bytes32 lineId, bytes32 parameterId);

    /// @notice Bounds need `minDelta <= maxDelta` and `maxAbsOffset >= 0`.
    /// @param minDelta The smallest delta given.
    /// @param maxDelta The largest delta given.
    /// @param maxAbsOffset The largest absolute offset given.
    error InvalidBounds(int256 minDelta, int256 maxDelta, int256 maxAbsOffset);

    /// @notice The parameter has a request in flight: record its acknowledgement first.
    /// @param lineId The line.
    /// @param parameterId The parameter.
    /// @param requestId The pending request.
    error RequestPending(bytes32 lineId, bytes32 parameterId, uint256 requestId);

    /// @notice The line is stopped: no compensation is requested until it restarts.
    /// @param lineId The line.
    error LineIsStopped(bytes32 lineId);

    /// @notice The line is stopped already.
    /// @param lineId The line.
    error LineAlreadyStopped(bytes32 lineId);

    /// @notice The line is running: only a stopped line restarts.
    /// @param lineId The line.
    error LineNotStopped(bytes32 lineId);

    /// @notice The requested delta is outside the parameter's per-request bounds.
    /// @param lineId The line.
    /// @param parameterId The parameter.
    /// @param delta The requested delta.
    /// @param minDelta The smallest delta allowed.
    /// @param maxDelta The largest delta allowed.
    error DeltaOutOfBounds(
        bytes32 lineId,
        bytes32 parameterId,
        int256 delta,
        int256 minDelta,
        int256 maxDelta
    );

    /// @notice Applying the delta would move the parameter further from its baseline than allowed.
    /// @param lineId The line.
    /// @param parameterId The parameter.
    /// @param delta The requested delta.
    /// @param offset The cumulative offset the delta would lead to.
    /// @param maxAbsOffset The largest absolute offset allowed.
    error OffsetOutOfBounds(
        bytes32 lineId,
        bytes32 parameterId,
        int256 delta,
        int256 offset,
        int256 maxAbsOffset
    );

    /// @notice No compensation request has this id.
    /// @param requestId The id asked for.
    error UnknownRequest(uint256 requestId);

    /// @notice The request's acknowledgement was recorded already.
    /// @param requestId The request.
    /// @param status What was recorded (Applied or Failed).
    error AlreadyAcknowledged(uint256 requestId, RequestStatus status);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice A manufacturer registered a line.
    event LineRegistered(bytes32 indexed lineId, address indexed owner);

    /// @notice A line owner configured (or re-based) a parameter; its offset restarted at zero.
    event ParameterConfigured(
        bytes32 indexed lineId,
        bytes32 indexed parameterId,
        int256 baseline,
        int256 minDelta,
        int256 maxDelta,
        int256 maxAbsOffset,
        uint8 decimals
    );

    /// @notice A compensation within bounds was requested; the line owner's node writes it to the PLC.
    event CompensationRequested(
        uint256 indexed requestId,
        bytes32 indexed lineId,
        bytes32 indexed parameterId,
        int256 delta,
        bytes32 decisionHash
    );

    /// @notice The PLC applied a compensation; `offset` is the parameter's cumulative offset now.
    event CompensationAcknowledged(
        uint256 indexed requestId,
        bytes32 indexed lineId,
        bytes32 indexed parameterId,
        int256 readBack,
        int256 offset,
        bytes32 detailHash
    );

    /// @notice The PLC did not apply a compensation; the offset is unchanged.
    event CompensationFailed(
        uint256 indexed requestId,
        bytes32 indexed lineId,
        bytes32 indexed parameterId,
        int256 readBack,
        bytes32 detailHash
    );

    /// @notice A line was stopped (e.g. a red line was breached); `by` is the account that sent it.
    event LineStopped(bytes32 indexed lineId, address indexed by, bytes32 reasonHash);

    /// @notice A stopped line was restarted; `by` is the account that sent it.
    event LineRestarted(bytes32 indexed lineId, address indexed by, bytes32 reasonHash);

    // ---------------------------------------------------------------------------------------------
    // Lines and parameters
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Register a line for the caller, which must be a manufacturer member's own account.
     * @param lineId The line's id (unique across members; e.g. a hash of its GIAI).
     */
    function registerLine(bytes32 lineId) external;

    /**
     * @notice Configure a line parameter's baseline and bounds, or re-base it: the cumulative offset
     * restarts at zero from `baseline`. The line owner's own account only; refused while a request
     * on the parameter is in flight.
     * @param lineId The line.
     * @param parameterId The parameter (e.g. a hash of "blade_pressure").
     * @param baseline The parameter's value the offset is counted from.
     * @param minDelta The smallest delta one request may ask for.
     * @param maxDelta The largest delta one request may ask for (>= minDelta).
     * @param maxAbsOffset The largest absolute cumulative offset from the baseline (>= 0).
     * @param decimals The fixed-point decimals of every value of this parameter.
     */
    function configureParameter(
        bytes32 lineId,
        bytes32 parameterId,
        int256 baseline,
        int256 minDelta,
        int256 maxDelta,
        int256 maxAbsOffset,
        uint8 decimals
    ) external;

    // ---------------------------------------------------------------------------------------------
    // Compensations
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Request a compensation of a running line's parameter. The line owner's account or
     * one of its active oracle keys. Ids are sequential from 1.
     * @param lineId The line.
     * @param parameterId The parameter.
     * @param delta The change asked for (fixed-point, the parameter's decimals).
     * @param decisionHash A hash of the off-chain decision (rule, readings) behind the request.
     * @return requestId The new request's id.
     */
    function requestCompensation(
        bytes32 lineId,
        bytes32 parameterId,
        int256 delta,
        bytes32 decisionHash
    ) external returns (uint256 requestId);

    /**
     * @notice Record the PLC's acknowledgement of a request, once. The line owner's account or one of
     * its active oracle keys. The cumulative offset moves only when `applied`.
     * @param requestId The request.
     * @param applied Whether the PLC applied the delta.
     * @param readBack The value the PLC reported back (fixed-point, the parameter's decimals).
     * @param detailHash A hash of the off-chain acknowledgement details.
     */
    function recordAcknowledgement(
        uint256 requestId,
        bool applied,
        int256 readBack,
        bytes32 detailHash
    ) external;

    // ---------------------------------------------------------------------------------------------
    // Stops
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Stop a running line. The line owner's account or one of its active oracle keys.
     * @param lineId The line.
     * @param reasonHash A hash of the off-chain reason (the breached red line, the readings).
     */
    function stopLine(bytes32 lineId, bytes32 reasonHash) external;

    /**
     * @notice Restart a stopped line. The line owner's account or one of its active oracle keys.
     * @param lineId The line.
     * @param reasonHash A hash of the off-chain reason (what was fixed, who released it).
     */
    function restartLine(bytes32 lineId, bytes32 reasonHash) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice A line; `UnknownLine` if never registered.
     * @param lineId The line.
     * @return The line.
     */
    function line(bytes32 lineId) external view returns (Line memory);

    /**
     * @notice Whether a line is stopped; `UnknownLine` if never registered.
     * @param lineId The line.
     * @return True if stopped.
     */
    function isStopped(bytes32 lineId) external view returns (bool);

    /**
     * @notice A parameter's bounds and state; `UnknownParameter` if never configured.
     * @param lineId The line.
     * @param parameterId The parameter.
     * @return The parameter.
     */
    function parameter(bytes32 lineId, bytes32 parameterId) external view returns (Parameter memory);

    /**
     * @notice A parameter's cumulative applied offset from its baseline; `UnknownParameter` if never
     * configured.
     * @param lineId The line.
     * @param parameterId The parameter.
     * @return The offset (fixed-point, the parameter's decimals).
     */
    function offset(bytes32 lineId, bytes32 parameterId) external view returns (int256);

    /**
     * @notice A compensation request; `UnknownRequest` if the id was never used.
     * @param requestId The request.
     * @return The request.
     */
    function request(uint256 requestId) external view returns (CompensationRequest memory);

    /**
     * @notice The number of compensation requests so far (also the latest id).
     * @return The count.
     */
    function requestCount() external view returns (uint256);
}
