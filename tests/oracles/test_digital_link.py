"""GS1 keys and Digital Link URIs: check digits, normalisation, build/parse, refusals."""

from __future__ import annotations

import pytest

from node.errors import IdentifierError
from node.oracles import digital_link as dl

GTIN = "09506000134352"  # the GS1 Digital Link standard's example GTIN


@pytest.mark.parametrize(
    ("key", "normalised"),
    [
        ("09506000134352", "09506000134352"),  # GTIN-14
        ("4006381333931", "04006381333931"),  # GTIN-13
        ("036000291452", "00036000291452"),  # GTIN-12 (UPC-A)
        ("96385074", "00000096385074"),  # GTIN-8
    ],
)
def test_gtins_are_checked_and_normalised_to_14_digits(key: str, normalised: str) -> None:
    assert dl.normalise_gtin(key) == normalised


def test_a_wrong_check_digit_names_the_right_one() -> None:
    with pytest.raises(IdentifierError, match="GTIN 09506000134353: check digit should be 2"):
        dl.normalise_gtin("09506000134353")
    with pytest.raises(IdentifierError, match="SSCC 106141412345678907: check digit should be 8"):
        dl.check_sscc("106141412345678907")
    with pytest.raises(IdentifierError, match="GLN 9506000164909: check digit should be 8"):
        dl.check_gln("9506000164909")


@pytest.mark.parametrize("bad", ["0950600013", "095060001343521", "0950600013435x", ""])
def test_a_gtin_of_the_wrong_length_or_not_digits_is_refused(bad: str) -> None:
    with pytest.raises(IdentifierError, match="must be 8 or 12 or 13 or 14 digits"):
        dl.normalise_gtin(bad)


def test_valid_keys_of_other_types() -> None:
    assert dl.check_sscc("106141412345678908") == "106141412345678908"
    assert dl.check_gln("9506000164908") == "9506000164908"
    assert dl.check_giai("4000001111-press-7") == "4000001111-press-7"
    assert dl.check_grai("04012345000016A1") == "04012345000016A1"


@pytest.mark.parametrize(
    ("link", "path"),
    [
        (dl.product(GTIN), f"/01/{GTIN}"),
        (dl.product(GTIN, lot="L-2026/11"), f"/01/{GTIN}/10/L-2026%2F11"),
        (dl.product(GTIN, serial="CELL&0001"), f"/01/{GTIN}/21/CELL%260001"),
        (dl.product(GTIN, lot="A1", serial="S1"), f"/01/{GTIN}/10/A1/21/S1"),
        (dl.product(GTIN, lot="A1", cpv="2A"), f"/01/{GTIN}/22/2A/10/A1"),
        (dl.logistic_unit("106141412345678908"), "/00/106141412345678908"),
        (dl.location("9506000164908"), "/414/9506000164908"),
        (dl.location("9506000164908", "line-3"), "/414/9506000164908/254/line-3"),
        (dl.asset("4000001111-press-7"), "/8004/4000001111-press-7"),
    ],
)
def test_build_and_parse_round_trip(link: dl.DigitalLink, path: str) -> None:
    uri = link.uri()
    assert uri == dl.DEFAULT_DOMAIN + path
    assert dl.parse(uri) == link
    assert dl.parse(link.canonical_uri()) == link  # GS1's canonical domain is always accepted
    assert dl.parse(link.uri("https://dl.partner.example/resolver"), domains=None) == link


def test_a_short_gtin_in_a_uri_is_normalised() -> None:
    link = dl.parse("https://id.gs1.org/01/4006381333931/10/ABC?linkType=all")
    assert link.gtin == "04006381333931" and link.lot == "ABC" and link.is_class_level


def test_a_configured_domain_is_accepted_and_others_refused() -> None:
    uri = f"https://id.aster.example/01/{GTIN}/21/7"
    assert dl.parse(uri, ["https://id.aster.example"]).serial == "7"
    with pytest.raises(IdentifierError, match="not on a known Digital Link domain"):
        dl.parse(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"https://id.gs1.org/01/{GTIN}/21/S1/10/L1", "out of order: 10 after 21"),
        (f"https://id.gs1.org/01/{GTIN}/10/L1/22/C", "out of order: 22 after 10"),
        ("https://id.gs1.org/99/12345", "unknown AI 99"),
        (f"https://id.gs1.org/01/{GTIN}/99/x", "unknown AI 99 after /01/"),
        ("https://id.gs1.org/10/LOT1", "AI 10 is a key qualifier, not a primary key"),
        (f"https://id.gs1.org/01/{GTIN}/254/x", "not a key qualifier of GTIN"),
        (f"https://id.gs1.org/01/{GTIN}/10/{'L' * 21}", "too long: 21 characters, at most 20"),
        (f"https://id.gs1.org/01/{GTIN}/21/%C3%A9", "outside GS1 character set 82"),
        (f"https://id.gs1.org/01/{GTIN}/10", "expected /AI/value pairs"),
        ("https://id.gs1.org/01/09506000134353", "check digit should be 2"),
        ("ftp://id.gs1.org/01/09506000134352", "not an http(s) URI"),
    ],
)
def test_malformed_uris_are_refused_with_a_clear_reason(uri: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dl.parse(uri)
    assert not dl.is_digital_link(uri)


def test_values_are_percent_encoded_only_where_needed() -> None:
    link = dl.product(GTIN, lot="A+B:C/D!(1)")
    assert link.uri().endswith("/10/A%2BB%3AC%2FD%21%281%29")
    assert dl.parse(link.uri()).lot == "A+B:C/D!(1)"


def test_gtin14_appends_the_indicator_and_the_check_digit() -> None:
    assert dl.gtin14("950600013435") == "09506000134352"
    assert dl.normalise_gtin(dl.gtin14("401234500001")) == dl.gtin14("401234500001")
