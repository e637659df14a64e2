"""OpenZeppelin ``StandardMerkleTree`` (npm ``@openzeppelin/merkle-tree`` 1.x) in Python.

Trees, proofs and dumps are byte-for-byte those of the npm library, so a proof made here verifies
with ``StandardMerkleTree.verify`` in JavaScript and on-chain with OpenZeppelin's
``MerkleProof.verify``, and a ``standard-v1`` dump goes both ways between the two libraries:

- leaf = ``keccak256(keccak256(abi.encode(leafEncoding, value)))``;
- node = ``keccak256(min(a, b) ++ max(a, b))`` (sorted pair, so proofs carry no left/right flags);
- leaves are sorted by hash (stable, unless ``sort_leaves=False``) and stored at the end of a
  complete binary tree kept as an array: the children of node ``i`` are ``2i+1`` and ``2i+2``, the
  root is node 0, and leaf ``k`` of ``n`` (in sorted order) is node ``2n-2-k``;
- every value keeps the index it was given (``values[i]``) and records its ``treeIndex``.

Values are normalised on the way in, so one leaf has one Python form whatever form it came in
(accepted -> kept as -> dumped as):

- ``uintN``/``intN``: ``int``, a decimal or ``0x``-hex ``str``, an integral JSON number (the
  forms the npm library's ``BigInt`` takes) -> ``int`` -> decimal ``str`` (JSON numbers lose
  precision past 2**53, and JS cannot ``JSON.stringify`` a ``bigint``);
- ``address``: ``0x`` + 40 hex digits in any case (the checksum is not enforced, as in the npm
  library) -> kept as given; or 20 ``bytes`` -> its EIP-55 ``str``;
- ``bool``: ``bool``, ``"true"``/``"false"`` -> ``bool`` -> JSON ``true``/``false``;
- ``bytesN`` (exactly N bytes) and ``bytes``: ``bytes``-like or ``0x``-hex ``str`` -> ``bytes`` ->
  ``0x`` lower-case hex;
- ``string``: ``str``; arrays and tuples: ``list``/``tuple`` of the above -> ``tuple`` -> list.

So a dump written by the npm library from values in those canonical forms (what ``ethers`` and
``BigInt.toString()`` produce) loads and dumps back unchanged; other forms load, and are dumped in
canonical form. Where the npm library would pad a short ``bytesN`` or ``address``, this module
rejects it.

Speed: a leaf encoding made only of static elementary types (``bytesN``, ``uintN``, ``intN``,
``address``, ``bool``) is packed word by word without ``eth_abi``; other encodings go through
``eth_abi.encode``. Keccak comes from ``safe-pysha3`` when installed (about 7x faster than
pycryptodome, which ``eth_hash`` would pick), else from pycryptodome; see ``KECCAK_BACKEND``.
Bulk builds, loads and dumps pause the cyclic garbage collector (see ``_gc_paused``).
"""

from __future__ import annotations

import gc
import math
import re
import reprlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NoReturn, Protocol

from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import ABITypeError, EncodingError, ParseError
from eth_abi.grammar import ABIType, BasicType, TupleType, normalize, parse
from eth_utils.address import to_checksum_address

from node.errors import QnodeError

__all__ = [
    "DUMP_FORMAT",
    "KECCAK_BACKEND",
    "MerkleError",
    "MultiProof",
    "StandardMerkleTree",
    "Value",
    "hash_pair",
    "process_multiproof",
    "process_proof",
    "standard_leaf_hash",
]

DUMP_FORMAT: Final = "standard-v1"

Value = tuple[Any, ...]
"""A normalised leaf value: one element per type of the leaf encoding."""


class MerkleError(QnodeError):
    """Invalid input to a Merkle tree: a value or encoding, an index, a proof, a dump, a tree."""


# --------------------------------------------------------------------------------------- keccak


class _HashObject(Protocol):
    def digest(self) -> bytes: ...


def _load_keccak() -> tuple[Callable[[bytes], _HashObject], str]:
    try:
        from _pysha3 import keccak_256  # safe-pysha3: a C extension, no per-call FFI overhead
    except ImportError:  # pragma: no cover - depends on the environment
        from Crypto.Hash import keccak as pycryptodome_keccak

        def pycryptodome_keccak_256(data: bytes) -> _HashObject:
            return pycryptodome_keccak.new(data=data, digest_bits=256)

        return pycryptodome_keccak_256, "pycryptodome"
    return keccak_256, "safe-pysha3"


_keccak_256, KECCAK_BACKEND = _load_keccak()


# ---------------------------------------------------------------------------------- node bytes

