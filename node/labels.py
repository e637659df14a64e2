"""Product labels: the GS1 Digital Link URI of each serialised item, as a QR code and an NFC tag.

For every serial a label is:

- the item's Digital Link URI ``{base}/01/{gtin}[/10/{lot}]/21/{serial}``, built and parsed back
  with :mod:`node.oracles.digital_link` (check digit, character set 82, qualifier order);
- a QR code of that URI (error correction level M, never boosted; a 4-module quiet zone, as
  ISO/IEC 18004 requires for QR codes) as SVG and PNG, written by segno;
- an NFC Forum NDEF message holding one URI record (TNF 0x01 well-known, type ``U``), the URI's
  scheme prefix replaced by its identifier code from the NFC Forum URI Record Type Definition
  (``https://`` is 0x04), as raw bytes and as hex.

Minted serials must not be enumerable (a consumer who sees one label must not be able to guess
another): each is 16 characters drawn uniformly by :mod:`secrets` from the 32-symbol alphabet
``0-9 A-Z`` without ``I L O U`` (Crockford's base 32), i.e. exactly 80 random bits. Every symbol is
in GS1 AI 21's character set 82 and in RFC 3986's unreserved set, so a serial needs no
percent-encoding in a URI, and the alphabet leaves out the letters read as digits on a worn label.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import segno

from node.api.serials import ALPHABET, BITS_PER_CHARACTER, DEFAULT_LENGTH, new_serial
from node.errors import ConfigError, IdentifierError
from node.oracles.digital_link import DigitalLink, parse, product

__all__ = [
    "MANIFEST_FILE",
    "QR_BORDER",
    "QR_ERROR",
    "SERIAL_ALPHABET",
    "SERIAL_BITS",
    "SERIAL_LENGTH",
    "URI_PREFIXES",
    "Label",
    "LabelFiles",
    "check_base_url",
    "check_serials",
    "file_stem",
    "make_label",
    "make_labels",
    "mint_serials",
    "ndef_uri_record",
    "qr_code",
    "read_manifest",
    "serials_in",
    "split_uri_prefix",
    "write_labels",
]

SERIAL_ALPHABET = ALPHABET
"""Crockford's base 32 (node/api/serials.py, the resolver's scheme): GS1 character set 82 and
RFC 3986 unreserved, no I, L, O or U."""
SERIAL_LENGTH = DEFAULT_LENGTH
SERIAL_BITS = DEFAULT_LENGTH * BITS_PER_CHARACTER
"""The entropy of a minted serial: 80 bits."""
QR_ERROR = "M"
QR_BORDER = 4
"""Quiet zone, in modules (ISO/IEC 18004: 4 for QR codes)."""
QR_PNG_SCALE = 8
"""Pixels per module in the PNG (a 1 cm code at 300 dpi needs about 4)."""
MANIFEST_FILE = "labels.json"
MANIFEST_FORMAT = "qnode-labels/1"

URI_PREFIXES: tuple[str, ...] = (
    "",
    "http://www.",
    "https://www.",
    "http://",
    "https://",
    "tel:",
    "mailto:",
    "ftp://anonymous:anonymous@",
    "ftp://ftp.",
    "ftps://",
    "sftp://",
    "smb://",
    "nfs://",
    "ftp://",
    "dav://",
    "news:",
    "telnet://",
    "imap:",
    "rtsp://",
    "urn:",
    "pop:",
    "sip:",
    "sips:",
    "tftp:",
    "btspp://",
    "btl2cap://",
    "btgoep://",
    "tcpobex://",
    "irdaobex://",
    "file://",
    "urn:epc:id:",
    "urn:epc:tag:",
    "urn:epc:pat:",
    "urn:epc:raw:",
    "urn:epc:",
    "urn:nfc:",
)
"""The URI identifier codes of the NFC Forum URI RTD: the prefix at index N is abbreviated N."""

_TNF_WELL_KNOWN = 0x01
_MB, _ME, _SR = 0x80, 0x40, 0x10


def split_uri_prefix(uri: str) -> tuple[int, str]:
    """The URI identifier code of the longest abbreviable prefix of ``uri``, and the rest."""
    best = 0
    for code, prefix in enumerate(URI_PREFIXES):
        if prefix and uri.startswith(prefix) and len(prefix) > len(URI_PREFIXES[best]):
            best = code
    return best, uri[len(URI_PREFIXES[best]) :]


def ndef_uri_record(uri: str) -> bytes:
    """An NDEF message of one URI record: MB and ME set, TNF well-known, type ``U``, the payload
    being the identifier code then the rest of the URI in UTF-8 (a short record below 256 bytes
    of payload, a normal one with a 4-byte length above)."""
    code, rest = split_uri_prefix(uri)
    payload = bytes((code,)) + rest.encode("utf-8")
    record_type = b"U"
    if len(payload) < 256:
        header = bytes((_MB | _ME | _SR | _TNF_WELL_KNOWN, len(record_type), len(payload)))
    else:
        header = bytes((_MB | _ME | _TNF_WELL_KNOWN, len(record_type))) + len(payload).to_bytes(
            4, "big"
        )
    return header + record_type + payload


def qr_code(uri: str) -> segno.QRCode:
    """The QR code of ``uri``: level M exactly (not boosted), the smallest version that fits."""
    return segno.make(uri, error=QR_ERROR.lower(), micro=False, boost_error=False)


def mint_serials(count: int, taken: Collection[str] = ()) -> list[str]:
    """``count`` new serials, each 80 random bits in :data:`SERIAL_ALPHABET`, distinct from each
    other and from ``taken``."""
    if count < 0:
        raise ConfigError(f"cannot mint {count} serials")
    minted: list[str] = []
    seen = set(taken)
    while len(minted) < count:
        serial = new_serial(SERIAL_LENGTH)
        if serial not in seen:  # 80 bits: a repeat is practically impossible, but never reused
            seen.add(serial)
            minted.append(serial)
    return minted


def check_serials(serials: Iterable[str], pattern: str) -> None:
    """ConfigError naming the serials that do not fit ``pattern`` (the resolver's
    ``api.serial_pattern``: a label with another serial would lead nowhere)."""
    matcher = re.compile(pattern)
    bad = [serial for serial in serials if not matcher.fullmatch(serial)]
    if bad:
        raise ConfigError(
            f"serial(s) {', '.join(bad)} do not fit api.serial_pattern {pattern}: the resolver "
            "would never serve them (mint serials with --count)"
        )


def check_base_url(base_url: str) -> str:
    """The resolver's base URL (scheme, host and an optional path prefix), without a trailing
    slash; ConfigError if it is not an http(s) URL or carries a query or fragment."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL {base_url!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ConfigError(f"base URL {base_url!r} must not have a query or a fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


