// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ConsortiumGated} from "./ConsortiumGated.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {ICorrectiveAction} from "./interfaces/ICorrectiveAction.sol";
import {ISupplierQuality} from "./interfaces/ISupplierQuality.sol";

/**
 * @title SupplierQuality
 * @notice Incoming lots, consecutive out-of-spec counters, and supplier holds released by a closed 8D
 * case or by the customer's signed override.
 * @dev The counter keeps counting while the supplier is on hold, and a hold is placed whenever the
 * count is at or above the threshold and the customer has no active hold on the supplier: a lot
 * still out of spec after a release puts the supplier back on hold at once.
 */
contract SupplierQuality is ISupplierQuality, ConsortiumGated {
    /// @notice The hold threshold of a counter whose customer did not set one.
    uint32 public constant DEFAULT_HOLD_THRESHOLD = 5;

    /// @dev Per (customer, supplier, part, characteristic): one storage slot.
    struct Counter {
        uint32 consecutive;
        uint32 threshold; // 0: DEFAULT_HOLD_THRESHOLD
    }

    ICorrectiveAction private immutable _correctiveAction;

    uint256 private _holdCount;
    mapping(bytes32 lotId => Lot) private _lots;
    mapping(bytes32 counterKey => Counter) private _counters;
    mapping(uint256 holdId => Hold) private _holds;
    mapping(address customer => mapping(address supplier => uint256 holdId)) private _activeHolds;

    /**
     * @notice Deploy supplier quality for a consortium; then wire it into the CorrectiveAction
     * contract (`ICorrectiveAction.setSupplierQuality`).
     * @param consortium_ The Consortium contract whose manufacturers record lots and hold suppliers.
     * @param correctiveAction_ The CorrectiveAction contract of the same consortium.
     */
    constructor(
        address consortium_,
        address correctiveAction_
    ) ConsortiumGated(consortium_) {
        if (
            correctiveAction_.code.length == 0 ||
            ICorrectiveAction(correctiveAction_).consortium() != consortium_
        ) revert InvalidCorrectiveAction(correctiveAction_);
        _correctiveAction = ICorrectiveAction(correctiveAction_);
    }

    // ---------------------------------------------------------------------------------------------
    // Lots and thresholds
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISupplierQuality
    function recordLot(
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        bytes32 lotId,
        int256 measured,
        int256 lsl,
        int256 usl,
        uint8 decimals
    ) external returns (uint256 holdId) {
        address customer = _actingMember(IConsortium.Role.Manufacturer);
        _requireMember(supplier, IConsortium.Role.Supplier);
        bool inSpec = _storeLot(
            lotId,
            customer,
            supplier,
            partId,
            characteristicId,
            measured,
            lsl,
            usl,
            decimals
        );
        return _count(lotId, customer, supplier, partId, characteristicId, measured, inSpec);
    }

    /// @inheritdoc ISupplierQuality
    function setHoldThreshold(
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        uint32 threshold
    ) external {
        address customer = _memberAccount(IConsortium.Role.Manufacturer);
        _requireMember(supplier, IConsortium.Role.Supplier);
        _counters[_counterKey(customer, supplier, partId, characteristicId)].threshold = threshold;
        emit HoldThresholdSet(customer, supplier, partId, characteristicId, threshold);
    }

    // ---------------------------------------------------------------------------------------------
    // Holds
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISupplierQuality
    function placeHold(address supplier, bytes32 reasonHash) external returns (uint256 holdId) {
        address customer = _actingMember(IConsortium.Role.Manufacturer);
        _requireMember(supplier, IConsortium.Role.Supplier);
        uint256 active = _activeHolds[customer][supplier];
        if (active != 0) revert AlreadyOnHold(customer, supplier, active);
        return _placeHold(customer, supplier, bytes32(0), bytes32(0), 0, reasonHash);
    }

    /// @inheritdoc ISupplierQuality
    function release(uint256 holdId) external {
        Hold storage h = _activeHold(holdId);
        uint256 caseId = h.caseId;
        if (!_correctiveAction.isClosed(caseId)) revert CaseNotClosed(holdId, caseId);
        _release(holdId, h, HoldStatus.Released, bytes32(0));
    }

    /// @inheritdoc ISupplierQuality
    function overrideRelease(uint256 holdId, bytes32 justificationHash) external {
        Hold storage h = _activeHold(holdId);
        address caller = _memberAccount();
        if (caller != h.customer) revert NotHoldCustomer(holdId, caller);
        if (justificationHash == bytes32(0)) revert MissingJustification(holdId);
        _release(holdId, h, HoldStatus.Overridden, justificationHash);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISupplierQuality
    function correctiveAction() external view returns (address) {
        return address(_correctiveAction);
    }

    /// @inheritdoc ISupplierQuality
    function isOnHold(address customer, address supplier) external view returns (bool) {
        return _activeHolds[customer][supplier] != 0;
    }

    /// @inheritdoc ISupplierQuality
    function activeHold(address customer, address supplier) external view returns (uint256) {
        return _activeHolds[customer][supplier];
    }

    /// @inheritdoc ISupplierQuality
    function hold(uint256 holdId) external view returns (Hold memory) {
        return _hold(holdId);
    }

    /// @inheritdoc ISupplierQuality
    function holdCount() external view returns (uint256) {
        return _holdCount;
    }

    /// @inheritdoc ISupplierQuality
    function lot(bytes32 lotId) external view returns (Lot memory) {
        Lot storage stored = _lots[lotId];
        if (stored.customer == address(0)) revert UnknownLot(lotId);
        return stored;
    }

    /// @inheritdoc ISupplierQuality
    function consecutiveOutOfSpec(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId
    ) external view returns (uint32) {
        return _counters[_counterKey(customer, supplier, partId, characteristicId)].consecutive;
    }

    /// @inheritdoc ISupplierQuality
    function holdThreshold(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId
    ) external view returns (uint32) {
        return _threshold(_counters[_counterKey(customer, supplier, partId, characteristicId)]);
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    /// @dev Stores a new lot; returns whether it is in spec.
    function _storeLot(
        bytes32 lotId,
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        int256 measured,
        int256 lsl,
        int256 usl,
        uint8 decimals
    ) private returns (bool inSpec) {
        if (lsl > usl) revert InvalidLimits(lotId, lsl, usl);
        Lot storage stored = _lots[lotId];
        if (stored.customer != address(0)) revert LotAlreadyRecorded(lotId);
        inSpec = lsl <= measured && measured <= usl;
        stored.customer = customer;
        stored.decimals = decimals;
        stored.inSpec = inSpec;
        stored.recordedAt = uint64(block.timestamp);
        stored.supplier = supplier;
        stored.partId = partId;
        stored.characteristicId = characteristicId;
        stored.measured = measured;
        stored.lsl = lsl;
        stored.usl = usl;
    }

    /// @dev Counts the lot, and places a hold when the count reaches the threshold and the customer
    /// has no active hold on the supplier. Returns the hold placed, or 0.
    function _count(
        bytes32 lotId,
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        int256 measured,
        bool inSpec
    ) private returns (uint256 holdId) {
        Counter storage counter = _counters[
            _counterKey(customer, supplier, partId, characteristicId)
        ];
        uint32 consecutive = inSpec ? 0 : counter.consecutive + 1;
        counter.consecutive = consecutive;
        emit LotRecorded(
            lotId,
            customer,
            supplier,
            partId,
            characteristicId,
            measured,
            inSpec,
            consecutive
        );
        if (
            consecutive != 0 &&
            consecutive >= _threshold(counter) &&
            _activeHolds[customer][supplier] == 0
        ) {
            holdId = _placeHold(customer, supplier, partId, characteristicId, consecutive, lotId);
        }
    }

    function _placeHold(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        uint32 consecutive,
        bytes32 reasonHash
    ) private returns (uint256 holdId) {
        holdId = ++_holdCount;
        _activeHolds[customer][supplier] = holdId;
        Hold storage h = _holds[holdId];
        h.customer = customer;
        h.status = HoldStatus.Active;
        h.placedAt = uint64(block.timestamp);
        h.supplier = supplier;
        h.consecutive = consecutive;
        h.partId = partId;
        h.characteristicId = characteristicId;
        h.reasonHash = reasonHash;
        // The trusted CorrectiveAction contract (fixed at deployment); the hold is stored first.
        uint256 caseId = _correctiveAction.openForHold(customer, supplier, holdId, reasonHash);
        h.caseId = caseId;
        emit SupplierHeld(
            holdId,
            customer,
            supplier,
            partId,
            characteristicId,
            consecutive,
            caseId,
            reasonHash
        );
    }

    function _release(
        uint256 holdId,
        Hold storage h,
        HoldStatus status,
        bytes32 justificationHash
    ) private {
        h.status = status;
        h.releasedAt = uint64(block.timestamp);
        h.justificationHash = justificationHash;
        delete _activeHolds[h.customer][h.supplier];
        emit HoldReleased(
            holdId,
            h.customer,
            h.supplier,
            status == HoldStatus.Released,
            justificationHash
        );
    }

    function _hold(uint256 holdId) private view returns (Hold storage h) {
        if (holdId == 0 || holdId > _holdCount) revert UnknownHold(holdId);
        h = _holds[holdId];
    }

    function _activeHold(uint256 holdId) private view returns (Hold storage h) {
        h = _hold(holdId);
        if (h.status != HoldStatus.Active) revert HoldNotActive(holdId, h.status);
    }

    function _threshold(Counter storage counter) private view returns (uint32) {
        uint32 threshold = counter.threshold;
        return threshold == 0 ? DEFAULT_HOLD_THRESHOLD : threshold;
    }

    function _counterKey(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId
    ) private pure returns (bytes32) {
        return keccak256(abi.encode(customer, supplier, partId, characteristicId));
    }
}
