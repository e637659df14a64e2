// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {IConsortium} from "./interfaces/IConsortium.sol";
import {IQualityLedger} from "./interfaces/IQualityLedger.sol";

/**
 * @title QualityLedger
 * @notice Inspection results, setpoints and lab results, stored in full, each EIP-712 signed by an
 * active oracle key of an active member and relayed by any active member.
 * @dev OpenZeppelin's EIP712 + ECDSA + Nonces recipe (as in ERC20Permit): the deadline is checked
 * first, then the signer is recovered, asked of the Consortium (`oracleOf`: a revoked key or a
 * removed member's key is refused at once), and its nonce consumed in order. A signature made for
 * another chain or contract recovers to an unrelated address, which is refused as not an oracle.
 * The lab quorum is fixed at deployment.
 */
contract QualityLedger is IQualityLedger, EIP712, Nonces {
    bytes32 private constant INSPECTION_TYPEHASH =
        keccak256(
            "InspectionResult(bytes32 recordId,string subject,string characteristic,int256 value,"
            "uint8 decimals,string unit,uint8 verdict,uint64 observedAtUs,bytes32 contentHash,"
            "uint256 nonce,uint256 deadline)"
        );
    bytes32 private constant SETPOINT_TYPEHASH =
        keccak256(
            "Setpoint(bytes32 recordId,string equipment,string parameter,int256 value,"
            "uint8 decimals,string unit,uint64 effectiveAtUs,bytes32 contentHash,uint256 nonce,"
            "uint256 deadline)"
        );
    bytes32 private constant LAB_RESULT_TYPEHASH =
        keccak256(
            "LabResult(bytes32 recordId,string sample,string method,int256 value,uint8 decimals,"
            "string unit,uint8 verdict,uint64 observedAtUs,bytes32 contentHash,uint256 nonce,"
            "uint256 deadline)"
        );

    IConsortium private immutable _consortium;
    uint256 private immutable _labQuorum;

    uint256 private _recordCount;
    /// @dev `kind != None` marks a recorded id; the record itself is in the mapping of its kind.
    mapping(bytes32 recordId => Attribution) private _attributions;
    mapping(bytes32 recordId => InspectionResult) private _inspections;
    mapping(bytes32 recordId => Setpoint) private _setpoints;
    mapping(bytes32 recordId => LabResult) private _labResults;
    mapping(bytes32 recordId => address[]) private _labCoSigners;

    modifier onlyActiveMember() {
        if (!_consortium.isActiveMember(msg.sender)) revert NotActiveMember(msg.sender);
        _;
    }

    /**
     * @notice Deploy the ledger for a consortium.
     * @param consortium_ The Consortium contract whose members relay and whose oracle keys sign.
     * @param labQuorum_ Distinct lab members that must approve a lab result (>= 1).
     */
    constructor(address consortium_, uint256 labQuorum_) EIP712("QualityLedger", "1") {
        if (consortium_.code.length == 0) revert InvalidConsortium(consortium_);
        if (labQuorum_ == 0) revert InvalidLabQuorum();
        _consortium = IConsortium(consortium_);
        _labQuorum = labQuorum_;
    }

    // ---------------------------------------------------------------------------------------------
    // Recording
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IQualityLedger
    function recordInspection(
        InspectionResult calldata result,
        bytes calldata signature
    ) external onlyActiveMember {
        _checkInput(result.recordId, result.verdict);
        bytes32 digest = _hashTypedDataV4(_hashInspection(result));
        (address oracle, address member_) = _authenticate(
            digest,
            signature,
            result.nonce,
            result.deadline
        );
        _claim(result.recordId, RecordKind.Inspection, oracle, member_, digest);
        _inspections[result.recordId] = result;
        emit InspectionRecorded(
            result.recordId,
            member_,
            result.subject,
            oracle,
            result.verdict,
            digest
        );
    }

    /// @inheritdoc IQualityLedger
    function recordSetpoint(
        Setpoint calldata setpoint_,
        bytes calldata signature
    ) external onlyActiveMember {
        _checkInput(setpoint_.recordId, 0);
        bytes32 digest = _hashTypedDataV4(_hashSetpoint(setpoint_));
        (address oracle, address member_) = _authenticate(
            digest,
            signature,
            setpoint_.nonce,
            setpoint_.deadline
        );
        _claim(setpoint_.recordId, RecordKind.Setpoint, oracle, member_, digest);
        _setpoints[setpoint_.recordId] = setpoint_;
        emit SetpointRecorded(setpoint_.recordId, member_, setpoint_.equipment, oracle, digest);
    }

    /// @inheritdoc IQualityLedger
    function recordLabResult(
        LabResult calldata result,
        bytes calldata signature,
        bytes[] calldata coSignatures
    ) external onlyActiveMember {
        _checkInput(result.recordId, result.verdict);
        bytes32 digest = _hashTypedDataV4(_hashLabResult(result));
        (address oracle, address member_) = _authenticate(
            digest,
            signature,
            result.nonce,
            result.deadline
        );
        address[] memory coSigners = _labApprovals(digest, member_, coSignatures);
        _claim(result.recordId, RecordKind.LabResult, oracle, member_, digest);
        _labResults[result.recordId] = result;
        _labCoSigners[result.recordId] = coSigners;
        emit LabResultRecorded(
            result.recordId,
            member_,
            result.sample,
            oracle,
            result.verdict,
            digest,
            coSigners
        );
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IQualityLedger
    function consortium() external view returns (address) {
        return address(_consortium);
    }

    /// @inheritdoc IQualityLedger
    function labQuorum() external view returns (uint256) {
        return _labQuorum;
    }

    /// @inheritdoc IQualityLedger
    function nonces(address oracle) public view override(IQualityLedger, Nonces) returns (uint256) {
        return super.nonces(oracle);
    }

    /// @inheritdoc IQualityLedger
    function recordCount() external view returns (uint256) {
        return _recordCount;
    }

    /// @inheritdoc IQualityLedger
    function isRecorded(bytes32 recordId) external view returns (bool) {
        return _attributions[recordId].kind != RecordKind.None;
    }

    /// @inheritdoc IQualityLedger
    function attribution(bytes32 recordId) external view returns (Attribution memory) {
        Attribution storage stored = _attributions[recordId];
        if (stored.kind == RecordKind.None) revert UnknownRecord(recordId);
        return stored;
    }

    /// @inheritdoc IQualityLedger
    function inspection(bytes32 recordId) external view returns (InspectionResult memory) {
        _requireKind(recordId, RecordKind.Inspection);
        return _inspections[recordId];
    }

    /// @inheritdoc IQualityLedger
    function setpoint(bytes32 recordId) external view returns (Setpoint memory) {
        _requireKind(recordId, RecordKind.Setpoint);
        return _setpoints[recordId];
    }

    /// @inheritdoc IQualityLedger
    function labResult(
        bytes32 recordId
    ) external view returns (LabResult memory result, address[] memory coSigners) {
        _requireKind(recordId, RecordKind.LabResult);
        return (_labResults[recordId], _labCoSigners[recordId]);
    }

    /// @inheritdoc IQualityLedger
    function inspectionDigest(InspectionResult calldata result) external view returns (bytes32) {
        return _hashTypedDataV4(_hashInspection(result));
    }

    /// @inheritdoc IQualityLedger
    function setpointDigest(Setpoint calldata setpoint_) external view returns (bytes32) {
        return _hashTypedDataV4(_hashSetpoint(setpoint_));
    }

    /// @inheritdoc IQualityLedger
    function labResultDigest(LabResult calldata result) external view returns (bytes32) {
        return _hashTypedDataV4(_hashLabResult(result));
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _checkInput(bytes32 recordId, uint8 verdict) private pure {
        if (recordId == bytes32(0)) revert ZeroRecordId();
        if (verdict > uint8(type(Verdict).max)) revert InvalidVerdict(verdict);
    }

    /// @dev Deadline, signer (an active oracle of an active member), then the signer's nonce.
    function _authenticate(
        bytes32 digest,
        bytes calldata signature,
        uint256 nonce,
        uint256 deadline
    ) private returns (address oracle, address member_) {
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        oracle = ECDSA.recover(digest, signature);
        bool active;
        (active, member_) = _consortium.oracleOf(oracle);
        if (!active) revert SignerNotActiveOracle(oracle);
        _useCheckedNonce(oracle, nonce);
    }

    /// @dev Distinct lab members approving `digest`: the oracle's own member if it is a lab, then
    /// one per co-signature. Returns the co-signing oracle keys.
    function _labApprovals(
        bytes32 digest,
        address oracleMember,
        bytes[] calldata coSignatures
    ) private view returns (address[] memory coSigners) {
        uint256 n = coSignatures.length;
        address[] memory counted = new address[](n + 1);
        uint256 approvals = 0;
        if (_isLab(oracleMember)) counted[approvals++] = oracleMember;
        coSigners = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            address coSigner = ECDSA.recover(digest, coSignatures[i]);
            (bool active, address labMember) = _consortium.oracleOf(coSigner);
            if (!active || !_isLab(labMember)) revert NotLabOracle(coSigner);
            for (uint256 j = 0; j < approvals; ++j) {
                if (counted[j] == labMember) revert DuplicateLabCoSigner(labMember);
            }
            counted[approvals++] = labMember;
            coSigners[i] = coSigner;
        }
        if (approvals < _labQuorum) revert LabQuorumNotMet(approvals, _labQuorum);
    }

    function _isLab(address member_) private view returns (bool) {
        return _consortium.member(member_).role == IConsortium.Role.Lab;
    }

    function _claim(
        bytes32 recordId,
        RecordKind kind,
        address oracle,
        address member_,
        bytes32 digest
    ) private {
        Attribution storage stored = _attributions[recordId];
        if (stored.kind != RecordKind.None) revert RecordAlreadyRecorded(recordId);
        stored.kind = kind;
        stored.member = member_;
        stored.recordedAt = uint64(block.timestamp);
        stored.oracle = oracle;
        stored.blockNumber = uint64(block.number);
        stored.relayer = msg.sender;
        stored.digest = digest;
        unchecked {
            ++_recordCount; // cannot overflow: one increment per transaction
        }
    }

    function _requireKind(bytes32 recordId, RecordKind kind) private view {
        if (_attributions[recordId].kind != kind) revert UnknownRecord(recordId);
    }

    // Struct hashes: abi.encode of the fields in two halves (every part is one 32-byte word, so the
    // concatenation is the full encoding) to stay clear of the legacy code generator's stack limit.

    function _hashInspection(InspectionResult calldata r) private pure returns (bytes32) {
        return
            keccak256(
                bytes.concat(
                    abi.encode(
                        INSPECTION_TYPEHASH,
                        r.recordId,
                        keccak256(bytes(r.subject)),
                        keccak256(bytes(r.characteristic)),
                        r.value,
                        r.decimals
                    ),
                    abi.encode(
                        keccak256(bytes(r.unit)),
                        r.verdict,
                        r.observedAtUs,
                        r.contentHash,
                        r.nonce,
                        r.deadline
                    )
                )
            );
    }

    function _hashSetpoint(Setpoint calldata s) private pure returns (bytes32) {
        return
            keccak256(
                bytes.concat(
                    abi.encode(
                        SETPOINT_TYPEHASH,
                        s.recordId,
                        keccak256(bytes(s.equipment)),
                        keccak256(bytes(s.parameter)),
                        s.value,
                        s.decimals
                    ),
                    abi.encode(
                        keccak256(bytes(s.unit)),
                        s.effectiveAtUs,
                        s.contentHash,
                        s.nonce,
                        s.deadline
                    )
                )
            );
    }

    function _hashLabResult(LabResult calldata r) private pure returns (bytes32) {
        return
            keccak256(
                bytes.concat(
                    abi.encode(
                        LAB_RESULT_TYPEHASH,
                        r.recordId,
                        keccak256(bytes(r.sample)),
                        keccak256(bytes(r.method)),
                        r.value,
                        r.decimals
                    ),
                    abi.encode(
                        keccak256(bytes(r.unit)),
                        r.verdict,
                        r.observedAtUs,
                        r.contentHash,
                        r.nonce,
                        r.deadline
                    )
                )
            );
    }
}
