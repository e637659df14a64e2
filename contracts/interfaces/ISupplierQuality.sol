// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsortiumGated} from "./IConsortiumGated.sol";

/**
 * @title ISupplierQuality
 * @notice Incoming-inspection lots per supplier, consecutive out-of-spec counters, and supplier
 * holds (purchase orders paused) that only a closed 8D case or the customer's signed override lifts.
 * @dev A customer (a manufacturer member's account or one of its active oracle keys) records the
 * lots it receives from a supplier member. Per (customer, supplier, part, characteristic) the
 * contract counts consecutive out-of-spec lots (an in-spec lot resets the count). When the count
 * reaches the customer's threshold for that key (default `DEFAULT_HOLD_THRESHOLD`, 5) and the
 * customer has no active hold on the supplier, the contract places one and opens an 8D case for it
 * in CorrectiveAction. A customer may also place a hold explicitly (with its 8D case). A customer
 * has at most one active hold per supplier. Values are fixed-point: `value / 10**decimals`.
 */
interface ISupplierQuality is IConsortiumGated {
    /// @notice Where a hold stands. `None` marks an id never used.
    enum HoldStatus {
        None,
        Active,
        Released,
        Overridden
    }

    /// @notice A recorded lot; `customer == address(0)` means the lot id was never recorded. In
    /// spec means `lsl <= measured <= usl`.
    struct Lot {
        address customer;
        uint8 decimals;
        bool inSpec;
        uint64 recordedAt;
        address supplier;
        bytes32 partId;
        bytes32 characteristicId;
        int256 measured;
        int256 lsl;
        int256 usl;
    }

    /**
     * @notice A hold. For an automatic hold `partId`, `characteristicId` and `consecutive` say which
     * counter reached its threshold and `reasonHash` is the id of the lot that reached it; for an
     * explicit hold they are zero and `reasonHash` is the customer's. `caseId` is its 8D case in
     * CorrectiveAction. `justificationHash` is set by an override.
     */
    struct Hold {
        address customer;
        HoldStatus status;
        uint64 placedAt;
        address supplier;
        uint32 consecutive;
        uint64 releasedAt;
        bytes32 partId;
        bytes32 characteristicId;
        uint256 caseId;
        bytes32 reasonHash;
        bytes32 justificationHash;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice The CorrectiveAction address given at deployment has no code or another consortium.
    /// @param correctiveAction The address given.
    error InvalidCorrectiveAction(address correctiveAction);

    /// @notice This lot id was recorded before; lot ids are unique.
    /// @param lotId The lot id.
    error LotAlreadyRecorded(bytes32 lotId);

    /// @notice No lot was recorded under this id.
    /// @param lotId The lot id.
    error UnknownLot(bytes32 lotId);

    /// @notice The specification limits need `lsl <= usl`.
    /// @param lotId The lot.
    /// @param lsl The lower limit given.
    /// @param usl The upper limit given.
    error InvalidLimits(bytes32 lotId, int256 lsl, int256 usl);

    /// @notice The customer has an active hold on this supplier already.
    /// @param customer The customer.
    /// @param supplier The supplier.
    /// @param holdId The active hold.
    error AlreadyOnHold(address customer, address supplier, uint256 holdId);

    /// @notice No hold has this id.
    /// @param holdId The id asked for.
    error UnknownHold(uint256 holdId);

    /// @notice The hold was released already.
    /// @param holdId The hold.
    /// @param status How it was released.
    error HoldNotActive(uint256 holdId, HoldStatus status);

    /// @notice The hold's 8D case is not closed: only the customer's override releases it now.
    /// @param holdId The hold.
    /// @param caseId Its 8D case.
    error CaseNotClosed(uint256 holdId, uint256 caseId);

    /// @notice Only the customer that placed the hold overrides it.
    /// @param holdId The hold.
    /// @param caller The caller.
    error NotHoldCustomer(uint256 holdId, address caller);

    /// @notice An override needs the hash of its off-chain justification.
    /// @param holdId The hold.
    error MissingJustification(uint256 holdId);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice A customer recorded an incoming lot; `consecutive` is the out-of-spec count after it.
    event LotRecorded(
        bytes32 indexed lotId,
        address indexed customer,
        address indexed supplier,
        bytes32 partId,
        bytes32 characteristicId,
        int256 measured,
        bool inSpec,
        uint32 consecutive
    );

    /// @notice A customer set its hold threshold for a supplier's part characteristic (0: default).
    event HoldThresholdSet(
        address indexed customer,
        address indexed supplier,
        bytes32 indexed partId,
        bytes32 characteristicId,
        uint32 threshold
    );

