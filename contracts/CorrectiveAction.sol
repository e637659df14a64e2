// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ConsortiumGated} from "./ConsortiumGated.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {ICorrectiveAction} from "./interfaces/ICorrectiveAction.sol";
import {ISupplierQuality} from "./interfaces/ISupplierQuality.sol";

/**
 * @title CorrectiveAction
 * @notice The 8D workflow (D0 to D8) as a state machine per case, between a customer and a supplier.
 * @dev Wiring: deploy CorrectiveAction(consortium), then SupplierQuality(consortium, this), then the
 * deployer calls `setSupplierQuality` once. The setter checks that the SupplierQuality contract
 * points back here, so neither side can be wired to a stranger; until it is called, cases are only
 * opened directly.
 */
contract CorrectiveAction is ICorrectiveAction, ConsortiumGated {
    uint8 private constant LAST_DISCIPLINE = 8;

    address private immutable _deployer;
    address private _supplierQuality;

    uint256 private _caseCount;
    mapping(uint256 caseId => Case) private _cases;
    mapping(uint256 caseId => mapping(uint8 discipline => bytes32)) private _reports;

    /**
     * @notice Deploy the 8D workflow for a consortium; the deployer may wire SupplierQuality once.
     * @param consortium_ The Consortium contract whose members and oracle keys take part.
     */
    constructor(address consortium_) ConsortiumGated(consortium_) {
        _deployer = msg.sender;
    }

    // ---------------------------------------------------------------------------------------------
    // Wiring
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ICorrectiveAction
    function setSupplierQuality(address supplierQuality_) external {
        if (msg.sender != _deployer) revert NotDeployer(msg.sender);
        if (_supplierQuality != address(0)) revert SupplierQualityAlreadySet(_supplierQuality);
        if (
            supplierQuality_.code.length == 0 ||
            ISupplierQuality(supplierQuality_).correctiveAction() != address(this)
        ) revert InvalidSupplierQuality(supplierQuality_);
        _supplierQuality = supplierQuality_;
        emit SupplierQualitySet(supplierQuality_);
    }

    // ---------------------------------------------------------------------------------------------
    // Cases
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ICorrectiveAction
    function open(address supplier, bytes32 problemHash) external returns (uint256 caseId) {
        address customer = _actingMember(IConsortium.Role.Manufacturer);
        _requireMember(supplier, IConsortium.Role.Supplier);
        return _open(customer, supplier, 0, problemHash);
    }

    /// @inheritdoc ICorrectiveAction
    function openForHold(
        address customer,
        address supplier,
        uint256 holdId,
        bytes32 problemHash
    ) external returns (uint256 caseId) {
        // Unwired, `_supplierQuality` is zero, which no caller is.
        if (msg.sender != _supplierQuality) revert NotSupplierQuality(msg.sender);
        return _open(customer, supplier, holdId, problemHash);
    }

    /// @inheritdoc ICorrectiveAction
    function submit(uint256 caseId, uint8 discipline, bytes32 reportHash) external {
        Case storage c = _openCase(caseId);
        if (_actingMember() != c.supplier) revert NotResponsibleParty(caseId, msg.sender);
        _requireAt(caseId, c, discipline);
        if (c.awaitingReview) revert DisciplineAwaitingReview(caseId, discipline);
        c.awaitingReview = true;
        _reports[caseId][discipline] = reportHash;
        emit DisciplineSubmitted(caseId, discipline, msg.sender, reportHash);
    }

    /// @inheritdoc ICorrectiveAction
    function approve(uint256 caseId, uint8 discipline) external {
        Case storage c = _reviewable(caseId, discipline);
        bool last = discipline == LAST_DISCIPLINE;
        if (last && !c.effectivenessVerified) revert EffectivenessNotVerified(caseId);
        c.awaitingReview = false;
        emit DisciplineApproved(caseId, discipline, msg.sender);
        if (last) {
            c.status = CaseStatus.Closed;
            c.closedAt = uint64(block.timestamp);
            emit CaseClosed(caseId, c.customer, c.supplier, c.holdId);
        } else {
            c.discipline = discipline + 1;
        }
    }

    /// @inheritdoc ICorrectiveAction
    function reject(uint256 caseId, uint8 discipline, bytes32 reasonHash) external {
        Case storage c = _reviewable(caseId, discipline);
        c.awaitingReview = false;
        emit DisciplineRejected(caseId, discipline, msg.sender, reasonHash);
    }

    /// @inheritdoc ICorrectiveAction
    function verifyEffectiveness(uint256 caseId, bytes32 evidenceHash) external {
        Case storage c = _openCase(caseId);
        address member_ = _actingMember();
        if (member_ != c.customer && _roleOf(member_) != IConsortium.Role.Lab) {
            revert NotCustomerOrLab(caseId, msg.sender);
        }
        if (c.discipline < LAST_DISCIPLINE) revert EffectivenessCheckTooEarly(caseId, c.discipline);
        if (c.effectivenessVerified) revert EffectivenessAlreadyVerified(caseId);
        c.effectivenessVerified = true;
        c.verifiedBy = member_;
        c.evidenceHash = evidenceHash;
        emit EffectivenessVerified(caseId, member_, msg.sender, evidenceHash);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ICorrectiveAction
    function supplierQuality() external view returns (address) {
        return _supplierQuality;
    }

    /// @inheritdoc ICorrectiveAction
    function caseRecord(uint256 caseId) external view returns (Case memory) {
        return _case(caseId);
    }

    /// @inheritdoc ICorrectiveAction
    function isClosed(uint256 caseId) external view returns (bool) {
        return _case(caseId).status == CaseStatus.Closed;
    }

    /// @inheritdoc ICorrectiveAction
    function report(uint256 caseId, uint8 discipline) external view returns (bytes32) {
        _case(caseId);
        return _reports[caseId][discipline];
    }

    /// @inheritdoc ICorrectiveAction
    function caseCount() external view returns (uint256) {
        return _caseCount;
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _open(
        address customer,
        address supplier,
        uint256 holdId,
        bytes32 problemHash
    ) private returns (uint256 caseId) {
        caseId = ++_caseCount;
        Case storage c = _cases[caseId];
        c.customer = customer;
        c.status = CaseStatus.Open;
        c.openedAt = uint64(block.timestamp);
        c.supplier = supplier;
        c.holdId = holdId;
        c.problemHash = problemHash;
        emit CaseOpened(caseId, customer, supplier, holdId, problemHash);
    }

    function _case(uint256 caseId) private view returns (Case storage c) {
        if (caseId == 0 || caseId > _caseCount) revert UnknownCase(caseId);
        c = _cases[caseId];
    }

    function _openCase(uint256 caseId) private view returns (Case storage c) {
        c = _case(caseId);
        if (c.status == CaseStatus.Closed) revert CaseAlreadyClosed(caseId);
    }

    function _requireAt(uint256 caseId, Case storage c, uint8 discipline) private view {
        if (discipline != c.discipline) revert DisciplineOutOfOrder(caseId, c.discipline, discipline);
    }

    /// @dev An open case whose customer the caller acts for, with `discipline` submitted for review.
    function _reviewable(uint256 caseId, uint8 discipline) private view returns (Case storage c) {
        c = _openCase(caseId);
        if (_actingMember() != c.customer) revert NotCustomer(caseId, msg.sender);
        _requireAt(caseId, c, discipline);
        if (!c.awaitingReview) revert DisciplineNotSubmitted(caseId, discipline);
    }
}
