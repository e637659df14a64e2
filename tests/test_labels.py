"""Labels: Digital Link URIs, QR codes (SVG, PNG) and NFC NDEF URI records per serial."""

from __future__ import annotations

import json
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.errors import ConfigError, IdentifierError
from node.labels import (
    SERIAL_ALPHABET,
    SERIAL_BITS,
    SERIAL_LENGTH,
    check_serials,
    make_label,
    make_labels,
    mint_serials,
    ndef_uri_record,
    qr_code,
    write_labels,
)
from node.oracles import digital_link as dl
from node.settings import ApiSettings
from tests.test_cli import assert_one_line_error, qnode

GTIN = "09506000134352"
BASE = "https://id.example.com"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# NFC Forum URI Record Type Definition, table 3: URI identifier codes (written out again here, so
# that the parser below checks the module against the specification, not against itself).
RTD_URI_CODES = {
    0x00: "",
    0x01: "http://www.",
    0x02: "https://www.",
    0x03: "http://",
    0x04: "https://",
    0x05: "tel:",
    0x06: "mailto:",
    0x07: "ftp://anonymous:anonymous@",
    0x08: "ftp://ftp.",
    0x09: "ftps://",
    0x0A: "sftp://",
    0x0B: "smb://",
    0x0C: "nfs://",
    0x0D: "ftp://",
    0x0E: "dav://",
    0x0F: "news:",
    0x10: "telnet://",
    0x11: "imap:",
    0x12: "rtsp://",
    0x13: "urn:",
    0x14: "pop:",
    0x15: "sip:",
    0x16: "sips:",
    0x17: "tftp:",
    0x18: "btspp://",
    0x19: "btl2cap://",
    0x1A: "btgoep://",
    0x1B: "tcpobex://",
    0x1C: "irdaobex://",
    0x1D: "file://",
    0x1E: "urn:epc:id:",
    0x1F: "urn:epc:tag:",
    0x20: "urn:epc:pat:",
    0x21: "urn:epc:raw:",
    0x22: "urn:epc:",
    0x23: "urn:nfc:",
}


@dataclass(frozen=True)
class NdefRecord:
    mb: bool
    me: bool
    tnf: int
    type: bytes
    id: bytes
    payload: bytes


def parse_ndef(message: bytes) -> list[NdefRecord]:
    """NFC Forum NDEF 1.0, section 3.2: header flags, lengths, type, id, payload."""
    records: list[NdefRecord] = []
    at = 0
    while at < len(message):
        header = message[at]
        mb, me, cf, sr, il = (bool(header & bit) for bit in (0x80, 0x40, 0x20, 0x10, 0x08))
        assert not cf, "chunked records are not expected"
        tnf = header & 0x07
        type_length = message[at + 1]
        at += 2
        if sr:
            payload_length = message[at]
            at += 1
        else:
            (payload_length,) = struct.unpack(">I", message[at : at + 4])
            at += 4
        id_length = 0
        if il:
            id_length = message[at]
            at += 1
        record_type = message[at : at + type_length]
        at += type_length
        record_id = message[at : at + id_length]
        at += id_length
        payload = message[at : at + payload_length]
        assert len(payload) == payload_length, "truncated payload"
        at += payload_length
        records.append(NdefRecord(mb, me, tnf, record_type, record_id, payload))
    return records


def uri_of(message: bytes) -> str:
    """The URI of a one-record NDEF message holding a well-known URI record."""
    (record,) = parse_ndef(message)
    assert record.mb and record.me
    assert record.tnf == 0x01  # NFC Forum well-known type
    assert record.type == b"U"
    code, rest = record.payload[0], record.payload[1:]
    assert code in RTD_URI_CODES, f"reserved URI identifier code {code:#x}"
    return RTD_URI_CODES[code] + rest.decode("utf-8")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- NDEF --------------------------------------------------------------------------------------