_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_DEC_RE: Final = re.compile(r"-?[0-9]+")
_HEXNUM_RE: Final = re.compile(r"0x[0-9a-fA-F]+")
_UNSUPPORTED_TYPE_RE: Final = re.compile(r"\b(?:function|byte|u?fixed[0-9x]*)\b")

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlist = 6
_short.maxtuple = 6


def _node(node: object, what: str = "node") -> bytes:
    """A 32-byte tree node from ``bytes`` or a ``0x`` hex string."""
    if isinstance(node, str):
        if len(node) == 66 and (data := _from_hex(node)) is not None:
            return data
    elif isinstance(node, bytes | bytearray | memoryview) and len(node) == 32:
        return bytes(node)
    raise MerkleError(f"{what} must be 32 bytes (0x + 64 hex digits), got {_short.repr(node)}")


def _hex(node: bytes) -> str:
    return "0x" + node.hex()


def hash_pair(a: bytes | str, b: bytes | str) -> bytes:
    """OpenZeppelin's commutative node hash: ``keccak256`` of the two nodes, smaller first."""
    x, y = _node(a), _node(b)
    return _keccak_256(x + y if x <= y else y + x).digest()


def process_proof(leaf: bytes | str, proof: Sequence[bytes | str]) -> bytes:
    """The root reached from a leaf hash through ``proof`` (``MerkleProof.processProof``)."""
    node = _node(leaf, "leaf hash")
    k = _keccak_256
    for i, item in enumerate(_proof_items(proof)):
        sibling = _node(item, f"proof element {i}")
        node = k(node + sibling if node <= sibling else sibling + node).digest()
    return node


def _proof_items(proof: object) -> Sequence[object]:
    if isinstance(proof, str | bytes | bytearray | Mapping) or not isinstance(proof, Sequence):
        raise MerkleError(f"a proof must be a list of 32-byte nodes, got {_short.repr(proof)}")
    return proof


# ------------------------------------------------------------------------------ value codecs


class _NotCanonical(Exception):
    """Internal: the fast path met a value it must leave to the normaliser."""


_NOT_CANONICAL: Final = _NotCanonical()
_ZERO_WORD: Final = bytes(32)
_ONE_WORD: Final = bytes(31) + b"\x01"
_ADDRESS_PAD: Final = bytes(12)

Normalizer = Callable[[Any], Any]
Word = Callable[[Any], bytes]


def _bad(type_str: str, value: object, expected: str) -> NoReturn:
    raise MerkleError(f"{type_str}: expected {expected}, got {_short.repr(value)}")


def _int_bounds(base: str, bits: int) -> tuple[int, int]:
    if base == "uint":
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _int_normalizer(type_str: str, base: str, bits: int) -> Normalizer:
    low, high = _int_bounds(base, bits)
    expected = "an integer (int, or a decimal or 0x-hex string)"

    def normalize_int(value: Any) -> int:
        cls = value.__class__
        if cls is int:
            number: int = value
        elif cls is str and (_DEC_RE.fullmatch(value) or _HEXNUM_RE.fullmatch(value)):
            number = int(value, 16 if value.startswith("0x") else 10)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = int(value)
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)  # a JSON number from a JS dump, e.g. 1e+21
        else:
            _bad(type_str, value, expected)
        if not low <= number <= high:
            raise MerkleError(f"{type_str}: {number} is out of range [{low}, {high}]")
        return number

    return normalize_int


def _address_normalizer(type_str: str) -> Normalizer:
    def normalize_address(value: Any) -> str:
        if value.__class__ is str and _ADDRESS_RE.fullmatch(value):
            return value
        if isinstance(value, bytes | bytearray | memoryview) and len(value) == 20:
            return str(to_checksum_address(bytes(value)))
        _bad(type_str, value, "an address (0x + 40 hex digits, or 20 bytes)")

    return normalize_address


def _bool_normalizer(type_str: str) -> Normalizer:
    def normalize_bool(value: Any) -> bool:
        if value is True or value == "true":
            return True
        if value is False or value == "false":
            return False
        _bad(type_str, value, 'a bool (or "true" / "false")')

    return normalize_bool


def _from_hex(value: str) -> bytes | None:
    """``0x``-prefixed, even-length hex (no whitespace, which ``bytes.fromhex`` would skip)."""
    if not value.startswith("0x"):
        return None
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        return None
    return data if 2 * len(data) + 2 == len(value) else None


