// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IConsortium
 * @notice Membership, roles, M-of-N governance and oracle keys of the quality-traceability consortium.
 * @dev Every other contract of the consortium asks this one whether an account is an active member or
 * an active oracle before accepting a write.
 */
interface IConsortium {
    /// @notice What a member does in the consortium. `None` marks an account that was never admitted.
    enum Role {
        None,
        Manufacturer,
        Supplier,
        Lab,
        Auditor
    }

    /// @notice What a governance proposal does once it reaches the threshold.
    enum ProposalKind {
        Admit,
        Remove
    }

    /// @notice A member record. Kept (inactive) after removal so its history stays readable.
    struct Member {
        Role role;
        bool active;
        string name;
        string endpoint;
        uint64 admittedAt;
    }

    /// @notice A governance proposal. `approvals` counts the votes of members active at read time
    /// (in the membership they voted in).
    struct Proposal {
        ProposalKind kind;
        address subject;
        Role role;
        string name;
        string endpoint;
        address proposer;
        uint64 createdAt;
        uint64 expiresAt;
        uint32 approvals;
        bool executed;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice The caller is not an active member of the consortium.
    /// @param account The caller.
    error NotActiveMember(address account);

    /// @notice The account is already an active member.
    /// @param account The account to admit.
    error AlreadyMember(address account);

    /// @notice The account is not an active member.
    /// @param account The account to remove.
    error NotMember(address account);

    /// @notice A member needs a role other than `None`.
    error InvalidRole();

    /// @notice A member needs a non-empty name.
    error EmptyName();

    /// @notice The zero address cannot be a member or an oracle key.
    error ZeroAddress();

    /// @notice The threshold must satisfy 1 <= threshold <= number of founders.
    /// @param threshold The threshold given at deployment.
    /// @param founders The number of founders given at deployment.
    error InvalidThreshold(uint256 threshold, uint256 founders);

    /// @notice The proposal time-to-live must be greater than zero.
    error InvalidProposalTtl();

    /// @notice The founder arrays (addresses, roles, names, endpoints) differ in length.
    error FounderListMismatch();

    /// @notice No proposal has this id.
    /// @param proposalId The id asked for.
    error UnknownProposal(uint256 proposalId);

    /// @notice The proposal can no longer be approved.
    /// @param proposalId The proposal.
    /// @param expiresAt When it expired (unix seconds).
    error ProposalExpired(uint256 proposalId, uint64 expiresAt);

    /// @notice The proposal was already executed.
    /// @param proposalId The proposal.
    error ProposalAlreadyExecuted(uint256 proposalId);

    /// @notice The member already approved this proposal.
    /// @param proposalId The proposal.
    /// @param member The member who approved it before.
    error AlreadyApproved(uint256 proposalId, address member);

    /// @notice Removing the member would leave fewer active members than the threshold.
    /// @param remaining Active members left after the removal.
    /// @param threshold The approval threshold.
    error QuorumWouldBreak(uint256 remaining, uint32 threshold);

    /// @notice This oracle key was registered before (by any member); keys are never reused.
    /// @param oracle The key.
    error OracleAlreadyRegistered(address oracle);

    /// @notice This oracle key is not active (unknown, revoked, or its member was removed).
    /// @param oracle The key.
    error OracleNotActive(address oracle);

    /// @notice The oracle key belongs to another member.
    /// @param oracle The key.
    /// @param caller The member who tried to manage it.
    error NotOracleOwner(address oracle, address caller);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice A member proposed to admit or remove `subject`.
    event ProposalCreated(
        uint256 indexed proposalId,
        ProposalKind kind,
        address indexed subject,
        address indexed proposer,
        uint64 expiresAt
    );

    /// @notice A member approved a proposal; `approvals` counts the active members' votes so far.
    event ProposalApproved(uint256 indexed proposalId, address indexed approver, uint32 approvals);

    /// @notice A proposal reached the threshold and was carried out.
    event ProposalExecuted(uint256 indexed proposalId);

    /// @notice An account became an active member (founders at deployment, others by proposal).
    event MemberAdmitted(address indexed member, Role role, string name, string endpoint);

    /// @notice A member was removed; its oracle keys stopped being active with it.
    event MemberRemoved(address indexed member);

    /// @notice A member changed the endpoint where its node is reached.
    event MemberEndpointUpdated(address indexed member, string endpoint);

