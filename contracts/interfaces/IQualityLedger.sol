// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IQualityLedger
 * @notice Critical quality records (inspection results, parameter setpoints, lab results) stored in
 * full, each signed with EIP-712 by an active oracle key of an active consortium member and relayed
 * by any active member.
 * @dev EIP-712 domain: name "QualityLedger", version "1", the chain's id and this contract's address.
 * Every signed struct carries the oracle's nonce (`nonces(oracle)`, used in order, once) and a
 * deadline (unix seconds, inclusive). A record id is recorded at most once, whatever its kind.
 * Values are fixed-point: `value / 10**decimals` in `unit` (a UN/ECE Recommendation 20 code).
 * Timestamps in the records are unix microseconds, as in the members' off-chain stores. Records
 * carry no personal data: operator and inspector identities stay off-chain, at most committed to
 * inside the off-chain record whose `contentHash` is signed.
 */
interface IQualityLedger {
    /// @notice The outcome of an inspection or a lab test. Signed as its `uint8` value.
    enum Verdict {
        Pass,
        Fail,
        Conditional,
        Inconclusive
    }

    /// @notice What kind of record a record id holds; `None` marks an id never recorded.
    enum RecordKind {
        None,
        Inspection,
        Setpoint,
        LabResult
    }

    /**
     * @notice An inspection result, as signed. EIP-712 type:
     * `InspectionResult(bytes32 recordId,string subject,string characteristic,int256 value,
     * uint8 decimals,string unit,uint8 verdict,uint64 observedAtUs,bytes32 contentHash,
     * uint256 nonce,uint256 deadline)`.
     * @dev `subject` is the GS1 Digital Link URI of the inspected part or lot.
     */
    struct InspectionResult {
        bytes32 recordId;
        string subject;
        string characteristic;
        int256 value;
        uint8 decimals;
        string unit;
        uint8 verdict;
        uint64 observedAtUs;
        bytes32 contentHash;
        uint256 nonce;
        uint256 deadline;
    }

    /**
     * @notice A process parameter setpoint, as signed. EIP-712 type:
     * `Setpoint(bytes32 recordId,string equipment,string parameter,int256 value,uint8 decimals,
     * string unit,uint64 effectiveAtUs,bytes32 contentHash,uint256 nonce,uint256 deadline)`.
     * @dev `equipment` is the GS1 Digital Link URI (GIAI) of the equipment the setpoint applies to.
     */
    struct Setpoint {
        bytes32 recordId;
        string equipment;
        string parameter;
        int256 value;
        uint8 decimals;
        string unit;
        uint64 effectiveAtUs;
        bytes32 contentHash;
        uint256 nonce;
        uint256 deadline;
    }

    /**
     * @notice A lab result, as signed (by the oracle and by the lab co-signers). EIP-712 type:
     * `LabResult(bytes32 recordId,string sample,string method,int256 value,uint8 decimals,
     * string unit,uint8 verdict,uint64 observedAtUs,bytes32 contentHash,uint256 nonce,
     * uint256 deadline)`.
     * @dev `sample` is the GS1 Digital Link URI of the sample (or its lot); `method` names the test
     * method (e.g. a standard's number).
     */
    struct LabResult {
        bytes32 recordId;
        string sample;
        string method;
        int256 value;
        uint8 decimals;
        string unit;
        uint8 verdict;
        uint64 observedAtUs;
        bytes32 contentHash;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice Who recorded a record, and when. `member` is the member the signing oracle key
    /// belonged to at the time; `digest` is the EIP-712 digest that was signed.
    /// Fields are ordered to pack into four storage slots.
    struct Attribution {
        RecordKind kind;
        address member;
        uint64 recordedAt;
        address oracle;
        uint64 blockNumber;
        address relayer;
        bytes32 digest;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @notice The caller (the relayer) is not an active member of the consortium.
    /// @param account The caller.
    error NotActiveMember(address account);

    /// @notice The signature does not recover to an active oracle key of an active member (a key
    /// never registered, revoked, of a removed member, or a signature for another domain).
    /// @param signer The address the signature recovers to.
    error SignerNotActiveOracle(address signer);

    /// @notice The signed deadline has passed.
    /// @param deadline The deadline (unix seconds).
    error ExpiredSignature(uint256 deadline);

    /// @notice This record id was recorded before; a record id is recorded once.
    /// @param recordId The record id.
    error RecordAlreadyRecorded(bytes32 recordId);

    /// @notice A record id cannot be zero.
    error ZeroRecordId();

    /// @notice The verdict is not a `Verdict`.
    /// @param verdict The value given.
    error InvalidVerdict(uint8 verdict);

    /// @notice No record of the asked kind has this id.
    /// @param recordId The record id asked for.
    error UnknownRecord(bytes32 recordId);

    /// @notice A lab co-signature does not recover to an active oracle key of an active lab member.
    /// @param coSigner The address the co-signature recovers to.
    error NotLabOracle(address coSigner);

    /// @notice Two approvals of a lab result come from the same lab member (the same oracle key
    /// twice, two keys of one lab, or a co-signer of the signing oracle's own lab).
    /// @param member The lab member counted twice.
    error DuplicateLabCoSigner(address member);