def _bytes_normalizer(type_str: str, size: int | None) -> Normalizer:
    expected = "bytes or a 0x-hex string" if size is None else f"exactly {size} bytes (or 0x-hex)"

    def normalize_bytes(value: Any) -> bytes:
        cls = value.__class__
        data: bytes | None
        if cls is str:
            data = _from_hex(value)
        elif cls is bytes:
            data = value
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
        else:
            data = None
        if data is None or (size is not None and len(data) != size):
            _bad(type_str, value, expected)
        return data

    return normalize_bytes


def _string_normalizer(type_str: str) -> Normalizer:
    def normalize_string(value: Any) -> str:
        if isinstance(value, str):
            return str(value)
        _bad(type_str, value, "a string")

    return normalize_string


def _sequence(type_str: str, value: Any, length: int | None) -> Sequence[Any]:
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping) or not isinstance(
        value, Sequence
    ):
        _bad(type_str, value, "a list or tuple")
    if length is not None and len(value) != length:
        _bad(type_str, value, f"{length} elements")
    return value


def _type_str(abi_type: ABIType) -> str:
    return str(abi_type.to_type_str())  # type: ignore[no-untyped-call]


def _normalizer(abi_type: ABIType) -> Normalizer:
    type_str = _type_str(abi_type)
    if abi_type.is_array:
        item = _normalizer(abi_type.item_type)
        dimension = abi_type.arrlist[-1]
        length = dimension[0] if dimension else None

        def normalize_array(value: Any) -> tuple[Any, ...]:
            items = _sequence(type_str, value, length)
            normalized = []
            for i, element in enumerate(items):
                try:
                    normalized.append(item(element))
                except MerkleError as exc:
                    raise MerkleError(f"{type_str}[{i}]: {exc}") from None
            return tuple(normalized)

        return normalize_array
    if isinstance(abi_type, TupleType):
        components = [_normalizer(component) for component in abi_type.components]

        def normalize_tuple(value: Any) -> tuple[Any, ...]:
            items = _sequence(type_str, value, len(components))
            normalized = []
            for i, (component, element) in enumerate(zip(components, items, strict=True)):
                try:
                    normalized.append(component(element))
                except MerkleError as exc:
                    raise MerkleError(f"{type_str} component {i}: {exc}") from None
            return tuple(normalized)

        return normalize_tuple
    assert isinstance(abi_type, BasicType)
    base, sub = abi_type.base, abi_type.sub
    if base in ("uint", "int"):
        assert isinstance(sub, int)
        return _int_normalizer(type_str, base, sub)
    if base == "address":
        return _address_normalizer(type_str)
    if base == "bool":
        return _bool_normalizer(type_str)
    if base == "bytes":
        assert sub is None or isinstance(sub, int)
        return _bytes_normalizer(type_str, sub)
    if base == "string":
        return _string_normalizer(type_str)
    raise MerkleError(f"unsupported type {type_str!r} in a leaf encoding")


def _renderer(abi_type: ABIType) -> Callable[[Any], Any]:
    """Render a normalised value as the npm library's JSON dump holds it."""
    if abi_type.is_array:
        item = _renderer(abi_type.item_type)

        def render_array(value: tuple[Any, ...]) -> list[Any]:
            return [item(element) for element in value]

        return render_array
    if isinstance(abi_type, TupleType):
        components = [_renderer(component) for component in abi_type.components]

        def render_tuple(value: tuple[Any, ...]) -> list[Any]:
            return [render(element) for render, element in zip(components, value, strict=True)]

        return render_tuple
    assert isinstance(abi_type, BasicType)
    if abi_type.base in ("uint", "int"):
        return str
    if abi_type.base == "bytes":
        return _hex
    return _identity


def _identity(value: Any) -> Any:
    return value


def _word(abi_type: BasicType) -> Word:
    """Pack a normalised static elementary value into its 32-byte ABI word, fast.

    Raises ``_NotCanonical`` for anything but the exact normalised form, so a raw value that merely
    looks right (a hex string for ``bytes32``, ``1`` for ``bool``...) goes to the normaliser.
    """
    base, sub = abi_type.base, abi_type.sub
    if base == "bytes":
        assert isinstance(sub, int)
        size = sub
        pad = bytes(32 - size)

        if size == 32:

            def word_bytes32(value: Any) -> bytes:
                if value.__class__ is bytes and len(value) == 32:
                    return value
                raise _NOT_CANONICAL

            return word_bytes32

        def word_bytes_n(value: Any) -> bytes:
            if value.__class__ is bytes and len(value) == size:
                return value + pad
            raise _NOT_CANONICAL

        return word_bytes_n
    if base in ("uint", "int"):
        assert isinstance(sub, int)
        low, high = _int_bounds(base, sub)
        signed = base == "int"

        def word_int(value: Any) -> bytes:
            if value.__class__ is int and low <= value <= high:
                return value.to_bytes(32, "big", signed=signed)
            raise _NOT_CANONICAL

        return word_int
    if base == "address":

        def word_address(value: Any) -> bytes:
            if value.__class__ is str and len(value) == 42 and value.startswith("0x"):
                try:
                    raw = bytes.fromhex(value[2:])
                except ValueError:
                    raise _NOT_CANONICAL from None
                if len(raw) == 20:
                    return _ADDRESS_PAD + raw
            raise _NOT_CANONICAL

        return word_address
    if base == "bool":

        def word_bool(value: Any) -> bytes:
            if value is True:
                return _ONE_WORD
            if value is False:
                return _ZERO_WORD
            raise _NOT_CANONICAL

        return word_bool
    raise AssertionError(f"no word packer for {_type_str(abi_type)}")  # pragma: no cover


