// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsortiumGated} from "./IConsortiumGated.sol";

/**
 * @title ICorrectiveAction
 * @notice The 8D corrective-action workflow (disciplines D0 to D8) between a customer and a supplier,
 * one state machine per case. Reports stay off-chain; the chain holds their hashes and the approvals.
 * @dev A case is opened by SupplierQuality when it places a hold, or directly by a manufacturer
 * member (or its oracle key) for a supplier member. The supplier (its account or an oracle key)
 * submits each discipline in order; the customer (its account or an oracle key) approves it, or
 * rejects it and the supplier submits it again. The next discipline is submitted only after the
 * previous one is approved. D8 is approved only after the effectiveness of the actions was verified
 * (by the customer or a lab member, once D7 is approved); its approval closes the case.
 */
interface ICorrectiveAction is IConsortiumGated {
    /// @notice Where a case stands. `None` marks an id never used.
    enum CaseStatus {
        None,
        Open,
        Closed
    }

    /**
     * @notice An 8D case. `discipline` is the discipline the case is at (0..8): awaiting its
     * submission, or its review when `awaitingReview`. `holdId` is the SupplierQuality hold the
     * case was opened for (0 for a case opened directly). `verifiedBy` is the member (customer or
     * lab) that verified the effectiveness, with `evidenceHash`.
     */
    struct Case {
        address customer;
        CaseStatus status;
        uint8 discipline;
        bool awaitingReview;
        bool effectivenessVerified;
        uint64 openedAt;
        address supplier;
        uint64 closedAt;
        address verifiedBy;
        uint256 holdId;
        bytes32 problemHash;
        bytes32 evidenceHash;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice No case has this id.
    /// @param caseId The id asked for.
    error UnknownCase(uint256 caseId);

    /// @notice The case is closed: nothing more can be submitted, reviewed or verified.
    /// @param caseId The case.
    error CaseAlreadyClosed(uint256 caseId);

    /// @notice The caller acts for another member than the case's supplier.
    /// @param caseId The case.
    /// @param caller The caller.
    error NotResponsibleParty(uint256 caseId, address caller);

    /// @notice The caller acts for another member than the case's customer.
    /// @param caseId The case.
    /// @param caller The caller.
    error NotCustomer(uint256 caseId, address caller);

    /// @notice The caller acts neither for the case's customer nor for a lab member.
    /// @param caseId The case.
    /// @param caller The caller.
    error NotCustomerOrLab(uint256 caseId, address caller);

    /// @notice The discipline is not the one the case is at.
    /// @param caseId The case.
    /// @param expected The discipline the case is at.
    /// @param got The discipline given.
    error DisciplineOutOfOrder(uint256 caseId, uint8 expected, uint8 got);

    /// @notice The discipline was submitted and awaits the customer's review.
    /// @param caseId The case.
    /// @param discipline The discipline.
    error DisciplineAwaitingReview(uint256 caseId, uint8 discipline);

    /// @notice The discipline has no submission to review (never submitted, or rejected since).
    /// @param caseId The case.
    /// @param discipline The discipline.
    error DisciplineNotSubmitted(uint256 caseId, uint8 discipline);

    /// @notice D8 cannot be approved before the effectiveness of the actions is verified.
    /// @param caseId The case.
    error EffectivenessNotVerified(uint256 caseId);

    /// @notice Effectiveness is verified only once D7 is approved.
    /// @param caseId The case.
    /// @param discipline The discipline the case is at.
    error EffectivenessCheckTooEarly(uint256 caseId, uint8 discipline);

    /// @notice The effectiveness of this case's actions was verified already.
    /// @param caseId The case.
    error EffectivenessAlreadyVerified(uint256 caseId);

    /// @notice Only the configured SupplierQuality contract opens cases for holds.
    /// @param caller The caller.
    error NotSupplierQuality(address caller);

    /// @notice Only the deployer wires the SupplierQuality contract.
    /// @param caller The caller.
    error NotDeployer(address caller);

    /// @notice The SupplierQuality contract is wired already (once, for good).
    /// @param supplierQuality The wired contract.
    error SupplierQualityAlreadySet(address supplierQuality);

    /// @notice The address is not a SupplierQuality contract bound to this CorrectiveAction.
    /// @param supplierQuality The address given.
    error InvalidSupplierQuality(address supplierQuality);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice The deployer wired the SupplierQuality contract that opens cases for holds.
    event SupplierQualitySet(address indexed supplierQuality);

    /// @notice A case was opened; `holdId` is the hold it was opened for (0 if opened directly).
    event CaseOpened(
        uint256 indexed caseId,
        address indexed customer,
        address indexed supplier,
        uint256 holdId,
        bytes32 problemHash
    );

