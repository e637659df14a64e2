"""Revert data to named exceptions.

:func:`decode_revert` turns the bytes a reverted call returns into a :class:`ContractRevertError`:
a class of :mod:`node.chain.contract_errors` for the contracts' custom errors (arguments decoded),
:class:`RevertedWithReason` for ``Error(string)``, :class:`PanicError` for ``Panic(uint256)``.

:func:`revert_data_from_exception` digs the revert data out of what web3 v8 raises on ``eth_call``,
``eth_estimateGas`` or a send, for both the in-process eth-tester backend and JSON-RPC nodes
(Hardhat, Besu, Geth); :func:`contract_error_from_exception` combines the two.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from node.chain.contract_errors import ERRORS_BY_SELECTOR, CustomContractError
from node.errors import ContractRevertError

__all__ = [
    "ERROR_STRING_SELECTOR",
    "PANIC_CODES",
    "PANIC_SELECTOR",
    "PanicError",
    "RevertedWithReason",
    "contract_error_from_exception",
    "decode_revert",
    "revert_data_from_exception",
]

ERROR_STRING_SELECTOR = "0x08c379a0"
"""Selector of ``Error(string)``: ``require(cond, "reason")`` and ``revert("reason")``."""

PANIC_SELECTOR = "0x4e487b71"
"""Selector of ``Panic(uint256)``: failed asserts, arithmetic overflow, bad array index..."""

PANIC_CODES: dict[int, str] = {
    0x00: "generic compiler-inserted panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "value out of range for the enum type",
    0x22: "incorrectly encoded storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory (allocation too large)",
    0x51: "call to a zero-initialized internal function variable",
}
"""Meaning of the Solidity panic codes."""


class RevertedWithReason(ContractRevertError):
    """The contract reverted with ``Error(string)``; ``reason`` is the string."""

    selector = ERROR_STRING_SELECTOR
    signature = "Error(string)"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, {"reason": reason})
        self.reason = reason


class PanicError(ContractRevertError):
    """The contract panicked (``Panic(uint256)``); ``code`` and its ``meaning``."""

    selector = PANIC_SELECTOR
    signature = "Panic(uint256)"

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, {"code": code})
        self.code = code
        self.meaning = PANIC_CODES.get(code, "unknown panic code")


def decode_revert(data: bytes | str | None, context: str = "") -> ContractRevertError:
    """The exception for revert ``data`` (bytes, or hex with or without ``0x``).

    ``context`` names what reverted, e.g. ``"Consortium.approve"``; messages read like
    ``"Consortium.approve reverted: ProposalExpired(proposalId=3, expiresAt=1700000000)"``.
    Never raises: data that cannot be decoded gives a plain :class:`ContractRevertError` saying so.
    """
    what = context or "contract call"
    if data is None:
        return ContractRevertError(f"{what} reverted without a reason")
    if isinstance(data, str):
        raw = _hex_to_bytes(data)
        if raw is None:
            return ContractRevertError(f"{what} reverted with undecodable data {data[:80]!r}")
    else:
        raw = bytes(data)
    if not raw:
        return ContractRevertError(f"{what} reverted without a reason")
    if len(raw) < 4:
        return ContractRevertError(f"{what} reverted with malformed data 0x{raw.hex()}")
    selector = "0x" + raw[:4].hex()
    payload = raw[4:]

    if selector == ERROR_STRING_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], payload)
        except (DecodingError, UnicodeDecodeError, ValueError):
            return ContractRevertError(
                f"{what} reverted with malformed Error(string) 0x{raw.hex()}"
            )
        return RevertedWithReason(f"{what} reverted: {reason}", str(reason))

    if selector == PANIC_SELECTOR:
        try:
            (code,) = abi_decode(["uint256"], payload)
        except (DecodingError, ValueError):
            return ContractRevertError(
                f"{what} reverted with malformed Panic(uint256) 0x{raw.hex()}"
            )
        meaning = PANIC_CODES.get(int(code), "unknown panic code")
        return PanicError(f"{what} reverted: Panic(0x{int(code):02x}): {meaning}", int(code))

    cls = ERRORS_BY_SELECTOR.get(selector)
    if cls is None:
        error = ContractRevertError(
            f"{what} reverted with unknown custom error {selector} (data 0x{raw.hex()})"
        )
        error.selector = selector
        return error

    name = cls.signature.split("(", 1)[0] or cls.__name__
    arg_names: Sequence[str] = ()
    arg_types: Sequence[str] = ()
    if issubclass(cls, CustomContractError):
        arg_names, arg_types = cls.arg_names, cls.arg_types
    try:
        values = abi_decode(list(arg_types), payload) if arg_types else ()
    except (DecodingError, UnicodeDecodeError, ValueError):
        return cls(f"{what} reverted: {name}(<undecodable arguments 0x{payload.hex()}>)")
    args = {
        arg: _normalize(arg_type, value)
        for arg, arg_type, value in zip(arg_names, arg_types, values, strict=True)
    }
    shown = ", ".join(f"{arg}={_format(value)}" for arg, value in args.items())
    return cls(f"{what} reverted: {name}({shown})", args)


def revert_data_from_exception(exc: BaseException) -> bytes | None:
    """The revert data carried by an exception web3 raised, or None if it carries none.

    Handles, anywhere in the exception's cause/context chain:

    - ``web3.exceptions.ContractLogicError`` and subclasses (``.data``: hex string, possibly with a
      ``"Reverted "`` prefix, or a dict such as ``{"message": ..., "data": "0x..."}``);
    - ``web3.exceptions.Web3RPCError`` (``.rpc_response["error"]``: ``{"code", "message", "data"}``
      with ``data`` a hex string or a dict holding one under ``"data"``/``"result"``/``"return"``);
    - eth-tester's ``TransactionFailed`` (the raw bytes, a py-evm ``Revert``, or their repr in the
      message ``"execution reverted: b'...'"``) and py-evm's ``Revert``;
    - any other exception with a ``data`` attribute shaped like a JSON-RPC error's ``data``
      (such as ``node.errors.RpcError``).

    ``b""`` means the call reverted with empty data. eth-tester drops the raw data of an
    ``Error(string)`` revert on ``eth_call`` (it keeps only the decoded text): use
    :func:`contract_error_from_exception` to get a :class:`RevertedWithReason` in that case.
    """
    for link in _chain(exc):
        data = _data_of(link)
        if data is not None:
            return data
    return None


def contract_error_from_exception(
    exc: BaseException, context: str = ""
) -> ContractRevertError | None:
    """The decoded :class:`ContractRevertError` for a revert web3 raised, or None if ``exc`` is not
    recognizably a contract revert. Meant for adapters: ``raise error from exc``."""
    data = revert_data_from_exception(exc)
    if data is not None:
        return decode_revert(data, context)
    for link in _chain(exc):
        reason = _textual_reason(link)
        if reason is not None:
            what = context or "contract call"
            if not reason:
                return ContractRevertError(f"{what} reverted without a reason")
            return RevertedWithReason(f"{what} reverted: {reason}", reason)
    return None


# --------------------------------------------------------------------------------------------------


_HEX_RE = re.compile(r"^(?:0x)?((?:[0-9a-fA-F]{2})*)$")
_BYTES_REPR_RE = re.compile(r"""^b(['"]).*\1$""", re.DOTALL)
_REVERTED_PREFIX = "execution reverted: "
# Messages of py-evm VM errors other than REVERT: eth-tester's eth_call reports them as bare text,
# just like the decoded reason of an Error(string) revert.
_VM_ERROR_PREFIXES = (
    "Out of gas",
    "Invalid opcode",
    "Invalid Jump Destination",
    "Jump resulted in invalid instruction",
    "Stack limit reached",
    "Insufficient stack",
    "Stack depth limit reached",
    "Cannot modify state while inside of a STATICCALL",
    "Contract code",
    "Net-metered SSTORE",
    "Return data length is not sufficient",
    "Insufficient funds",
)


def _hex_to_bytes(text: str) -> bytes | None:
    text = text.strip()
    if text.startswith("Reverted "):  # old eth-tester shape, still parsed by web3
        text = text[len("Reverted ") :]
    match = _HEX_RE.match(text)
    return bytes.fromhex(match.group(1)) if match else None


def _chain(exc: BaseException) -> list[BaseException]:
    links: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def _class_names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def _data_of(exc: BaseException) -> bytes | None:
    names = _class_names(exc)
    if "web3.exceptions.ContractLogicError" in names:
        return _data_from_payload(getattr(exc, "data", None))
    if "web3.exceptions.Web3RPCError" in names:
        response = getattr(exc, "rpc_response", None)
        if isinstance(response, Mapping):
            error = response.get("error")
            if isinstance(error, Mapping):
                return _data_from_payload(error.get("data"))
        return None
    if "eth.exceptions.Revert" in names:
        return _bytes_arg(exc)
    if "eth_tester.exceptions.TransactionFailed" in names:
        if not exc.args:
            return None
        first = exc.args[0]
        if isinstance(first, BaseException):
            return _data_of(first)
        if isinstance(first, bytes | bytearray):
            return bytes(first)
        if isinstance(first, str):
            return _bytes_from_repr(first)
        return None
    # Adapters' own RPC errors (e.g. node.errors.RpcError) keep the JSON-RPC error's ``data``.
    payload = getattr(exc, "data", None)
    if isinstance(payload, str | bytes | bytearray | Mapping):
        return _data_from_payload(payload)
    return None


def _bytes_arg(exc: BaseException) -> bytes | None:
    if exc.args and isinstance(exc.args[0], bytes | bytearray):
        return bytes(exc.args[0])
    return b"" if not exc.args else None


def _bytes_from_repr(text: str) -> bytes | None:
    if text.startswith(_REVERTED_PREFIX):
        text = text[len(_REVERTED_PREFIX) :]
    if not _BYTES_REPR_RE.match(text):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, bytes) else None


def _data_from_payload(payload: object, depth: int = 0) -> bytes | None:
    if depth > 4 or payload is None:
        return None
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        if payload.startswith("{"):  # some nodes send the data object JSON-encoded
            try:
                return _data_from_payload(json.loads(payload), depth + 1)
            except ValueError:
                return None
        return _hex_to_bytes(payload)
    if isinstance(payload, Mapping):
        for key in ("data", "result", "return", "returnData"):
            if key in payload:
                found = _data_from_payload(payload[key], depth + 1)
                if found is not None:
                    return found
        # Ganache-style {"0x<txhash>": {"error": "revert", "return": "0x..."}}
        for value in payload.values():
            if isinstance(value, Mapping):
                found = _data_from_payload(value, depth + 1)
                if found is not None:
                    return found
    return None


def _textual_reason(exc: BaseException) -> str | None:
    """The decoded reason eth-tester keeps for an ``Error(string)`` revert on ``eth_call``."""
    if "eth_tester.exceptions.TransactionFailed" not in _class_names(exc):
        return None
    if exc.__cause__ is not None or exc.__context__ is not None:
        return None  # only the innermost TransactionFailed carries the backend's own text
    if not exc.args or not isinstance(exc.args[0], str):
        return None
    text = exc.args[0]
    if text.startswith(_REVERTED_PREFIX):
        text = text[len(_REVERTED_PREFIX) :]
    if text.startswith(_VM_ERROR_PREFIXES):
        return None
    return text


def _normalize(arg_type: str, value: object) -> object:
    if arg_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if arg_type.endswith("]") and isinstance(value, list | tuple):
        inner = arg_type[: arg_type.rindex("[")]
        return tuple(_normalize(inner, item) for item in value)
    if arg_type.startswith("(") and isinstance(value, tuple):
        return tuple(
            _normalize(component, item)
            for component, item in zip(_split_tuple(arg_type), value, strict=False)
        )
    return value


def _split_tuple(arg_type: str) -> list[str]:
    inner = arg_type[1 : arg_type.rindex(")")]
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    if inner:
        parts.append(inner[start:])
    return parts


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and not re.match(r"^0x[0-9a-fA-F]{40}$", value):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    return str(value)