def _is_static_elementary(abi_type: ABIType) -> bool:
    return (
        isinstance(abi_type, BasicType)
        and not abi_type.is_array
        and (
            abi_type.base in ("uint", "int", "address", "bool")
            or (abi_type.base == "bytes" and abi_type.sub is not None)
        )
    )


def _join_words(words: Sequence[Word]) -> Callable[[Value], bytes]:
    """One function packing a whole leaf, unrolled for the common small widths."""
    if len(words) == 1:
        (w0,) = words
        return lambda t: w0(t[0])
    if len(words) == 2:
        w0, w1 = words
        return lambda t: w0(t[0]) + w1(t[1])
    if len(words) == 3:
        w0, w1, w2 = words
        return lambda t: w0(t[0]) + w1(t[1]) + w2(t[2])
    if len(words) == 4:
        w0, w1, w2, w3 = words
        return lambda t: w0(t[0]) + w1(t[1]) + w2(t[2]) + w3(t[3])
    return lambda t: b"".join([word(value) for word, value in zip(words, t, strict=True)])


class _Codec:
    """Everything a leaf encoding needs: normalise, ABI-encode, hash, render."""

    __slots__ = ("_fast", "_normalizers", "_renderers", "abi_types", "encoding")

    def __init__(self, encoding: tuple[str, ...]) -> None:
        self.encoding = encoding
        if not encoding:
            raise MerkleError("a leaf encoding needs at least one type")
        parsed: list[ABIType] = []
        for type_str in encoding:
            if not isinstance(type_str, str):
                raise MerkleError(f"leaf encoding types must be strings, got {type_str!r}")
            if _UNSUPPORTED_TYPE_RE.search(type_str):
                raise MerkleError(f"unsupported type {type_str!r} in a leaf encoding")
            try:
                abi_type = parse(normalize(type_str))  # type: ignore[no-untyped-call]
                abi_type.validate()
            except (ParseError, ABITypeError) as exc:
                message = f"invalid ABI type {type_str!r} in a leaf encoding: {exc}"
                raise MerkleError(message) from exc
            parsed.append(abi_type)
        self.abi_types = tuple(_type_str(abi_type) for abi_type in parsed)
        self._normalizers = tuple(_normalizer(abi_type) for abi_type in parsed)
        self._renderers = tuple(_renderer(abi_type) for abi_type in parsed)
        self._fast: Callable[[Value], bytes] | None = None
        if all(_is_static_elementary(abi_type) for abi_type in parsed):
            self._fast = _join_words([_word(abi_type) for abi_type in parsed])  # type: ignore[arg-type]

    def normalize(self, value: Any, position: int | None = None) -> Value:
        where = "value" if position is None else f"value {position}"
        width = len(self._normalizers)
        cls = value.__class__
        if (
            cls is not list
            and cls is not tuple
            and (
                isinstance(value, str | bytes | bytearray | memoryview | Mapping)
                or not isinstance(value, Sequence)
            )
        ) or len(value) != width:
            raise MerkleError(
                f"{where}: expected a list or tuple of {width} element(s) "
                f"({', '.join(self.encoding)}), got {_short.repr(value)}"
            )
        try:
            pairs = zip(self._normalizers, value, strict=True)
            return tuple([normalize(element) for normalize, element in pairs])
        except MerkleError:
            pass  # find the element at fault, for the message
        for i, (normalize_one, element) in enumerate(zip(self._normalizers, value, strict=True)):
            try:
                normalize_one(element)
            except MerkleError as exc:
                raise MerkleError(f"{where}, element {i}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def encode(self, value: Value) -> bytes:
        """ABI-encode a normalised value (``abi.encode`` of the leaf encoding)."""
        if self._fast is not None:
            return self._fast(value)
        try:
            return abi_encode(self.abi_types, value)
        except EncodingError as exc:  # pragma: no cover - the normaliser checks first
            raise MerkleError(f"cannot ABI-encode {_short.repr(value)}: {exc}") from exc

    def leaf(self, value: Any) -> tuple[Value, bytes]:
        """Normalise one value and compute its leaf hash."""
        normalized = self.normalize(value)
        k = _keccak_256
        return normalized, k(k(self.encode(normalized)).digest()).digest()

    def leaves(
        self, values: Iterable[Any], *, normalized_input: bool = True
    ) -> tuple[list[Value], list[bytes]]:
        """Normalise many values and compute their leaf hashes (the hot loop of a build).

        ``normalized_input`` says whether most values are likely already in normalised form
        (Python callers) or not (JSON from a dump), which picks the faster route.
        """
        normalized: list[Value] = []
        hashes: list[bytes] = []
        keep, add = normalized.append, hashes.append
        k = _keccak_256
        fast = self._fast
        if fast is None or not normalized_input:
            encode = fast or self.encode
            normalize = self.normalize
            for position, value in enumerate(values):
                value = normalize(value, position)
                keep(value)
                add(k(k(encode(value)).digest()).digest())
            return normalized, hashes
        width = len(self._normalizers)
        for position, value in enumerate(values):
            cls = value.__class__
            if cls is tuple:
                candidate = value
            elif cls is list:
                candidate = tuple(value)
            else:
                candidate = None
            try:
                if candidate is None or len(candidate) != width:
                    raise _NOT_CANONICAL
                encoded = fast(candidate)
            except _NotCanonical:
                candidate = self.normalize(value, position)
                encoded = fast(candidate)
            keep(candidate)
            add(k(k(encoded).digest()).digest())
        return normalized, hashes

    def render(self, value: Value) -> list[Any]:
        return [render(element) for render, element in zip(self._renderers, value, strict=True)]


@lru_cache(maxsize=64)
def _codec(encoding: tuple[str, ...]) -> _Codec:
    return _Codec(encoding)


def _codec_for(leaf_encoding: object) -> _Codec:
    if isinstance(leaf_encoding, str) or not isinstance(leaf_encoding, Sequence):
        raise MerkleError(
            f"a leaf encoding must be a list of ABI type strings, got {_short.repr(leaf_encoding)}"
        )
    encoding = tuple(leaf_encoding)
    if not all(isinstance(type_str, str) for type_str in encoding):
        raise MerkleError(f"leaf encoding types must be strings, got {_short.repr(leaf_encoding)}")
    return _codec(encoding)


def standard_leaf_hash(leaf_encoding: Sequence[str], value: Sequence[Any]) -> bytes:
    """``keccak256(keccak256(abi.encode(value)))``: the leaf of ``value`` in a standard tree."""
    return _codec_for(leaf_encoding).leaf(value)[1]


# ------------------------------------------------------------------------------------- trees


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bulk build, load or dump.

    Those allocate millions of small containers (tuples, lists, dicts) and create no cycles; left
    on, the collector rescans the whole growing heap again and again (a 1,000,000-leaf dump takes
    ~3x as long). The previous state is restored, whatever happens.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_internal_nodes(tree: list[bytes], leaf_count: int) -> None:
    """Fill ``tree[0 : leaf_count-1]`` from the leaves at its end, one slab at a time.

    Every node in ``[hi // 2, hi)`` has both children at ``>= hi``, which are already known, so a
    slab is a single comprehension over two strided slices.
    """
    k = _keccak_256
    hi = leaf_count - 1
    while hi > 0:
        lo = hi // 2
        lefts = tree[2 * lo + 1 : 2 * hi + 1 : 2]
        rights = tree[2 * lo + 2 : 2 * hi + 2 : 2]
        tree[lo:hi] = [
            k(a + b if a <= b else b + a).digest() for a, b in zip(lefts, rights, strict=True)
        ]
        hi = lo


def _sibling(index: int) -> int:
    return index + 1 if index % 2 else index - 1


@dataclass(frozen=True, slots=True)
class MultiProof:
    """A multiproof as the npm library's ``getMultiProof`` returns it (leaves as values)."""

    leaves: tuple[Value, ...]
    proof: tuple[str, ...]
    proof_flags: tuple[bool, ...]


class StandardMerkleTree:
    """An immutable OpenZeppelin ``StandardMerkleTree``. Build with :meth:`of` or :meth:`load`."""

    __slots__ = ("_codec", "_lookup", "_tree", "_tree_indices", "_values")

    def __init__(
        self, codec: _Codec, tree: list[bytes], values: list[Value], tree_indices: list[int]
    ) -> None:
        self._codec = codec
        self._tree = tree
        self._values = values
        self._tree_indices = tree_indices
        self._lookup: dict[bytes, int] | None = None

    # construction ------------------------------------------------------------------------

    @classmethod
    def of(
        cls,
        values: Iterable[Sequence[Any]],
        leaf_encoding: Sequence[str],
        *,
        sort_leaves: bool = True,
    ) -> StandardMerkleTree:
        """Build a tree of ``values`` (each a list/tuple matching ``leaf_encoding``)."""
        codec = _codec_for(leaf_encoding)
        with _gc_paused():
            normalized, hashes = codec.leaves(values)
            return cls._build(codec, normalized, hashes, sort_leaves)

    @classmethod
    def _build(
        cls, codec: _Codec, normalized: list[Value], hashes: list[bytes], sort_leaves: bool
    ) -> StandardMerkleTree:
        count = len(hashes)
        if count == 0:
            raise MerkleError("a Merkle tree needs at least one value")
        order: Sequence[int] = (
            sorted(range(count), key=hashes.__getitem__) if sort_leaves else range(count)
        )
        tree: list[bytes] = [_ZERO_WORD] * (count - 1)
        tree += [hashes[i] for i in reversed(order)]
        last = 2 * count - 2
        tree_indices = [0] * count
        for leaf_index, value_index in enumerate(order):
            tree_indices[value_index] = last - leaf_index
        _build_internal_nodes(tree, count)
        return cls(codec, tree, normalized, tree_indices)

    @classmethod
    def load(cls, dump: Mapping[str, Any]) -> StandardMerkleTree:
        """Load a ``standard-v1`` dump (from :meth:`dump` or the npm library) and validate it."""
        with _gc_paused():
            return cls._load(dump)

    @classmethod
    def _load(cls, dump: Mapping[str, Any]) -> StandardMerkleTree:
        if not isinstance(dump, Mapping):
            raise MerkleError(f"a tree dump must be a JSON object, got {_short.repr(dump)}")
        if dump.get("format") != DUMP_FORMAT:
            raise MerkleError(
                f"unknown tree dump format {_short.repr(dump.get('format'))}, "
                f"expected {DUMP_FORMAT!r}"
            )
        if "leafEncoding" not in dump:
            raise MerkleError("the tree dump has no leafEncoding")
        codec = _codec_for(dump["leafEncoding"])
        raw_tree, raw_values = dump.get("tree"), dump.get("values")
        if not isinstance(raw_tree, list) or not raw_tree:
            raise MerkleError("the tree dump's 'tree' must be a non-empty list of 32-byte nodes")
        if not isinstance(raw_values, list) or not raw_values:
            raise MerkleError("the tree dump's 'values' must be a non-empty list")
        tree = [_node(node, f"tree node {i}") for i, node in enumerate(raw_tree)]
        count = len(raw_values)
        if len(tree) != 2 * count - 1:
            raise MerkleError(
                f"invalid tree: {count} values need {2 * count - 1} nodes, the dump has {len(tree)}"
            )
        plain_values: list[Any] = []
        tree_indices: list[int] = []
        first_leaf, size = count - 1, len(tree)
        for i, entry in enumerate(raw_values):
            if not (entry.__class__ is dict or isinstance(entry, Mapping)) or "value" not in entry:
                raise MerkleError(f"values[{i}] must be an object with 'value' and 'treeIndex'")
            tree_index = entry.get("treeIndex")
            if tree_index.__class__ is not int and (
                isinstance(tree_index, bool) or not isinstance(tree_index, int)
            ):
                raise MerkleError(f"values[{i}].treeIndex must be an integer")
            if not first_leaf <= tree_index < size:
                raise MerkleError(f"values[{i}].treeIndex {tree_index} is not a leaf of the tree")
            plain_values.append(entry["value"])
            tree_indices.append(tree_index)
        if len(set(tree_indices)) != count:
            raise MerkleError("invalid tree: two values share a treeIndex")
        values, hashes = codec.leaves(plain_values, normalized_input=False)
        for i, (tree_index, leaf) in enumerate(zip(tree_indices, hashes, strict=True)):
            if tree[tree_index] != leaf:
                raise MerkleError(
                    f"invalid tree: values[{i}] hashes to {_hex(leaf)}, "
                    f"but tree[{tree_index}] is {_hex(tree[tree_index])}"
                )
        loaded = cls(codec, tree, values, tree_indices)
        loaded._check_internal_nodes()
        return loaded

    def dump(self) -> dict[str, Any]:
        """The ``standard-v1`` dump, exactly as the npm library's ``dump()`` lays it out."""
        render = self._codec.render
        with _gc_paused():
            return {
                "format": DUMP_FORMAT,
                "leafEncoding": list(self._codec.encoding),
                "tree": [_hex(node) for node in self._tree],
                "values": [
                    {"value": render(value), "treeIndex": tree_index}
                    for value, tree_index in zip(self._values, self._tree_indices, strict=True)
                ],
            }

    # reading -----------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """The root, ``0x`` + 64 lower-case hex digits."""
        return _hex(self._tree[0])

    @property
    def root_bytes(self) -> bytes:
        return self._tree[0]

    @property
    def leaf_encoding(self) -> tuple[str, ...]:
        return self._codec.encoding

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return (
            f"StandardMerkleTree(root={self.root}, leaves={len(self)}, "
            f"leaf_encoding={list(self.leaf_encoding)})"
        )

    def at(self, index: int) -> Value:
        """The value given at ``index``."""
        return self._values[self._check_index(index)]

    def tree_index(self, index: int) -> int:
        """Where the value given at ``index`` sits in the node array."""
        return self._tree_indices[self._check_index(index)]

    def entries(self) -> Iterator[tuple[int, Value]]:
        """``(index, value)`` in the order the values were given."""
        return enumerate(self._values)

    def leaf_hash(self, value: Sequence[Any]) -> bytes:
        """The leaf hash of ``value`` under this tree's encoding (in the tree or not)."""
        return self._codec.leaf(value)[1]

    def index_of(self, value: Sequence[Any]) -> int:
        """The index of ``value`` (the last one, if it was given several times)."""
        return self._value_index(value)

    # proofs ------------------------------------------------------------------------------

    def get_proof(self, index_or_value: int | Sequence[Any]) -> list[str]:
        """The proof of a value, given by its index or itself: sibling nodes, leaf to root."""
        tree_index = self._tree_indices[self._value_index(index_or_value)]
        tree = self._tree
        proof: list[bytes] = []
        node = tree_index
        while node > 0:
            proof.append(tree[_sibling(node)])
            node = (node - 1) // 2
        if process_proof(tree[tree_index], proof) != tree[0]:  # pragma: no cover - invariant
            raise MerkleError("unable to prove value: the tree is corrupt")
        return [_hex(node) for node in proof]

    def get_multiproof(self, indices_or_values: Sequence[int | Sequence[Any]]) -> MultiProof:
        """A multiproof of several values (``MerkleProof.multiProofVerify``)."""
        value_indices = [self._value_index(item) for item in indices_or_values]
        by_tree_index = {self._tree_indices[i]: i for i in value_indices}
        if len(by_tree_index) != len(value_indices):
            raise MerkleError("cannot prove a duplicated index")
        indices = sorted(by_tree_index, reverse=True)
        tree = self._tree
        stack = deque(indices)
        proof: list[bytes] = []
        flags: list[bool] = []
        while stack and stack[0] > 0:
            j = stack.popleft()
            sibling, parent = _sibling(j), (j - 1) // 2
            if stack and stack[0] == sibling:
                flags.append(True)
                stack.popleft()
            else:
                flags.append(False)
                proof.append(tree[sibling])
            stack.append(parent)
        if not indices:
            proof.append(tree[0])
        result = MultiProof(
            leaves=tuple(self._values[by_tree_index[i]] for i in indices),
            proof=tuple(_hex(node) for node in proof),
            proof_flags=tuple(flags),
        )
        leaves = [tree[i] for i in indices]
        if process_multiproof(leaves, result.proof, result.proof_flags) != tree[0]:
            raise MerkleError("unable to prove values: the tree is corrupt")  # pragma: no cover
        return result

    def verify(self, index_or_value: int | Sequence[Any], proof: Sequence[bytes | str]) -> bool:
        """Whether ``proof`` leads from the value (or the value at an index) to this root."""
        if isinstance(index_or_value, int) and not isinstance(index_or_value, bool):
            leaf = self._tree[self._tree_indices[self._check_index(index_or_value)]]
        else:
            leaf = self._codec.leaf(index_or_value)[1]
        return process_proof(leaf, proof) == self._tree[0]

    @staticmethod
    def verify_proof(
        root: bytes | str,
        leaf_encoding: Sequence[str],
        value: Sequence[Any],
        proof: Sequence[bytes | str],
    ) -> bool:
        """Whether ``proof`` proves ``value`` under ``root`` (npm ``StandardMerkleTree.verify``).

        Malformed input (a value not matching the encoding, a node that is not 32 bytes) raises
        :class:`MerkleError`; a well-formed proof that does not lead to ``root`` returns False.
        """
        expected = _node(root, "root")
        leaf = _codec_for(leaf_encoding).leaf(value)[1]
        return process_proof(leaf, proof) == expected

    @staticmethod
    def verify_multiproof(
        root: bytes | str, leaf_encoding: Sequence[str], multiproof: MultiProof
    ) -> bool:
        """Whether ``multiproof`` proves its leaves under ``root``."""
        expected = _node(root, "root")
        codec = _codec_for(leaf_encoding)
        leaves = [codec.leaf(value)[1] for value in multiproof.leaves]
        return process_multiproof(leaves, multiproof.proof, multiproof.proof_flags) == expected

    # checks and display ------------------------------------------------------------------

    def validate(self) -> None:
        """Re-hash every value and node; raise :class:`MerkleError` if anything disagrees."""
        with _gc_paused():
            _, hashes = self._codec.leaves(self._values)
        for i, (tree_index, leaf) in enumerate(zip(self._tree_indices, hashes, strict=True)):
            if self._tree[tree_index] != leaf:
                raise MerkleError(f"invalid tree: value {i} is not at tree index {tree_index}")
        self._check_internal_nodes()

    def render(self) -> str:
        """The tree drawn as text, like the npm library's ``render()``."""
        tree = self._tree
        lines: list[str] = []
        stack: list[tuple[int, list[int]]] = [(0, [])]
        while stack:
            i, path = stack.pop()
            lines.append(
                "".join(("   ", "\u2502  ")[p] for p in path[:-1])
                + "".join(("\u2514\u2500 ", "\u251c\u2500 ")[p] for p in path[-1:])
                + f"{i}) {_hex(tree[i])}"
            )
            if 2 * i + 2 < len(tree):
                stack.append((2 * i + 2, [*path, 0]))
                stack.append((2 * i + 1, [*path, 1]))
        return "\n".join(lines)

    # internals ---------------------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise MerkleError(f"an index must be an int, got {_short.repr(index)}")
        if not 0 <= index < len(self._values):
            raise MerkleError(f"index {index} is out of range (the tree has {len(self)} values)")
        return index

    def _value_index(self, index_or_value: int | Sequence[Any]) -> int:
        if isinstance(index_or_value, int) and not isinstance(index_or_value, bool):
            return self._check_index(index_or_value)
        leaf = self._codec.leaf(index_or_value)[1]
        if self._lookup is None:
            tree = self._tree
            self._lookup = {tree[t]: i for i, t in enumerate(self._tree_indices)}
        found = self._lookup.get(leaf)
        if found is None:
            raise MerkleError(f"value {_short.repr(index_or_value)} is not in the tree")
        return found

    def _check_internal_nodes(self) -> None:
        count = len(self._values)
        rebuilt = [_ZERO_WORD] * (count - 1) + self._tree[count - 1 :]
        _build_internal_nodes(rebuilt, count)
        if rebuilt != self._tree:
            pairs = zip(rebuilt, self._tree, strict=True)
            bad = next(i for i, (a, b) in enumerate(pairs) if a != b)
            raise MerkleError(f"invalid tree: node {bad} is not the hash of its children")


def process_multiproof(
    leaves: Sequence[bytes | str], proof: Sequence[bytes | str], proof_flags: Sequence[bool]
) -> bytes:
    """The root reached by a multiproof (``MerkleProof.processMultiProof``) from leaf hashes."""
    stack = deque(_node(leaf, f"leaf hash {i}") for i, leaf in enumerate(leaves))
    items = _proof_items(proof)
    siblings = deque(_node(node, f"proof element {i}") for i, node in enumerate(items))
    flags = list(proof_flags)
    if len(siblings) < sum(1 for flag in flags if not flag):
        raise MerkleError("invalid multiproof: fewer proof nodes than false flags")
    if len(stack) + len(siblings) != len(flags) + 1:
        raise MerkleError("invalid multiproof: leaves and proof do not match the flags")
    k = _keccak_256
    for flag in flags:
        try:
            a = stack.popleft()
            b = stack.popleft() if flag else siblings.popleft()
        except IndexError:
            raise MerkleError("invalid multiproof: the flags run out of nodes") from None
        stack.append(k(a + b if a <= b else b + a).digest())
    if len(stack) + len(siblings) != 1:  # pragma: no cover - implied by the counts above
        raise MerkleError("invalid multiproof")
    return stack.pop() if stack else siblings.popleft()
