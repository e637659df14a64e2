"""The one error tree of qnode.

Library errors are translated into these at the adapter that meets them (``raise ... from exc``);
the CLI prints ``str(error)`` on one line and exits non-zero, the API maps them to HTTP codes.
"""

from __future__ import annotations


class QnodeError(Exception):
    """Root of every error qnode raises on purpose."""

    exit_code = 1


class ConfigError(QnodeError):
    """A configuration file or value is missing, malformed or inconsistent."""

    exit_code = 2


class KeystoreError(QnodeError):
    """A keystore is missing, unreadable, or its password is wrong."""

    exit_code = 3


class ForbiddenKeyError(KeystoreError):
    """A key that must not be used on this chain (e.g. a public development key)."""


class ChainError(QnodeError):
    """Talking to the chain failed."""

    exit_code = 4


class ChainUnavailableError(ChainError):
    """The RPC endpoint cannot be reached or does not answer."""


class RpcError(ChainError):
    """The chain answered a JSON-RPC call with an error (``message``, ``code``, ``data`` kept)."""

    def __init__(self, method: str, message: str, code: int | None = None, data: object = None):
        super().__init__(f"{method} failed: {message}")
        self.method = method
        self.message = message
        self.code = code
        self.data = data


class WrongChainError(ChainError):
    """The RPC endpoint serves another chainId than the configured one."""


class TransactionError(ChainError):
    """A transaction could not be sent, was dropped, or failed."""


class TransactionTimeoutError(TransactionError):
    """No receipt arrived in time."""


class ContractRevertError(TransactionError):
    """A contract call or transaction reverted.

    Custom errors are decoded into subclasses (see ``node.chain.contract_errors``); ``args_by_name``
    holds their decoded arguments.
    """

    selector: str = ""
    signature: str = ""

    def __init__(self, message: str, args_by_name: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.args_by_name: dict[str, object] = dict(args_by_name or {})


class ArtifactError(QnodeError):
    """A contract artifact is missing, malformed, or stale against its source."""

    exit_code = 5


class LocalChainError(QnodeError):
    """The local Hardhat chain could not be started, reached or stopped."""

    exit_code = 6


class RecordError(QnodeError):
    """A record is malformed: unknown type or field, a value that cannot be stored (NaN, inf)."""

    exit_code = 7


class PrivacyError(QnodeError):
    """Private data would leave the store (a leaf, a transaction or a log)."""

    exit_code = 7


class StoreError(QnodeError):
    """The off-chain store or blob store failed, or a record or batch is not there."""

    exit_code = 8


class ProofError(QnodeError):
    """A proof or proof bundle does not verify, or is malformed."""

    exit_code = 9


class SourceError(QnodeError):
    """A shop-floor source (OPC UA server, MQTT broker) cannot be reached or is misconfigured."""

    exit_code = 10


class AttestationError(QnodeError):
    """An EIP-712 attestation is malformed, signed by the wrong key, expired or replayed."""

    exit_code = 11


class EpcisError(QnodeError):
    """An EPCIS document or event is malformed, or a record has no EPCIS form."""

    exit_code = 12


class IdentifierError(QnodeError):
    """A GS1 identifier or Digital Link URI is malformed (e.g. a wrong check digit)."""

    exit_code = 12


class SpcError(QnodeError):
    """Statistical process control cannot run on its input: non-finite values, empty, unequal or
    too few subgroups, inconsistent specification limits, or an unreadable data file."""

    exit_code = 2


class ControlError(QnodeError):
    """The closed loop could not act: a rule file, an event, an action."""

    exit_code = 13


class RuleError(ControlError):
    """A rule file is invalid: ``line`` (1-based, or None) says where, the message says why."""

    def __init__(self, message: str, line: int | None = None, path: str | None = None) -> None:
        where = f"{path or 'rules'}:{line}: " if line is not None else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")
        self.line = line
        self.path = path
        self.reason = message


class ActionError(ControlError):
    """An action failed. ``retryable`` actions are tried again later (with backoff, a bounded
    number of times); the others are recorded as failed at once."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ApiRequestError(QnodeError):
    """A request to the node's API cannot be served as asked (the API maps each to a status)."""

    exit_code = 14


class NotFoundError(ApiRequestError):
    """Nothing is known under the identifier asked for (a product, lot, serial or record)."""


class CredentialsError(ApiRequestError):
    """Credentials are missing where required, malformed, or match no configured token."""


class TierError(ApiRequestError):
    """Valid credentials of a tier that does not grant what was asked for."""


class NotAcceptableError(ApiRequestError):
    """None of the media types the client accepts can be produced."""


class RateLimitError(ApiRequestError):
    """A client sent more requests (or more misses) than its budget; ``retry_after_s`` says when
    the next one is allowed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PeerError(QnodeError):
    """Another member's node could not be reached, or what it served does not verify."""

    exit_code = 15