def test_the_ndef_uri_record_decodes_back_to_the_uri_with_https_abbreviated() -> None:
    uri = f"{BASE}/01/{GTIN}/10/LOT-1/21/S7"
    message = ndef_uri_record(uri)
    assert message[0] == 0xD1  # MB, ME, SR, TNF 1
    assert message[3:5] == b"U\x04"  # type U, then identifier code 0x04 for "https://"
    assert message[5:] == uri.removeprefix("https://").encode()
    assert uri_of(message) == uri


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("https://www.example.com/01/09506000134352", 0x02),  # the longest prefix wins
        ("http://id.example.com/01/09506000134352", 0x03),
        ("urn:epc:id:sgtin:9506000.013435.S7", 0x1E),
        ("gs1:01/09506000134352", 0x00),
    ],
)
def test_uri_identifier_codes_follow_the_uri_rtd(uri: str, code: int) -> None:
    message = ndef_uri_record(uri)
    assert parse_ndef(message)[0].payload[0] == code
    assert uri_of(message) == uri


def test_a_long_uri_gets_a_normal_record_with_a_four_byte_length() -> None:
    uri = f"{BASE}/01/{GTIN}/21/S7?" + "x" * 300
    message = ndef_uri_record(uri)
    assert message[0] & 0x10 == 0  # not a short record
    assert uri_of(message) == uri


# -- serials -----------------------------------------------------------------------------------


def test_minted_serials_are_80_random_bits_in_gs1_characters_and_unique() -> None:
    assert len(SERIAL_ALPHABET) ** SERIAL_LENGTH >= 2**SERIAL_BITS >= 2**80
    serials = mint_serials(2000)
    assert len(set(serials)) == 2000
    for serial in serials:
        assert len(serial) == SERIAL_LENGTH <= 20  # AI 21 holds at most 20 characters
        assert set(serial) <= set(SERIAL_ALPHABET)
        dl.product(GTIN, serial=serial)  # character set 82
    assert not set(SERIAL_ALPHABET) & set("ILOU")
    # Not a counter: consecutive serials share no long common prefix.
    assert len({s[:4] for s in serials}) > 1500


def test_minted_serials_fit_the_resolvers_serial_pattern() -> None:
    pattern = re.compile(ApiSettings().serial_pattern)
    assert all(pattern.fullmatch(serial) for serial in mint_serials(200))
    check_serials(mint_serials(3), ApiSettings().serial_pattern)
    with pytest.raises(ConfigError, match="S-1, 12345 do not fit"):
        check_serials(["S-1", "12345", "0123456789ABCDEF"], ApiSettings().serial_pattern)


def test_minted_serials_avoid_those_taken() -> None:
    taken = set(mint_serials(50))
    assert not set(mint_serials(50, taken)) & taken


# -- labels and files ----------------------------------------------------------------------------


def test_a_label_round_trips_through_digital_link_parsing() -> None:
    label = make_label("9506000134352", "LOT/1", "S*7", BASE)  # GTIN-13 is normalised
    assert label.uri == f"{BASE}/01/{GTIN}/10/LOT%2F1/21/S%2A7"
    parsed = dl.parse(label.uri, domains=(BASE,))
    assert (parsed.gtin, parsed.lot, parsed.serial) == (GTIN, "LOT/1", "S*7")
    assert uri_of(label.ndef) == label.uri


def test_bad_identifiers_are_refused() -> None:
    with pytest.raises(IdentifierError, match="check digit should be 2"):
        make_label("09506000134353", None, "S1", BASE)
    with pytest.raises(IdentifierError, match="character set 82"):
        make_label(GTIN, None, "S 1", BASE)
    with pytest.raises(ConfigError, match="not an http"):
        make_label(GTIN, None, "S1", "id.example.com")
    with pytest.raises(ConfigError, match="given twice"):
        make_labels(GTIN, None, ["S1", "S1"], 0, BASE)
    with pytest.raises(ConfigError, match="no serials"):
        make_labels(GTIN, None, [], 0, BASE)