    /// @notice Fewer distinct lab members approved the lab result than the quorum.
    /// @param approvals Distinct lab members that approved.
    /// @param quorum The lab quorum.
    error LabQuorumNotMet(uint256 approvals, uint256 quorum);

    /// @notice The lab quorum must be at least 1.
    error InvalidLabQuorum();

    /// @notice The consortium address given at deployment has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice An inspection result was recorded. `subject` is indexed as its keccak256 hash.
    event InspectionRecorded(
        bytes32 indexed recordId,
        address indexed member,
        string indexed subject,
        address oracle,
        uint8 verdict,
        bytes32 digest
    );

    /// @notice A setpoint was recorded. `equipment` is indexed as its keccak256 hash.
    event SetpointRecorded(
        bytes32 indexed recordId,
        address indexed member,
        string indexed equipment,
        address oracle,
        bytes32 digest
    );

    /// @notice A lab result was recorded with its co-signers. `sample` is indexed as its keccak256
    /// hash.
    event LabResultRecorded(
        bytes32 indexed recordId,
        address indexed member,
        string indexed sample,
        address oracle,
        uint8 verdict,
        bytes32 digest,
        address[] coSigners
    );

    // ---------------------------------------------------------------------------------------------
    // Recording
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice Record an inspection result signed by an oracle. The caller must be an active member;
     * it need not be the signer's member.
     * @param result The signed inspection result.
     * @param signature The oracle's 65-byte EIP-712 signature of `result`.
     */
    function recordInspection(InspectionResult calldata result, bytes calldata signature) external;

    /**
     * @notice Record a setpoint signed by an oracle. The caller must be an active member.
     * @param setpoint_ The signed setpoint.
     * @param signature The oracle's 65-byte EIP-712 signature of `setpoint_`.
     */
    function recordSetpoint(Setpoint calldata setpoint_, bytes calldata signature) external;

    /**
     * @notice Record a lab result signed by an oracle and co-signed by lab oracles. The caller must
     * be an active member.
     * @dev Approvals are counted per lab member: the signing oracle's member counts when it is a
     * lab; each co-signature must recover to an active oracle of an active lab member not counted
     * yet. At least `labQuorum()` distinct lab members must approve. Co-signatures sign the same
     * EIP-712 digest as the oracle; they use no nonce (the oracle's nonce and the record id already
     * make the digest single-use).
     * @param result The signed lab result.
     * @param signature The oracle's 65-byte EIP-712 signature of `result`.
     * @param coSignatures The lab oracles' signatures of the same digest.
     */
    function recordLabResult(
        LabResult calldata result,
        bytes calldata signature,
        bytes[] calldata coSignatures
    ) external;

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /**
     * @notice The consortium whose members relay and whose oracle keys sign (fixed at deployment).
     * @return The Consortium contract's address.
     */
    function consortium() external view returns (address);

    /**
     * @notice Distinct lab members that must approve a lab result (fixed at deployment, >= 1).
     * @return The quorum.
     */
    function labQuorum() external view returns (uint256);

    /**
     * @notice The next nonce an oracle key must sign.
     * @param oracle The oracle key.
     * @return The nonce.
     */
    function nonces(address oracle) external view returns (uint256);

    /**
     * @notice The number of records recorded so far (all kinds).
     * @return The count.
     */
    function recordCount() external view returns (uint256);

    /**
     * @notice Whether a record id has been recorded (any kind).
     * @param recordId The record id.
     * @return True if it was recorded.
     */
    function isRecorded(bytes32 recordId) external view returns (bool);

    /**
     * @notice Who recorded a record and when; reverts with `UnknownRecord` if never recorded.
     * @param recordId The record id.
     * @return The attribution.
     */
    function attribution(bytes32 recordId) external view returns (Attribution memory);

    /**
     * @notice A recorded inspection result; `UnknownRecord` if the id holds no inspection result.
     * @param recordId The record id.
     * @return The result, as signed.
     */
    function inspection(bytes32 recordId) external view returns (InspectionResult memory);

    /**
     * @notice A recorded setpoint; `UnknownRecord` if the id holds no setpoint.
     * @param recordId The record id.
     * @return The setpoint, as signed.
     */
    function setpoint(bytes32 recordId) external view returns (Setpoint memory);

    /**
     * @notice A recorded lab result and its co-signers; `UnknownRecord` if the id holds none.
     * @param recordId The record id.
     * @return result The lab result, as signed.
     * @return coSigners The oracle keys whose co-signatures were counted.
     */
    function labResult(
        bytes32 recordId
    ) external view returns (LabResult memory result, address[] memory coSigners);

    /**
     * @notice The EIP-712 digest of an inspection result under this contract's domain.
     * @param result The inspection result.
     * @return The digest an oracle signs.
     */
    function inspectionDigest(InspectionResult calldata result) external view returns (bytes32);

    /**
     * @notice The EIP-712 digest of a setpoint under this contract's domain.
     * @param setpoint_ The setpoint.
     * @return The digest an oracle signs.
     */
    function setpointDigest(Setpoint calldata setpoint_) external view returns (bytes32);

    /**
     * @notice The EIP-712 digest of a lab result under this contract's domain.
     * @param result The lab result.
     * @return The digest the oracle and the lab co-signers sign.
     */
    function labResultDigest(LabResult calldata result) external view returns (bytes32);
}