    /// @notice A supplier was put on hold by a customer, with an 8D case (`caseId`) opened for it.
    event SupplierHeld(
        uint256 indexed holdId,
        address indexed customer,
        address indexed supplier,
        bytes32 partId,
        bytes32 characteristicId,
        uint32 consecutive,
        uint256 caseId,
        bytes32 reasonHash
    );

    /// @notice A hold was released: by its closed 8D case, or by the customer's override (with the
    /// hash of its justification).
    event HoldReleased(
        uint256 indexed holdId,
        address indexed customer,
        address indexed supplier,
        bool byClosure,
        bytes32 justificationHash
    );

    // ---------------------------------------------------------------------------------------------
    // Lots and thresholds
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Record an incoming lot; may place a hold (see the contract's description). The caller
     * acts for the customer: a manufacturer member's account or one of its active oracle keys.
     * @param supplier The supplier, an active supplier member.
     * @param partId The part (e.g. a hash of its GTIN).
     * @param characteristicId The inspected characteristic (e.g. a hash of "bore_diameter").
     * @param lotId The lot's id (unique).
     * @param measured The measured value.
     * @param lsl The lower specification limit.
     * @param usl The upper specification limit (>= lsl).
     * @param decimals The fixed-point decimals of `measured`, `lsl` and `usl`.
     * @return holdId The hold placed by this lot, or 0.
     */
    function recordLot(
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        bytes32 lotId,
        int256 measured,
        int256 lsl,
        int256 usl,
        uint8 decimals
    ) external returns (uint256 holdId);

    /**
     * @notice Set the caller's hold threshold for a supplier's part characteristic. A manufacturer
     * member's own account.
     * @param supplier The supplier, an active supplier member.
     * @param partId The part.
     * @param characteristicId The characteristic.
     * @param threshold Consecutive out-of-spec lots that place a hold (0 restores the default).
     */
    function setHoldThreshold(
        address supplier,
        bytes32 partId,
        bytes32 characteristicId,
        uint32 threshold
    ) external;

    // ---------------------------------------------------------------------------------------------
    // Holds
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Put a supplier on hold explicitly, with an 8D case. The caller acts for the customer: a
     * manufacturer member's account or one of its active oracle keys.
     * @param supplier The supplier, an active supplier member.
     * @param reasonHash A hash of the off-chain reason (also the 8D case's problem hash).
     * @return holdId The new hold's id.
     */
    function placeHold(address supplier, bytes32 reasonHash) external returns (uint256 holdId);

    /**
     * @notice Release a hold whose 8D case is closed. Anyone may call.
     * @param holdId The hold.
     */
    function release(uint256 holdId) external;

    /**
     * @notice Release a hold before its 8D case is closed: the customer's explicit, signed override.
     * The customer member's own account only (not an oracle key). The 8D case stays open.
     * @param holdId The hold.
     * @param justificationHash A hash of the off-chain justification (non-zero).
     */
    function overrideRelease(uint256 holdId, bytes32 justificationHash) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice The CorrectiveAction contract holds open their 8D cases in (fixed at deployment).
     * @return Its address.
     */
    function correctiveAction() external view returns (address);

    /**
     * @notice Whether a customer has an active hold on a supplier.
     * @param customer The customer.
     * @param supplier The supplier.
     * @return True if on hold.
     */
    function isOnHold(address customer, address supplier) external view returns (bool);

    /**
     * @notice The customer's active hold on a supplier.
     * @param customer The customer.
     * @param supplier The supplier.
     * @return The hold's id, or 0 if none.
     */
    function activeHold(address customer, address supplier) external view returns (uint256);

    /**
     * @notice A hold; `UnknownHold` if the id was never used.
     * @param holdId The hold.
     * @return The hold.
     */
    function hold(uint256 holdId) external view returns (Hold memory);

    /**
     * @notice The number of holds placed so far (also the latest id).
     * @return The count.
     */
    function holdCount() external view returns (uint256);

    /**
     * @notice A recorded lot; `UnknownLot` if never recorded.
     * @param lotId The lot.
     * @return The lot.
     */
    function lot(bytes32 lotId) external view returns (Lot memory);

    /**
     * @notice The consecutive out-of-spec lots of a supplier's part characteristic at a customer.
     * @param customer The customer.
     * @param supplier The supplier.
     * @param partId The part.
     * @param characteristicId The characteristic.
     * @return The count (0 after an in-spec lot).
     */
    function consecutiveOutOfSpec(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId
    ) external view returns (uint32);

    /**
     * @notice The hold threshold in force for a supplier's part characteristic at a customer.
     * @param customer The customer.
     * @param supplier The supplier.
     * @param partId The part.
     * @param characteristicId The characteristic.
     * @return The threshold (the default when unset).
     */
    function holdThreshold(
        address customer,
        address supplier,
        bytes32 partId,
        bytes32 characteristicId
    ) external view returns (uint32);
}
