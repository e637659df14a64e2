"""GS1 keys (check digits) and GS1 Digital Link URIs: build and parse.

The forms a node needs (GS1 Digital Link URI syntax 1.2):

- ``/01/{gtin}`` with the key qualifiers ``/22/{cpv}``, ``/10/{lot}``, ``/21/{serial}`` in that
  order (a product class, a lot, a serialised item);
- ``/00/{sscc}`` (a logistic unit), ``/414/{gln}`` with ``/254/{extension}`` (a location),
  ``/8004/{giai}`` (an individual asset: equipment, devices), ``/8003/{grai}`` (a returnable asset).

GTIN-8/12/13 are normalised to 14 digits. AI values are limited to GS1's character set 82 and
percent-encoded in URIs except for RFC 3986's unreserved characters. A URI is accepted on the
configured domain and on GS1's canonical ``https://id.gs1.org``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from node.errors import IdentifierError

DEFAULT_DOMAIN = "https://id.qnode.example"
CANONICAL_DOMAIN = "https://id.gs1.org"

GTIN, SSCC, GLN, GIAI, GRAI = "01", "00", "414", "8004", "8003"
CPV, LOT, SERIAL, GLN_EXTENSION = "22", "10", "21", "254"

# GS1 AI encodable character set 82 (GS1 General Specifications, figure 7.11-1).
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]*")


@dataclass(frozen=True)
class _AiSpec:
    title: str
    max_length: int
    qualifiers: tuple[str, ...] = ()


PRIMARY_KEYS: dict[str, _AiSpec] = {
    GTIN: _AiSpec("GTIN", 14, (CPV, LOT, SERIAL)),
    SSCC: _AiSpec("SSCC", 18),
    GLN: _AiSpec("GLN", 13, (GLN_EXTENSION,)),
    GIAI: _AiSpec("GIAI", 30),
    GRAI: _AiSpec("GRAI", 30),
}
QUALIFIERS: dict[str, _AiSpec] = {
    CPV: _AiSpec("CPV", 20),
    LOT: _AiSpec("lot", 20),
    SERIAL: _AiSpec("serial", 20),
    GLN_EXTENSION: _AiSpec("GLN extension", 20),
}


# -- keys and check digits -----------------------------------------------------------------


def check_digit(digits: str) -> str:
    """GS1's mod-10 check digit of ``digits`` (the key without its last digit)."""
    if not digits.isdigit() or not digits.isascii():
        raise IdentifierError(f"{digits!r} is not a string of digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def gtin14(prefix12: str) -> str:
    """A GTIN-14 (indicator 0) from 12 digits: company prefix and item reference."""
    digits = "0" + prefix12
    return digits + check_digit(digits)


def _checked(title: str, value: str, lengths: Iterable[int]) -> str:
    allowed = tuple(lengths)
    if not value.isdigit() or not value.isascii() or len(value) not in allowed:
        sizes = " or ".join(str(n) for n in allowed)
        raise IdentifierError(f"{title} {value!r} must be {sizes} digits")
    expected = check_digit(value[:-1])
    if value[-1] != expected:
        raise IdentifierError(f"{title} {value}: check digit should be {expected}")
    return value


def normalise_gtin(value: str) -> str:
    """A GTIN-8, -12, -13 or -14 with a correct check digit, as 14 digits."""
    return _checked("GTIN", value, (8, 12, 13, 14)).zfill(14)


def check_gln(value: str) -> str:
    return _checked("GLN", value, (13,))


def check_sscc(value: str) -> str:
    return _checked("SSCC", value, (18,))


def check_giai(value: str) -> str:
    """A GIAI: a GS1 company prefix (at least 6 digits here) and an asset reference, 30 at most."""
    _check_text("GIAI", value, 30)
    if not re.match(r"\d{6}", value):
        raise IdentifierError(f"GIAI {value!r} must start with a GS1 company prefix (digits)")
    return value


def check_grai(value: str) -> str:
    """A GRAI: 14 digits (a leading 0, 12 digits, a check digit) and an optional serial of 16."""
    _check_text("GRAI", value, 30)
    _checked("GRAI", value[:14], (14,))
    if value[0] != "0":
        raise IdentifierError(f"GRAI {value}: the first digit must be 0")
    return value


def _check_text(title: str, value: str, max_length: int) -> str:
    if not value:
        raise IdentifierError(f"{title} is empty")
    if len(value) > max_length:
        raise IdentifierError(
            f"{title} {value!r} is too long: {len(value)} characters, at most {max_length}"
        )
    if not _CSET82.fullmatch(value):
        bad = sorted({c for c in value if not _CSET82.fullmatch(c)})
        raise IdentifierError(
            f"{title} {value!r} has characters outside GS1 character set 82: {''.join(bad)!r}"
        )
    return value


_PRIMARY_CHECKS = {
    GTIN: normalise_gtin,
    SSCC: check_sscc,
    GLN: check_gln,
    GIAI: check_giai,
    GRAI: check_grai,
}


# -- Digital Link ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitalLink:
    """A GS1 key with its key qualifiers, in standard order; ``uri()`` writes it on a domain."""

    ai: str
    key: str
    qualifiers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        spec = PRIMARY_KEYS.get(self.ai)
        if spec is None:
            known = ", ".join(PRIMARY_KEYS)
            raise IdentifierError(f"unknown or unsupported primary AI {self.ai} (known: {known})")
        object.__setattr__(self, "key", _PRIMARY_CHECKS[self.ai](self.key))
        _check_qualifiers(self.ai, spec, self.qualifiers)

    def qualifier(self, ai: str) -> str | None:
        return next((value for q, value in self.qualifiers if q == ai), None)

    @property
    def gtin(self) -> str | None:
        return self.key if self.ai == GTIN else None

    @property
    def lot(self) -> str | None:
        return self.qualifier(LOT)

    @property
    def serial(self) -> str | None:
        return self.qualifier(SERIAL)

    @property
    def is_class_level(self) -> bool:
        """A product class or lot (no serial): EPCIS lists it as an ``epcClass`` with a quantity."""
        return self.ai == GTIN and self.serial is None

    def uri(self, domain: str = DEFAULT_DOMAIN) -> str:
        parts = [self.ai, self.key]
        for ai, value in self.qualifiers:
            parts += [ai, value]
        return domain.rstrip("/") + "".join("/" + quote(p, safe="") for p in parts)

    def canonical_uri(self) -> str:
        return self.uri(CANONICAL_DOMAIN)

    def __str__(self) -> str:
        return self.uri()


def _check_qualifiers(ai: str, spec: _AiSpec, qualifiers: tuple[tuple[str, str], ...]) -> None:
    position = -1
    for qualifier, value in qualifiers:
        if qualifier not in spec.qualifiers:
            if qualifier not in QUALIFIERS:
                raise IdentifierError(f"unknown AI {qualifier} after /{ai}/")
            allowed = ", ".join(spec.qualifiers) or "none"
            raise IdentifierError(
                f"AI {qualifier} is not a key qualifier of {spec.title} (allowed: {allowed})"
            )
        index = spec.qualifiers.index(qualifier)
        if index <= position:
            order = " then ".join(spec.qualifiers)
            raise IdentifierError(
                f"key qualifiers of {spec.title} out of order: {qualifier} after "
                f"{spec.qualifiers[position]} (the order is {order})"
            )
        position = index
        _check_text(QUALIFIERS[qualifier].title, value, QUALIFIERS[qualifier].max_length)


def product(
    gtin: str, lot: str | None = None, serial: str | None = None, cpv: str | None = None
) -> DigitalLink:
    """A product class, lot or item: ``/01/{gtin}[/22/{cpv}][/10/{lot}][/21/{serial}]``."""
    pairs = ((CPV, cpv), (LOT, lot), (SERIAL, serial))
    return DigitalLink(GTIN, gtin, tuple((ai, v) for ai, v in pairs if v is not None))


def logistic_unit(sscc: str) -> DigitalLink:
    return DigitalLink(SSCC, sscc)


def location(gln: str, extension: str | None = None) -> DigitalLink:
    return DigitalLink(GLN, gln, () if extension is None else ((GLN_EXTENSION, extension),))


def asset(giai: str) -> DigitalLink:
    """Equipment or a device, identified by its GIAI: ``/8004/{giai}``."""
    return DigitalLink(GIAI, giai)


def parse(uri: str, domains: Iterable[str] | None = (DEFAULT_DOMAIN,)) -> DigitalLink:
    """A Digital Link URI on one of ``domains`` or GS1's canonical domain; with ``domains=None``
    on any domain (a partner's resolver, with or without a path prefix). The query string (data
    attributes) and fragment are ignored; everything else must be a known AI path."""
    if domains is None:
        segments = _segments_after_prefix(uri)
    else:
        path = _path_on_domain(uri, (*domains, CANONICAL_DOMAIN))
        segments = path.strip("/").split("/") if path.strip("/") else []
    if len(segments) < 2 or len(segments) % 2:
        raise IdentifierError(
            f"{uri!r} is not a GS1 Digital Link URI: expected /AI/value pairs after the domain"
        )
    pairs = [(segments[i], _decoded(uri, segments[i + 1])) for i in range(0, len(segments), 2)]
    (ai, key), qualifiers = pairs[0], tuple(pairs[1:])
    if ai not in PRIMARY_KEYS:
        if ai in QUALIFIERS:
            raise IdentifierError(f"{uri!r}: AI {ai} is a key qualifier, not a primary key")
        raise IdentifierError(f"{uri!r}: unknown AI {ai}")
    return DigitalLink(ai, key, qualifiers)


def _segments_after_prefix(uri: str) -> list[str]:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IdentifierError(f"{uri!r} is not an http(s) URI")
    segments = parts.path.strip("/").split("/")
    for index, segment in enumerate(segments):
        if segment in PRIMARY_KEYS and (len(segments) - index) % 2 == 0:
            return segments[index:]
    raise IdentifierError(f"{uri!r} is not a GS1 Digital Link URI: no primary key AI in its path")


def _path_on_domain(uri: str, domains: Iterable[str]) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IdentifierError(f"{uri!r} is not an http(s) URI")
    domains = tuple(domains)
    for domain in domains:
        base = urlsplit(domain.rstrip("/"))
        if parts.netloc.lower() == base.netloc.lower() and parts.path.startswith(base.path + "/"):
            return parts.path[len(base.path) :]
    known = ", ".join(domains)
    raise IdentifierError(f"{uri!r} is not on a known Digital Link domain ({known})")


def _decoded(uri: str, segment: str) -> str:
    if not segment:
        raise IdentifierError(f"{uri!r} has an empty AI value")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError as exc:
        raise IdentifierError(f"{uri!r} has a malformed percent-encoding") from exc


def is_digital_link(uri: str, domains: Iterable[str] | None = (DEFAULT_DOMAIN,)) -> bool:
    try:
        parse(uri, domains)
    except IdentifierError:
        return False
    return True
