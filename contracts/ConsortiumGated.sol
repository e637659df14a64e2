// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsortium} from "./interfaces/IConsortium.sol";
import {IConsortiumGated} from "./interfaces/IConsortiumGated.sol";

/**
 * @title ConsortiumGated
 * @notice Base of the closed-loop contracts: resolves the caller to the member it acts for.
 * @dev Every check asks the Consortium at call time, so a removed member, a revoked oracle key or a
 * removed member's key is refused at once.
 */
abstract contract ConsortiumGated is IConsortiumGated {
    IConsortium private immutable _consortium;

    /// @param consortium_ The Consortium contract whose members and oracle keys may write.
    constructor(address consortium_) {
        if (consortium_.code.length == 0) revert InvalidConsortium(consortium_);
        _consortium = IConsortium(consortium_);
    }

    /// @inheritdoc IConsortiumGated
    function consortium() external view returns (address) {
        return address(_consortium);
    }

    /// @dev The member the caller acts for: itself if it is an active member, else the member of the
    /// active oracle key it is.
    function _actingMember() internal view returns (address member_) {
        if (_consortium.isActiveMember(msg.sender)) return msg.sender;
        bool active;
        (active, member_) = _consortium.oracleOf(msg.sender);
        if (!active) revert NotMemberOrOracle(msg.sender);
    }

    /// @dev As `_actingMember()`, and the member must have `role`.
    function _actingMember(IConsortium.Role role) internal view returns (address member_) {
        member_ = _actingMember();
        _requireMember(member_, role);
    }

    /// @dev The caller, which must be an active member's own account (not one of its oracle keys).
    function _memberAccount() internal view returns (address) {
        if (!_consortium.isActiveMember(msg.sender)) {
            if (_consortium.isActiveOracle(msg.sender)) revert MemberAccountRequired(msg.sender);
            revert NotMemberOrOracle(msg.sender);
        }
        return msg.sender;
    }

    /// @dev As `_memberAccount()`, and the member must have `role`.
    function _memberAccount(IConsortium.Role role) internal view returns (address member_) {
        member_ = _memberAccount();
        _requireMember(member_, role);
    }

    /// @dev Reverts unless `account` is an active member with `role`.
    function _requireMember(address account, IConsortium.Role role) internal view {
        IConsortium.Member memory stored = _consortium.member(account);
        if (!stored.active) revert InactiveMember(account);
        if (stored.role != role) revert WrongRole(account, role, stored.role);
    }

    /// @dev The role of a member (also of a removed one; `None` if never admitted).
    function _roleOf(address account) internal view returns (IConsortium.Role) {
        return _consortium.member(account).role;
    }
}
