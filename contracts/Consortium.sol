// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";

/**
 * @title Consortium
 * @notice Members, roles, M-of-N admission and removal votes, and per-member oracle keys.
 * @dev The threshold M and the proposal time-to-live are fixed at deployment. Each admission starts
 * a new membership epoch for the account. Approvals are recounted over the stored voters: a vote
 * counts while its voter is active in the epoch it voted in, so a removed member's vote stops
 * counting (and does not come back if the account is admitted again; it may then vote anew).
 * Likewise oracle keys registered in an earlier epoch stay inactive after a re-admission. Removal is
 * O(1) whatever the number of keys, so a member cannot make itself unremovable by registering many.
 */
contract Consortium is IConsortium {
    using EnumerableSet for EnumerableSet.AddressSet;

    /// @dev An oracle key's record; `member == address(0)` means the key was never registered.
    struct OracleKey {
        address member;
        uint64 epoch;
        bool revoked;
    }

    uint32 private immutable _threshold;
    uint64 private immutable _proposalTtl;

    mapping(address account => Member) private _members;
    /// @dev Incremented at each admission of the account; 0 means never admitted.
    mapping(address account => uint64) private _epochs;
    EnumerableSet.AddressSet private _activeMembers;

    uint256 private _proposalCount;
    mapping(uint256 proposalId => Proposal) private _proposals;
    mapping(uint256 proposalId => address[]) private _voters;
    /// @dev The membership epoch in which the account approved the proposal; 0 if it never did.
    mapping(uint256 proposalId => mapping(address account => uint64)) private _approvalEpochs;

    mapping(address oracle => OracleKey) private _oracles;
    mapping(address account => mapping(uint64 epoch => EnumerableSet.AddressSet)) private _oracleSets;

    modifier onlyActiveMember() {
        if (!_members[msg.sender].active) revert NotActiveMember(msg.sender);
        _;
    }

    /**
     * @notice Deploy the consortium with its founders, admitted at once.
     * @param founders The founders' addresses.
     * @param roles The founders' roles (same order).
     * @param names The founders' names (same order).
     * @param endpoints The founders' node endpoints (same order; may be empty strings).
     * @param threshold_ Approvals needed to execute a proposal: 1 <= threshold_ <= founders.length.
     * @param proposalTtl_ Seconds a proposal can be approved after its creation (> 0).
     */
    constructor(
        address[] memory founders,
        Role[] memory roles,
        string[] memory names,
        string[] memory endpoints,
        uint32 threshold_,
        uint64 proposalTtl_
    ) {
        uint256 n = founders.length;
        if (roles.length != n || names.length != n || endpoints.length != n) revert FounderListMismatch();
        if (threshold_ == 0 || threshold_ > n) revert InvalidThreshold(threshold_, n);
        if (proposalTtl_ == 0) revert InvalidProposalTtl();
        _threshold = threshold_;
        _proposalTtl = proposalTtl_;
        for (uint256 i = 0; i < n; ++i) {
            _checkAdmission(founders[i], roles[i], names[i]);
            _admit(founders[i], roles[i], names[i], endpoints[i]);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IConsortium
    function propose(
        ProposalKind kind,
        address subject,
        Role role,
        string calldata name,
        string calldata endpoint
    ) external onlyActiveMember returns (uint256 proposalId) {
        // Fail fast: the same checks run again at execution, when the state may have changed.
        if (kind == ProposalKind.Admit) {
            _checkAdmission(subject, role, name);
        } else {
            _checkRemoval(subject);
        }

        proposalId = ++_proposalCount;
        uint64 createdAt = uint64(block.timestamp);
        uint256 expiry = block.timestamp + _proposalTtl;
        uint64 expiresAt = expiry > type(uint64).max ? type(uint64).max : uint64(expiry);

        Proposal storage p = _proposals[proposalId];
        p.kind = kind;
        p.subject = subject;
        if (kind == ProposalKind.Admit) {
            p.role = role;
            p.name = name;
            p.endpoint = endpoint;
        }
        p.proposer = msg.sender;
        p.createdAt = createdAt;
        p.expiresAt = expiresAt;

        emit ProposalCreated(proposalId, kind, subject, msg.sender, expiresAt);
        _vote(proposalId, p);
    }

    /// @inheritdoc IConsortium
    function approve(uint256 proposalId) external onlyActiveMember {
        if (proposalId == 0 || proposalId > _proposalCount) revert UnknownProposal(proposalId);
        Proposal storage p = _proposals[proposalId];
        if (p.executed) revert ProposalAlreadyExecuted(proposalId);
        if (block.timestamp >= p.expiresAt) revert ProposalExpired(proposalId, p.expiresAt);
        if (_hasApproved(proposalId, msg.sender)) revert AlreadyApproved(proposalId, msg.sender);
        _vote(proposalId, p);
    }

    /// @inheritdoc IConsortium
    function updateEndpoint(string calldata endpoint) external onlyActiveMember {
        _members[msg.sender].endpoint = endpoint;
        emit MemberEndpointUpdated(msg.sender, endpoint);
    }

    // ---------------------------------------------------------------------------------------------
    // Oracle keys
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IConsortium
    function registerOracle(address oracle) external onlyActiveMember {
        _registerOracle(msg.sender, oracle);
    }

    /// @inheritdoc IConsortium
    function rotateOracle(address oldOracle, address newOracle) external onlyActiveMember {
        _revokeOracle(msg.sender, oldOracle);
        _registerOracle(msg.sender, newOracle);
    }

    /// @inheritdoc IConsortium
    function revokeOracle(address oracle) external onlyActiveMember {
        _revokeOracle(msg.sender, oracle);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IConsortium
    function member(address account) external view returns (Member memory) {
        return _members[account];
    }

    /// @inheritdoc IConsortium
    function isActiveMember(address account) external view returns (bool) {
        return _members[account].active;
    }

    /// @inheritdoc IConsortium
    function members() external view returns (address[] memory) {
        return _activeMembers.values();
    }

    /// @inheritdoc IConsortium
    function memberCount() external view returns (uint256) {
        return _activeMembers.length();
    }

    /// @inheritdoc IConsortium
    function threshold() external view returns (uint32) {
        return _threshold;
    }

    /// @inheritdoc IConsortium
    function proposalTtl() external view returns (uint64) {
        return _proposalTtl;
    }

    /// @inheritdoc IConsortium
    function proposal(uint256 proposalId) external view returns (Proposal memory p) {
        if (proposalId == 0 || proposalId > _proposalCount) revert UnknownProposal(proposalId);
        p = _proposals[proposalId];
        if (!p.executed) p.approvals = _countApprovals(proposalId);
    }

    /// @inheritdoc IConsortium
    function proposalCount() external view returns (uint256) {
        return _proposalCount;
    }

    /// @inheritdoc IConsortium
    function hasApproved(uint256 proposalId, address member_) external view returns (bool) {
        return _hasApproved(proposalId, member_);
    }

    /// @inheritdoc IConsortium
    function oracleOf(address oracle) external view returns (bool active, address member_) {
        return _oracleState(oracle);
    }

    /// @inheritdoc IConsortium
    function isActiveOracle(address oracle) external view returns (bool) {
        (bool active, ) = _oracleState(oracle);
        return active;
    }

    /// @inheritdoc IConsortium
    function oraclesOf(address member_) external view returns (address[] memory) {
        if (!_members[member_].active) return new address[](0);
        return _oracleSets[member_][_epochs[member_]].values();
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _vote(uint256 proposalId, Proposal storage p) private {
        // A voter from an earlier membership epoch is already in the list: only its epoch changes.
        if (_approvalEpochs[proposalId][msg.sender] == 0) _voters[proposalId].push(msg.sender);
        _approvalEpochs[proposalId][msg.sender] = _epochs[msg.sender];
        uint32 approvals = _countApprovals(proposalId);
        p.approvals = approvals;
        emit ProposalApproved(proposalId, msg.sender, approvals);
        if (approvals >= _threshold) _execute(proposalId, p);
    }

    function _execute(uint256 proposalId, Proposal storage p) private {
        p.executed = true;
        address subject = p.subject;
        if (p.kind == ProposalKind.Admit) {
            Role role = p.role;
            string memory name = p.name;
            _checkAdmission(subject, role, name);
            _admit(subject, role, name, p.endpoint);
        } else {
            _checkRemoval(subject);
            _remove(subject);
        }
        emit ProposalExecuted(proposalId);
    }

    function _countApprovals(uint256 proposalId) private view returns (uint32 count) {
        address[] storage voters = _voters[proposalId];
        uint256 n = voters.length;
        for (uint256 i = 0; i < n; ++i) {
            address voter = voters[i];
            bool counts = _members[voter].active &&
                _approvalEpochs[proposalId][voter] == _epochs[voter];
            if (counts) ++count;
        }
    }

    /// @dev Whether `account` approved the proposal during its latest membership epoch.
    function _hasApproved(uint256 proposalId, address account) private view returns (bool) {
        uint64 epoch = _approvalEpochs[proposalId][account];
        return epoch != 0 && epoch == _epochs[account];
    }

    function _checkAdmission(address subject, Role role, string memory name) private view {
        if (subject == address(0)) revert ZeroAddress();
        if (_members[subject].active) revert AlreadyMember(subject);
        if (role == Role.None) revert InvalidRole();
        if (bytes(name).length == 0) revert EmptyName();
    }

    function _checkRemoval(address subject) private view {
        if (!_members[subject].active) revert NotMember(subject);
        uint256 remaining = _activeMembers.length() - 1;
        if (remaining < _threshold) revert QuorumWouldBreak(remaining, _threshold);
    }

    function _admit(address account, Role role, string memory name, string memory endpoint) private {
        ++_epochs[account];
        _members[account] = Member({
            role: role,
            active: true,
            name: name,
            endpoint: endpoint,
            admittedAt: uint64(block.timestamp)
        });
        _activeMembers.add(account);
        emit MemberAdmitted(account, role, name, endpoint);
    }

    function _remove(address account) private {
        _members[account].active = false;
        _activeMembers.remove(account);
        emit MemberRemoved(account);
    }

    function _registerOracle(address account, address oracle) private {
        if (oracle == address(0)) revert ZeroAddress();
        if (_oracles[oracle].member != address(0)) revert OracleAlreadyRegistered(oracle);
        uint64 epoch = _epochs[account];
        _oracles[oracle] = OracleKey({member: account, epoch: epoch, revoked: false});
        _oracleSets[account][epoch].add(oracle);
        emit OracleRegistered(account, oracle);
    }

    function _revokeOracle(address account, address oracle) private {
        if (oracle == address(0)) revert ZeroAddress();
        OracleKey storage key = _oracles[oracle];
        address owner = key.member;
        if (owner == address(0)) revert OracleNotActive(oracle);
        if (owner != account) revert NotOracleOwner(oracle, account);
        if (key.revoked || key.epoch != _epochs[account]) revert OracleNotActive(oracle);
        key.revoked = true;
        _oracleSets[account][key.epoch].remove(oracle);
        emit OracleRevoked(account, oracle);
    }

    function _oracleState(address oracle) private view returns (bool active, address member_) {
        OracleKey storage key = _oracles[oracle];
        member_ = key.member;
        active =
            member_ != address(0) &&
            !key.revoked &&
            _members[member_].active &&
            key.epoch == _epochs[member_];
    }
}