    /// @notice A member registered an oracle key.
    event OracleRegistered(address indexed member, address indexed oracle);

    /// @notice A member revoked one of its oracle keys.
    event OracleRevoked(address indexed member, address indexed oracle);

    // ---------------------------------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Propose to admit or remove a member. The proposer's approval counts at once, so with a
     * threshold of 1 the proposal executes in the same transaction.
     * @dev For `Remove`, `role`, `name` and `endpoint` are ignored. Ids start at 1.
     * @param kind Admit or Remove.
     * @param subject The account to admit or remove.
     * @param role The role of the account to admit.
     * @param name The display name of the account to admit.
     * @param endpoint Where the admitted member's node is reached (may be empty).
     * @return proposalId The new proposal's id.
     */
    function propose(
        ProposalKind kind,
        address subject,
        Role role,
        string calldata name,
        string calldata endpoint
    ) external returns (uint256 proposalId);

    /**
     * @notice Approve a pending proposal; executes it when the active members' approvals reach the
     * threshold.
     * @param proposalId The proposal to approve.
     */
    function approve(uint256 proposalId) external;

    /**
     * @notice Change the caller's own endpoint.
     * @param endpoint The new endpoint.
     */
    function updateEndpoint(string calldata endpoint) external;

    // ---------------------------------------------------------------------------------------------
    // Oracle keys
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Register an oracle key for the caller. A key can be registered only once, ever.
     * @param oracle The key's address.
     */
    function registerOracle(address oracle) external;

    /**
     * @notice Revoke one of the caller's active oracle keys and register a new one, atomically.
     * @param oldOracle The key to revoke.
     * @param newOracle The key to register.
     */
    function rotateOracle(address oldOracle, address newOracle) external;

    /**
     * @notice Revoke one of the caller's active oracle keys.
     * @param oracle The key to revoke.
     */
    function revokeOracle(address oracle) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice The member record of an account (zero values if it was never admitted).
     * @param account The account.
     * @return The record, also for a removed member (with `active == false`).
     */
    function member(address account) external view returns (Member memory);

    /**
     * @notice Whether an account is an active member.
     * @param account The account.
     * @return True if it is an active member.
     */
    function isActiveMember(address account) external view returns (bool);

    /**
     * @notice The active members, in no particular order.
     * @return The active members' addresses.
     */
    function members() external view returns (address[] memory);

    /**
     * @notice The number of active members.
     * @return The count.
     */
    function memberCount() external view returns (uint256);

    /**
     * @notice The number of approvals that executes a proposal (fixed at deployment).
     * @return The threshold M.
     */
    function threshold() external view returns (uint32);

    /**
     * @notice How long a proposal can be approved after its creation (fixed at deployment).
     * @return The time-to-live in seconds.
     */
    function proposalTtl() external view returns (uint64);

    /**
     * @notice A proposal. For a pending proposal `approvals` counts the votes of currently active
     * members; for an executed one it is the count at execution.
     * @param proposalId The proposal.
     * @return The proposal.
     */
    function proposal(uint256 proposalId) external view returns (Proposal memory);

    /**
     * @notice The number of proposals created so far (also the id of the latest one).
     * @return The count.
     */
    function proposalCount() external view returns (uint256);

    /**
     * @notice Whether an account approved a proposal during its latest membership (a removed
     * member's vote is still reported; after a re-admission the account may approve anew).
     * @param proposalId The proposal.
     * @param member_ The account.
     * @return True if it approved the proposal.
     */
    function hasApproved(uint256 proposalId, address member_) external view returns (bool);

    /**
     * @notice The state of an oracle key.
     * @param oracle The key.
     * @return active True iff the key is registered, not revoked, and its member is active and has
     * not been removed since it registered the key.
     * @return member_ The member that registered the key (also when inactive); zero if unknown.
     */
    function oracleOf(address oracle) external view returns (bool active, address member_);

    /**
     * @notice Whether an oracle key is active (see `oracleOf`).
     * @param oracle The key.
     * @return True if the key is active.
     */
    function isActiveOracle(address oracle) external view returns (bool);

    /**
     * @notice The active oracle keys of a member (empty if the member is not active).
     * @param member_ The member.
     * @return The keys.
     */
    function oraclesOf(address member_) external view returns (address[] memory);
}
