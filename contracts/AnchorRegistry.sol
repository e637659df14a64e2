// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IAnchorRegistry} from "./interfaces/IAnchorRegistry.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";

/**
 * @title AnchorRegistry
 * @notice Member oracles anchor the Merkle roots of their off-chain record batches; anyone verifies a
 * record's proof against them.
 * @dev Write access is asked of the Consortium on every anchor (`oracleOf`), so a revoked key or a
 * removed member's key is refused at once. A batch is stored in four slots (see `StoredBatch`) and the
 * count in one more, which keeps an anchor transaction near 130k gas whatever the batch size.
 */
contract AnchorRegistry is IAnchorRegistry {
    /// @dev `Batch` re-ordered to pack into four storage slots; `root != 0` marks an anchored batch.
    struct StoredBatch {
        address member; // slot 0
        uint32 leafCount; // slot 0
        uint64 anchoredAt; // slot 0
        address oracle; // slot 1
        uint64 blockNumber; // slot 1
        bytes32 root; // slot 2
        bytes32 manifestHash; // slot 3
    }

    IConsortium private immutable _consortium;

    uint256 private _batchCount;
    mapping(bytes32 batchId => StoredBatch) private _batches;

    /**
     * @notice Deploy the registry for a consortium.
     * @param consortium_ The Consortium contract whose active oracle keys may anchor.
     */
    constructor(address consortium_) {
        if (consortium_.code.length == 0) revert InvalidConsortium(consortium_);
        _consortium = IConsortium(consortium_);
    }

    // ---------------------------------------------------------------------------------------------
    // Anchoring
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IAnchorRegistry
    function anchor(bytes32 batchId, bytes32 root, uint32 leafCount, bytes32 manifestHash) external {
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert EmptyBatch();
        (bool active, address member_) = _consortium.oracleOf(msg.sender);
        if (!active) revert NotActiveOracle(msg.sender);
        StoredBatch storage stored = _batches[batchId];
        bytes32 existing = stored.root;
        if (existing != bytes32(0)) revert BatchAlreadyAnchored(batchId, existing);

        stored.member = member_;
        stored.leafCount = leafCount;
        stored.anchoredAt = uint64(block.timestamp);
        stored.oracle = msg.sender;
        stored.blockNumber = uint64(block.number);
        stored.root = root;
        stored.manifestHash = manifestHash;
        unchecked {
            ++_batchCount; // cannot overflow: one increment per transaction
        }

        emit BatchAnchored(member_, batchId, root, msg.sender, leafCount, manifestHash);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IAnchorRegistry
    function consortium() external view returns (address) {
        return address(_consortium);
    }

    /// @inheritdoc IAnchorRegistry
    function batch(bytes32 batchId) external view returns (Batch memory) {
        StoredBatch storage stored = _anchored(batchId);
        return
            Batch({
                member: stored.member,
                oracle: stored.oracle,
                root: stored.root,
                leafCount: stored.leafCount,
                manifestHash: stored.manifestHash,
                anchoredAt: stored.anchoredAt,
                blockNumber: stored.blockNumber
            });
    }

    /// @inheritdoc IAnchorRegistry
    function isAnchored(bytes32 batchId) external view returns (bool) {
        return _batches[batchId].root != bytes32(0);
    }

    /// @inheritdoc IAnchorRegistry
    function batchCount() external view returns (uint256) {
        return _batchCount;
    }

    /// @inheritdoc IAnchorRegistry
    function verify(
        bytes32 batchId,
        bytes32 leaf,
        bytes32[] calldata proof
    ) external view returns (bool) {
        return MerkleProof.verifyCalldata(proof, _anchored(batchId).root, leaf);
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _anchored(bytes32 batchId) private view returns (StoredBatch storage stored) {
        stored = _batches[batchId];
        if (stored.root == bytes32(0)) revert UnknownBatch(batchId);
    }
}
