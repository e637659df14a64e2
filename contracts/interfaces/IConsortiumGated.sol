// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsortium} from "./IConsortium.sol";

/**
 * @title IConsortiumGated
 * @notice What the closed-loop contracts (LineControl, SupplierQuality, CorrectiveAction) share: the
 * Consortium they ask before every write, and the errors of that check.
 * @dev A caller acts for a member either as the member's own account or as one of the member's
 * active oracle keys (`IConsortium.oracleOf`). Configuration and overrides need the member's own
 * account; day-to-day writes accept either.
 */
interface IConsortiumGated {
    /// @notice The consortium address given at deployment has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The caller is neither an active member nor an active oracle key of an active member.
    /// @param caller The caller.
    error NotMemberOrOracle(address caller);

    /// @notice This action needs the member's own account: an oracle key cannot take it.
    /// @param caller The oracle key that tried.
    error MemberAccountRequired(address caller);

    /// @notice The account is not an active member of the consortium.
    /// @param account The account.
    error InactiveMember(address account);

    /// @notice The member has another role than the one this action needs.
    /// @param member The member.
    /// @param required The role needed.
    /// @param actual The member's role.
    error WrongRole(address member, IConsortium.Role required, IConsortium.Role actual);

    /**
     * @notice The consortium whose members and oracle keys may write (fixed at deployment).
     * @return The Consortium contract's address.
     */
    function consortium() external view returns (address);
}