    /// @notice The supplier submitted a discipline's report; `by` is the account that sent it.
    event DisciplineSubmitted(
        uint256 indexed caseId,
        uint8 indexed discipline,
        address indexed by,
        bytes32 reportHash
    );

    /// @notice The customer approved a discipline; `by` is the account that sent it.
    event DisciplineApproved(uint256 indexed caseId, uint8 indexed discipline, address indexed by);

    /// @notice The customer rejected a discipline; the supplier submits it again.
    event DisciplineRejected(
        uint256 indexed caseId,
        uint8 indexed discipline,
        address indexed by,
        bytes32 reasonHash
    );

    /// @notice The customer or a lab verified the effectiveness of the actions; `member` is the
    /// member it was verified for, `by` the account that sent it.
    event EffectivenessVerified(
        uint256 indexed caseId,
        address indexed member,
        address indexed by,
        bytes32 evidenceHash
    );

    /// @notice D8 was approved: the case is closed (a hold opened with it may now be released).
    event CaseClosed(
        uint256 indexed caseId,
        address indexed customer,
        address indexed supplier,
        uint256 holdId
    );

    // ---------------------------------------------------------------------------------------------
    // Wiring
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Wire the SupplierQuality contract that opens cases for its holds. Once, by the deployer;
     * the contract must have been deployed with this CorrectiveAction.
     * @param supplierQuality_ The SupplierQuality contract.
     */
    function setSupplierQuality(address supplierQuality_) external;

    // ---------------------------------------------------------------------------------------------
    // Cases
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Open a case for a supplier. The caller acts for the customer: a manufacturer member's
     * account or one of its active oracle keys. Ids are sequential from 1.
     * @param supplier The supplier member responsible for the corrective action.
     * @param problemHash A hash of the off-chain problem description.
     * @return caseId The new case's id.
     */
    function open(address supplier, bytes32 problemHash) external returns (uint256 caseId);

    /**
     * @notice Open a case for a hold. Only the wired SupplierQuality contract, which checked the
     * customer and the supplier.
     * @param customer The customer member that placed the hold.
     * @param supplier The supplier member on hold.
     * @param holdId The hold.
     * @param problemHash The hold's reason hash.
     * @return caseId The new case's id.
     */
    function openForHold(
        address customer,
        address supplier,
        uint256 holdId,
        bytes32 problemHash
    ) external returns (uint256 caseId);

    /**
     * @notice Submit the report of the discipline the case is at. The supplier's account or one of
     * its active oracle keys.
     * @param caseId The case.
     * @param discipline The discipline (0..8), the one the case is at.
     * @param reportHash A hash of the off-chain report.
     */
    function submit(uint256 caseId, uint8 discipline, bytes32 reportHash) external;

    /**
     * @notice Approve the submitted discipline; approving D8 (after the effectiveness check) closes
     * the case. The customer's account or one of its active oracle keys.
     * @param caseId The case.
     * @param discipline The discipline under review.
     */
    function approve(uint256 caseId, uint8 discipline) external;

    /**
     * @notice Reject the submitted discipline: the supplier submits it again. The customer's account
     * or one of its active oracle keys.
     * @param caseId The case.
     * @param discipline The discipline under review.
     * @param reasonHash A hash of the off-chain reason.
     */
    function reject(uint256 caseId, uint8 discipline, bytes32 reasonHash) external;

    /**
     * @notice Record that the actions were verified effective, once, after D7 is approved. The
     * customer or any lab member (their accounts or active oracle keys).
     * @param caseId The case.
     * @param evidenceHash A hash of the off-chain evidence (e.g. a lab report).
     */
    function verifyEffectiveness(uint256 caseId, bytes32 evidenceHash) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice The SupplierQuality contract that opens cases for holds (zero until wired).
     * @return Its address.
     */
    function supplierQuality() external view returns (address);

    /**
     * @notice A case; `UnknownCase` if the id was never used.
     * @param caseId The case.
     * @return The case.
     */
    function caseRecord(uint256 caseId) external view returns (Case memory);

    /**
     * @notice Whether a case is closed; `UnknownCase` if the id was never used.
     * @param caseId The case.
     * @return True if D8 was approved.
     */
    function isClosed(uint256 caseId) external view returns (bool);

    /**
     * @notice The latest report hash submitted for a discipline (the approved one once approved;
     * zero if none). `UnknownCase` if the id was never used.
     * @param caseId The case.
     * @param discipline The discipline (0..8).
     * @return The report hash.
     */
    function report(uint256 caseId, uint8 discipline) external view returns (bytes32);

    /**
     * @notice The number of cases opened so far (also the latest id).
     * @return The count.
     */
    function caseCount() external view returns (uint256);
}
