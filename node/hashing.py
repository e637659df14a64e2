"""keccak256, as fast as this machine allows.

safe-pysha3 (a C extension, a dependency in pyproject.toml) hashes a short input in ≈ 0.7 µs;
eth_hash's pycryptodome backend takes ≈ 5 µs. Hashing every record and leaf makes that matter.
"""

from __future__ import annotations

from collections.abc import Callable

keccak256: Callable[[bytes], bytes]
keccak_hex: Callable[[bytes], str]
"""keccak256 as "0x"-prefixed lower-case hex."""

try:
    import sha3 as _sha3
except ImportError:  # pragma: no cover - depends on the installed packages
    from eth_hash.auto import keccak as _eth_hash_keccak

    def keccak256(data: bytes) -> bytes:
        return bytes(_eth_hash_keccak(data))

    def keccak_hex(data: bytes) -> str:
        return "0x" + keccak256(data).hex()

else:
    _keccak = _sha3.keccak_256

    def keccak256(data: bytes) -> bytes:
        digest: bytes = _keccak(data).digest()
        return digest

    def keccak_hex(data: bytes) -> str:
        return "0x" + str(_keccak(data).hexdigest())