@dataclass(frozen=True)
class Label:
    """One serialised item's label contents."""

    link: DigitalLink
    uri: str
    ndef: bytes
    minted: bool

    @property
    def serial(self) -> str:
        serial = self.link.serial
        assert serial is not None  # labels are made for serials only
        return serial

    @property
    def ndef_hex(self) -> str:
        return self.ndef.hex()

    def qr(self) -> segno.QRCode:
        return qr_code(self.uri)


def make_label(
    gtin: str, lot: str | None, serial: str, base_url: str, minted: bool = False
) -> Label:
    """The label of one item; IdentifierError for a bad GTIN, lot or serial."""
    base = check_base_url(base_url)
    link = product(gtin, lot=lot, serial=serial)
    uri = link.uri(base)
    if parse(uri, domains=(base,)) != link:  # the resolver must read back what we print
        raise IdentifierError(f"{uri} does not parse back to the same Digital Link")
    return Label(link, uri, ndef_uri_record(uri), minted)


def make_labels(
    gtin: str,
    lot: str | None,
    serials: Sequence[str],
    count: int,
    base_url: str,
    taken: Collection[str] = (),
) -> list[Label]:
    """Labels for the given ``serials`` and for ``count`` newly minted ones (not in ``taken``)."""
    duplicates = sorted(serial for serial, n in Counter(serials).items() if n > 1)
    if duplicates:
        raise ConfigError(f"serial(s) given twice: {', '.join(duplicates)}")
    if not serials and count <= 0:
        raise ConfigError("no serials: give --serial or --count")
    labels = [make_label(gtin, lot, serial, base_url) for serial in serials]
    minted = mint_serials(count, set(taken) | set(serials))
    labels += [make_label(gtin, lot, serial, base_url, minted=True) for serial in minted]
    return labels


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFiles:
    """Where one label was written (names relative to the output directory)."""

    label: Label
    svg: str
    png: str
    ndef: str
    ndef_hex: str

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "gtin": self.label.link.gtin,
            "lot": self.label.link.lot,
            "serial": self.label.serial,
            "uri": self.label.uri,
            "minted": self.label.minted,
            "ndef": self.label.ndef_hex,
            "files": {"svg": self.svg, "png": self.png, "ndef": self.ndef, "hex": self.ndef_hex},
        }


def file_stem(link: DigitalLink) -> str:
    """A file name for an item: GTIN, lot and serial, each percent-encoded (no separators, dots
    or other characters a file system could read specially survive)."""
    parts = [link.key, link.lot or "", link.serial or ""]
    return "_".join(quote(part, safe="") for part in parts)


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """The labels already written to ``out_dir`` (empty if none)."""
    path = out_dir / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    labels = data.get("labels")
    if not isinstance(labels, list):
        raise ConfigError(f"{path} has no label list")
    return [entry for entry in labels if isinstance(entry, dict)]


def serials_in(entries: Iterable[dict[str, Any]], gtin: str) -> set[str]:
    """The serials the manifest holds for a GTIN (14 digits), whatever their lot: GTIN and serial
    identify an item, so a new serial must differ from all of them."""
    return {
        str(e.get("serial"))
        for e in entries
        if e.get("gtin") == gtin and e.get("serial") is not None
    }


def write_labels(labels: Sequence[Label], out_dir: Path) -> list[LabelFiles]:
    """Write each label's SVG, PNG, ``.ndef`` and ``.ndef.hex`` to ``out_dir``, and add them to its
    manifest (``labels.json``; a label for the same URI is replaced)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    existing = read_manifest(out_dir)
    written: list[LabelFiles] = []
    for label in labels:
        stem = file_stem(label.link)
        files = LabelFiles(label, f"{stem}.svg", f"{stem}.png", f"{stem}.ndef", f"{stem}.ndef.hex")
        qr = label.qr()
        try:
            qr.save(
                str(out_dir / files.svg), kind="svg", scale=4, border=QR_BORDER, title=label.uri
            )
            qr.save(str(out_dir / files.png), kind="png", scale=QR_PNG_SCALE, border=QR_BORDER)
            (out_dir / files.ndef).write_bytes(label.ndef)
            (out_dir / files.ndef_hex).write_text(label.ndef_hex + "\n", encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"cannot write the label of {label.uri}: {exc}") from exc
        written.append(files)
    new_uris = {files.label.uri for files in written}
    entries = [e for e in existing if e.get("uri") not in new_uris]
    entries += [files.manifest_entry() for files in written]
    manifest = {"format": MANIFEST_FORMAT, "labels": entries}
    path = out_dir / MANIFEST_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return written