def test_labels_are_written_as_svg_png_ndef_and_hex_with_a_manifest(tmp_path: Path) -> None:
    labels = make_labels(GTIN, "LOT-1", ["S7"], 2, f"{BASE}/")
    written = write_labels(labels, tmp_path)
    assert [f.label.minted for f in written] == [False, True, True]
    for files in written:
        svg = (tmp_path / files.svg).read_bytes()
        assert svg and ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
        png = (tmp_path / files.png).read_bytes()
        modules = qr_code(files.label.uri).symbol_size(scale=1, border=0)[0]
        assert png_size(png) == ((modules + 2 * 4) * 8,) * 2  # a 4-module quiet zone, 8 px each
        ndef = (tmp_path / files.ndef).read_bytes()
        assert uri_of(ndef) == files.label.uri
        hex_text = (tmp_path / files.ndef_hex).read_text().strip()
        assert bytes.fromhex(hex_text) == ndef
        assert dl.parse(files.label.uri, domains=(BASE,)).serial == files.label.serial
    assert qr_code(written[0].label.uri).error == "M"
    manifest = json.loads((tmp_path / "labels.json").read_text())
    assert [e["serial"] for e in manifest["labels"]] == [f.label.serial for f in written]
    # A second run adds to the manifest and replaces the label of a URI written again.
    write_labels(make_labels(GTIN, "LOT-2", ["S7", "S8"], 0, BASE), tmp_path)
    write_labels(make_labels(GTIN, "LOT-1", ["S7"], 0, BASE), tmp_path)
    manifest = json.loads((tmp_path / "labels.json").read_text())
    assert len(manifest["labels"]) == 5


# -- the command -------------------------------------------------------------------------------


SERIAL = "0123456789ABCDEF"  # fits the resolver's serial pattern


def test_the_label_command_writes_each_serial(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    result = qnode(
        "label", "--gtin", GTIN, "--lot", "L1", "--serial", SERIAL, "--count", "2",
        "--out", str(out), "--base-url", BASE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "labels.json").read_text())
    serials = [e["serial"] for e in manifest["labels"]]
    assert serials[0] == SERIAL and len(set(serials)) == 3
    for entry in manifest["labels"]:
        assert entry["uri"] in result.stdout
        assert (out / entry["files"]["png"]).read_bytes().startswith(PNG_SIGNATURE)
        assert (out / entry["files"]["svg"]).stat().st_size > 0
        assert uri_of((out / entry["files"]["ndef"]).read_bytes()) == entry["uri"]


def test_the_label_command_defaults_to_the_resolver_domain(tmp_path: Path) -> None:
    config = tmp_path / "qnode.toml"
    config.write_text(
        '[member]\nname = "Aster"\nrole = "manufacturer"\n'
        '[api]\nresolver_domain = "https://id.aster.example"\n'
    )
    result = qnode(
        "label", "-c", str(config), "--gtin", GTIN, "--serial", SERIAL, "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert f"https://id.aster.example/01/{GTIN}/21/{SERIAL}" in result.stdout


def test_a_serial_the_resolver_would_not_serve_is_refused(tmp_path: Path) -> None:
    result = qnode(
        "label", "--gtin", GTIN, "--serial", "S1", "--out", str(tmp_path / "x"),
        "--base-url", BASE,
    )  # fmt: skip
    assert_one_line_error(result, 2, "S1 do not fit api.serial_pattern")
    assert not (tmp_path / "x").exists()


def test_a_bad_gtin_check_digit_is_a_one_line_error(tmp_path: Path) -> None:
    result = qnode(
        "label", "--gtin", "09506000134353", "--count", "1", "--out", str(tmp_path / "x"),
        "--base-url", BASE,
    )  # fmt: skip
    assert_one_line_error(result, 12, "GTIN 09506000134353: check digit should be 2")
    assert not (tmp_path / "x").exists()
