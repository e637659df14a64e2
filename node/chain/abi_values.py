"""Python values to and from ABI values, for the typed contract bindings.

Arguments are checked here, before anything is encoded or sent, so that a caller's bug is a
:class:`ValueError` naming the argument rather than an encoder error from deep inside web3.
Returned values are normalised: addresses checksummed, ``bytes32`` as ``"0x"`` + 64 lowercase hex
digits (as :mod:`node.chain.anchor_registry` returns them).
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

from node.chain.anchor_registry import Bytes32, to_bytes32, to_bytes32_hex

__all__ = [
    "Bytes32",
    "address_arg",
    "address_or_none",
    "address_out",
    "bytes32_out",
    "int_arg",
    "to_bytes32",
    "to_bytes32_hex",
    "uint_arg",
]


def int_arg(value: int, name: str, bits: int = 256) -> int:
    """``value`` if it is an integer that fits an ``int<bits>``."""
    _require_int(value, name)
    bound = 1 << (bits - 1)
    if not -bound <= value < bound:
        raise ValueError(f"{name} {value} does not fit an int{bits}")
    return value


def uint_arg(value: int, name: str, bits: int = 256) -> int:
    """``value`` if it is an integer that fits a ``uint<bits>``."""
    _require_int(value, name)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} {value} does not fit a uint{bits}")
    return value


def address_arg(value: str, name: str) -> str:
    """``value`` checksummed, if it is a 20-byte hex address."""
    if not isinstance(value, str) or not Web3.is_address(value):
        raise ValueError(f"{name} must be a 20-byte hex address, got {str(value)[:80]!r}")
    return Web3.to_checksum_address(value)


def bytes32_out(value: Any) -> str:
    """A ``bytes32`` the chain returned, as ``"0x"`` + 64 lowercase hex digits."""
    return "0x" + bytes(value).hex()


def address_out(value: Any) -> str:
    """An address the chain returned, checksummed."""
    return Web3.to_checksum_address(value)


def address_or_none(value: Any) -> str | None:
    """An address the chain returned, checksummed; ``None`` for the zero address."""
    address = Web3.to_checksum_address(value)
    return None if int(address, 16) == 0 else address


def _require_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
