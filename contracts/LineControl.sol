// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ConsortiumGated} from "./ConsortiumGated.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {ILineControl} from "./interfaces/ILineControl.sol";

/**
 * @title LineControl
 * @notice Bounded compensations of a manufacturer's line parameters, their PLC acknowledgements, and
 * line stops and restarts.
 * @dev Bounds are checked when a compensation is requested: the delta against the per-request range,
 * and the offset it would lead to against the cumulative bound. With one request in flight per
 * parameter, and no re-basing while one is, that check is exact when the acknowledgement applies it.
 */
contract LineControl is ILineControl, ConsortiumGated {
    uint256 private _requestCount;
    mapping(bytes32 lineId => Line) private _lines;
    mapping(bytes32 lineId => mapping(bytes32 parameterId => Parameter)) private _parameters;
    mapping(uint256 requestId => CompensationRequest) private _requests;

    /**
     * @notice Deploy line control for a consortium.
     * @param consortium_ The Consortium contract whose manufacturers and their oracle keys write.
     */
    constructor(address consortium_) ConsortiumGated(consortium_) {}

    // ---------------------------------------------------------------------------------------------
    // Lines and parameters
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ILineControl
    function registerLine(bytes32 lineId) external {
        address owner = _memberAccount(IConsortium.Role.Manufacturer);
        Line storage stored = _lines[lineId];
        if (stored.owner != address(0)) revert LineAlreadyRegistered(lineId, stored.owner);
        stored.owner = owner;
        stored.registeredAt = uint64(block.timestamp);
        emit LineRegistered(lineId, owner);
    }

    /// @inheritdoc ILineControl
    function configureParameter(
        bytes32 lineId,
        bytes32 parameterId,
        int256 baseline,
        int256 minDelta,
        int256 maxDelta,
        int256 maxAbsOffset,
        uint8 decimals
    ) external {
        _requireOwner(lineId, _memberAccount());
        if (minDelta > maxDelta || maxAbsOffset < 0) {
            revert InvalidBounds(minDelta, maxDelta, maxAbsOffset);
        }
        Parameter storage stored = _parameters[lineId][parameterId];
        uint256 pending = stored.pendingRequestId;
        if (pending != 0) revert RequestPending(lineId, parameterId, pending);
        _parameters[lineId][parameterId] = Parameter({
            baseline: baseline,
            minDelta: minDelta,
            maxDelta: maxDelta,
            maxAbsOffset: maxAbsOffset,
            offset: 0,
            pendingRequestId: 0,
            decimals: decimals,
            configured: true
        });
        emit ParameterConfigured(
            lineId,
            parameterId,
            baseline,
            minDelta,
            maxDelta,
            maxAbsOffset,
            decimals
        );
    }

    // ---------------------------------------------------------------------------------------------
    // Compensations
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ILineControl
    function requestCompensation(
        bytes32 lineId,
        bytes32 parameterId,
        int256 delta,
        bytes32 decisionHash
    ) external returns (uint256 requestId) {
        Line storage stored = _requireOwner(lineId, _actingMember());
        if (stored.stopped) revert LineIsStopped(lineId);
        Parameter storage p = _configured(lineId, parameterId);
        if (p.pendingRequestId != 0) revert RequestPending(lineId, parameterId, p.pendingRequestId);
        if (delta < p.minDelta || delta > p.maxDelta) {
            revert DeltaOutOfBounds(lineId, parameterId, delta, p.minDelta, p.maxDelta);
        }
        int256 next = p.offset + delta;
        if (next > p.maxAbsOffset || next < -p.maxAbsOffset) {
            revert OffsetOutOfBounds(lineId, parameterId, delta, next, p.maxAbsOffset);
        }

        requestId = ++_requestCount;
        p.pendingRequestId = requestId;
        CompensationRequest storage r = _requests[requestId];
        r.lineId = lineId;
        r.parameterId = parameterId;
        r.delta = delta;
        r.decisionHash = decisionHash;
        r.requester = msg.sender;
        r.requestedAt = uint64(block.timestamp);
        r.status = RequestStatus.Pending;
        emit CompensationRequested(requestId, lineId, parameterId, delta, decisionHash);
    }

    /// @inheritdoc ILineControl
    function recordAcknowledgement(
        uint256 requestId,
        bool applied,
        int256 readBack,
        bytes32 detailHash
    ) external {
        CompensationRequest storage r = _request(requestId);
        bytes32 lineId = r.lineId;
        _requireOwner(lineId, _actingMember());
        if (r.status != RequestStatus.Pending) revert AlreadyAcknowledged(requestId, r.status);

        bytes32 parameterId = r.parameterId;
        Parameter storage p = _parameters[lineId][parameterId];
        p.pendingRequestId = 0;
        r.readBack = readBack;
        r.detailHash = detailHash;
        r.acknowledger = msg.sender;
        r.acknowledgedAt = uint64(block.timestamp);
        if (applied) {
            r.status = RequestStatus.Applied;
            int256 newOffset = p.offset + r.delta;
            p.offset = newOffset;
            emit CompensationAcknowledged(
                requestId,
                lineId,
                parameterId,
                readBack,
                newOffset,
                detailHash
            );
        } else {
            r.status = RequestStatus.Failed;
            emit CompensationFailed(requestId, lineId, parameterId, readBack, detailHash);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Stops
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ILineControl
    function stopLine(bytes32 lineId, bytes32 reasonHash) external {
        Line storage stored = _requireOwner(lineId, _actingMember());
        if (stored.stopped) revert LineAlreadyStopped(lineId);
        stored.stopped = true;
        emit LineStopped(lineId, msg.sender, reasonHash);
    }

    /// @inheritdoc ILineControl
    function restartLine(bytes32 lineId, bytes32 reasonHash) external {
        Line storage stored = _requireOwner(lineId, _actingMember());
        if (!stored.stopped) revert LineNotStopped(lineId);
        stored.stopped = false;
        emit LineRestarted(lineId, msg.sender, reasonHash);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ILineControl
    function line(bytes32 lineId) external view returns (Line memory) {
        return _line(lineId);
    }

    /// @inheritdoc ILineControl
    function isStopped(bytes32 lineId) external view returns (bool) {
        return _line(lineId).stopped;
    }

    /// @inheritdoc ILineControl
    function parameter(
        bytes32 lineId,
        bytes32 parameterId
    ) external view returns (Parameter memory) {
        return _configured(lineId, parameterId);
    }

    /// @inheritdoc ILineControl
    function offset(bytes32 lineId, bytes32 parameterId) external view returns (int256) {
        return _configured(lineId, parameterId).offset;
    }

    /// @inheritdoc ILineControl
    function request(uint256 requestId) external view returns (CompensationRequest memory) {
        return _request(requestId);
    }

    /// @inheritdoc ILineControl
    function requestCount() external view returns (uint256) {
        return _requestCount;
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _line(bytes32 lineId) private view returns (Line storage stored) {
        stored = _lines[lineId];
        if (stored.owner == address(0)) revert UnknownLine(lineId);
    }

    /// @dev The line, which `member` must own.
    function _requireOwner(
        bytes32 lineId,
        address member_
    ) private view returns (Line storage stored) {
        stored = _line(lineId);
        if (stored.owner != member_) revert NotLineOwner(lineId, member_);
    }

    function _configured(
        bytes32 lineId,
        bytes32 parameterId
    ) private view returns (Parameter storage p) {
        p = _parameters[lineId][parameterId];
        if (!p.configured) revert UnknownParameter(lineId, parameterId);
    }

    function _request(uint256 requestId) private view returns (CompensationRequest storage r) {
        if (requestId == 0 || requestId > _requestCount) revert UnknownRequest(requestId);
        r = _requests[requestId];
    }
}
