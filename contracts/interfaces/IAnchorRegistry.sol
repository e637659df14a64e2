// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IAnchorRegistry
 * @notice Merkle roots of the members' off-chain record batches, posted by their oracle keys, so that
 * any off-chain record can be proven untampered against the chain.
 * @dev Leaves and proofs follow OpenZeppelin's StandardMerkleTree (leaf =
 * keccak256(bytes.concat(keccak256(abi.encode(values)))), sorted-pair hashing), so `verify` accepts
 * the proofs made by OpenZeppelin's merkle-tree npm package. A batch id is anchored at most once.
 */
interface IAnchorRegistry {
    /// @notice An anchored batch. `member` is the member the posting oracle key belonged to at the
    /// time; `anchoredAt` and `blockNumber` are those of the anchoring block.
    struct Batch {
        address member;
        address oracle;
        bytes32 root;
        uint32 leafCount;
        bytes32 manifestHash;
        uint64 anchoredAt;
        uint64 blockNumber;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice The caller is not an active oracle key of an active member.
    /// @param caller The caller.
    error NotActiveOracle(address caller);

    /// @notice This batch id was anchored before; a batch id is never anchored twice.
    /// @param batchId The batch id.
    /// @param root The root stored for it: equal to the posted root on a retry of the same batch.
    error BatchAlreadyAnchored(bytes32 batchId, bytes32 root);

    /// @notice A Merkle root cannot be zero.
    error ZeroRoot();

    /// @notice A batch needs at least one leaf.
    error EmptyBatch();

    /// @notice No batch was anchored under this id.
    /// @param batchId The batch id asked for.
    error UnknownBatch(bytes32 batchId);

    /// @notice The consortium address given at deployment has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice An oracle of `member` anchored a batch's Merkle root.
    event BatchAnchored(
        address indexed member,
        bytes32 indexed batchId,
        bytes32 indexed root,
        address oracle,
        uint32 leafCount,
        bytes32 manifestHash
    );

    // ---------------------------------------------------------------------------------------------
    // Anchoring
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Anchor a batch's Merkle root. The caller must be an active oracle key of an active
     * member (see `IConsortium.oracleOf`); the batch is recorded under that member.
     * @param batchId The batch's id (deterministic, so that a retry cannot anchor a batch twice).
     * @param root The batch's Merkle root (non-zero).
     * @param leafCount The number of leaves in the batch (> 0).
     * @param manifestHash A hash of the batch's off-chain manifest (may be zero).
     */
    function anchor(bytes32 batchId, bytes32 root, uint32 leafCount, bytes32 manifestHash) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice The consortium whose oracle keys may anchor (fixed at deployment).
     * @return The Consortium contract's address.
     */
    function consortium() external view returns (address);

    /**
     * @notice An anchored batch; reverts with `UnknownBatch` if the id was never anchored.
     * @param batchId The batch id.
     * @return The batch.
     */
    function batch(bytes32 batchId) external view returns (Batch memory);

    /**
     * @notice Whether a batch id has been anchored.
     * @param batchId The batch id.
     * @return True if it was anchored.
     */
    function isAnchored(bytes32 batchId) external view returns (bool);

    /**
     * @notice The number of batches anchored so far.
     * @return The count.
     */
    function batchCount() external view returns (uint256);

    /**
     * @notice Whether `proof` proves `leaf` against the root anchored for `batchId` (OpenZeppelin
     * `MerkleProof` with sorted-pair hashing).
     * @dev Reverts with `UnknownBatch` for a batch id that was never anchored, so a wrong batch id is
     * an error rather than a silent `false`. `leaf` is the leaf hash (for a StandardMerkleTree:
     * keccak256(bytes.concat(keccak256(abi.encode(values))))), not the values.
     * @param batchId The batch id.
     * @param leaf The leaf hash.
     * @param proof The sibling hashes from the leaf up to the root.
     * @return True if the proof is valid for the batch's root.
     */
    function verify(
        bytes32 batchId,
        bytes32 leaf,
        bytes32[] calldata proof
    ) external view returns (bool);
}
