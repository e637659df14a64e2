"""The CBV 2.0 EPCIS event hash: ``ni:///sha-256;<hex>?ver=CBV2.0``.

It reproduces GS1's reference implementation (``epcis-event-hash-generator`` 1.9.3, the release on
PyPI) on EPCIS 2.0 JSON-LD events, including its documented quirks, because an eventID is only
useful if a partner recomputes the same value:

- an event becomes a tree of (name, value, children) elements, as the XML binding would give;
  ``...List`` fields become lists of their singular element (``epcList`` -> ``epc``,
  ``inputEPCList`` -> ``epc``, ``quantityList`` -> ``quantityElement``);
- the elements of the canonical property order come first (their siblings sorted), then everything
  left over (ILMD, user extensions, business transactions, sources and destinations), sorted;
- user extensions inside readPoint, bizLocation, sensorElement, sensorMetadata and sensorReport go
  at the end of their parent;
- timestamps in the ordered part become UTC with milliseconds and a ``Z``; numbers lose trailing
  zeros; ``urn:epcglobal:cbv`` values become CBV web URIs; EPC URNs and GS1 Digital Link URIs become
  constrained canonical ``https://id.gs1.org`` URIs (:func:`normalise_gs1_uri`);
- bare CBV words (``"inspecting"``) become their web URIs, and CURIEs whose prefix the document's
  ``@context`` declares are expanded.

Fields the hash ignores: ``eventID``, ``recordTime``, ``type`` (it leads as ``eventType``) and
``errorDeclaration``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

HASH_VERSION = "CBV2.0"
CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"
IGNORED_FIELDS = frozenset({"recordTime", "eventID", "type", "errorDeclaration"})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- vocabulary: the bare words the EPCIS 2.0 JSON-LD context maps to CBV / GS1 web URIs ---------

_VOCABULARY: Mapping[str, tuple[str, frozenset[str]]] = {
    "bizStep": (
        CBV + "BizStep-",
        _words(
            "accepting arriving assembling collecting commissioning consigning "
            "creating_class_instance cycle_counting decommissioning departing destroying "
            "disassembling dispensing encoding entering_exiting holding inspecting installing "
            "killing loading other packing picking receiving removing repackaging repairing "
            "replacing reserving retail_selling sampling sensor_reporting shipping "
            "staging_outbound stock_taking stocking storing transporting unloading unpacking "
            "void_shipping"
        ),
    ),
    "disposition": (
        CBV + "Disp-",
        _words(
            "active available completeness_verified completeness_inferred conformant "
            "container_closed container_open damaged destroyed dispensed disposed encoded "
            "expired in_progress in_transit inactive mismatch_instance mismatch_class "
            "mismatch_quantity needs_replacement no_pedigree_match non_conformant "
            "non_sellable_other partially_dispensed recalled reserved retail_sold returned "
            "sellable_accessible sellable_not_accessible stolen unavailable unknown"
        ),
    ),
    "sourceOrDestinationType": (
        CBV + "SDT-",
        frozenset({"owning_party", "possessing_party", "location"}),
    ),
    "bizTransactionType": (
        CBV + "BTT-",
        _words("bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt"),
    ),
    "sensorReportType": (
        GS1_VOC,
        _words(
            "AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Radioactivity Altitude "
            "AmountOfSubstance AmountOfSubstancePerUnitVolume Angle AngularAcceleration "
            "AngularMomentum AngularVelocity Area Capacitance Conductance Conductivity Count "
            "Density Dimensionless DoseEquivalent DoseEquivalentRate DynamicViscosity "
            "ElectricCharge ElectricCurrent ElectricCurrentDensity ElectricFieldStrength Energy "
            "Exposure Force Frequency Illuminance Inductance Irradiance KinematicViscosity Length "
            "LinearMomentum Luminance LuminousFlux LuminousIntensity MagneticFlux "
            "MagneticFluxDensity MagneticVectorPotential Mass MassConcentration MassFlowRate "
            "MassPerAreaTime MemoryCapacity MolalityOfSolute MolarEnergy MolarMass MolarVolume "
            "Power Pressure RadiantFlux RadiantIntensity RelativeHumidity Resistance Resistivity "
            "SolidAngle SpecificVolume Speed SurfaceDensity SurfaceTension Temperature Time "
            "Torque Voltage Volume VolumeFlowRate VolumeFraction VolumetricFlux "
            "Wavenumber"
        ),
    ),
    "sensorException": (GS1_VOC, frozenset({"ALARM_CONDITION", "ERROR_CONDITION"})),
    "component": (
        CBV + "Comp-",
        _words(
            "x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle "
            "easting northing latitude longitude altitude"
        ),
    ),
    "errorReason": (CBV + "ER-", frozenset({"did_not_occur", "incorrect_data"})),
}
_STANDARD_PREFIXES = {"cbv": CBV, "gs1": GS1_VOC}

# --- the canonical property order -------------------------------------------------------------


@dataclass(frozen=True)
class _Order:
    name: str
    children: tuple[_Order, ...] = ()


def _leaves(*names: str) -> tuple[_Order, ...]:
    return tuple(_Order(name) for name in names)


_QUANTITY = (_Order("quantityElement", _leaves("epcClass", "quantity", "uom")),)
# bizTransactionList, sourceList and destinationList are absent on purpose: the reference never
# matches them in this pass, so they land with the leftovers (sorted, type before or after the id
# as the JSON has it).
PROPERTY_ORDER: tuple[_Order, ...] = (
    *_leaves("eventTime", "eventTimeZoneOffset", "certificationInfo", "parentID"),
    _Order("epcList", _leaves("epc")),
    _Order("inputEPCList", _leaves("epc")),
    _Order("childEPCs", _leaves("epc")),
    _Order("quantityList", _QUANTITY),
    _Order("childQuantityList", _QUANTITY),
    _Order("inputQuantityList", _QUANTITY),
    _Order("outputEPCList", _leaves("epc")),
    _Order("outputQuantityList", _QUANTITY),
    *_leaves("action", "transformationID", "bizStep", "disposition"),
    _Order("persistentDisposition", _leaves("set", "unset")),
    _Order("readPoint", _leaves("id")),
    _Order("bizLocation", _leaves("id")),
    _Order(
        "sensorElementList",
        (
            _Order(
                "sensorElement",
                (
                    _Order(
                        "sensorMetadata",
                        _leaves(
                            "time",
                            "startTime",
                            "endTime",
                            "deviceID",
                            "deviceMetadata",
                            "rawData",
                            "dataProcessingMethod",
                            "bizRules",
                        ),
                    ),
                    _Order(
                        "sensorReport",
                        _leaves(
                            "type",
                            "exception",
                            "deviceID",
                            "deviceMetadata",
                            "rawData",
                            "dataProcessingMethod",
                            "time",
                            "microorganism",
                            "chemicalSubstance",
                            "value",
                            "component",
                            "stringValue",
                            "booleanValue",
                            "hexBinaryValue",
                            "uriValue",
                            "minValue",
                            "maxValue",
                            "meanValue",
                            "sDev",
                            "percRank",
                            "percValue",
                            "uom",
                            "coordinateReferenceSystem",
                        ),
                    ),
                ),
            ),
        ),
    ),
)
_PAIRED_LISTS = frozenset({"sourceList", "destinationList", "bizTransactionList"})
_PAIRED_ITEMS = frozenset({"bizTransaction", "source", "destination"})
_IGNORED_KEYS = frozenset({"#text", "rdfs:comment", "comment"})

# --- the element tree -----------------------------------------------------------------------


@dataclass(eq=False)
class _Element:
    name: str
    value: str = ""
    children: list[_Element | _Pair] = field(default_factory=list)


@dataclass(eq=False)
class _Pair:
    """An item of a business transaction, source or destination list: its first two fields."""

    first: _Element
    second: _Element


# --- public API -----------------------------------------------------------------------------


def event_hash(
    event: Mapping[str, Any],
    prefixes: Mapping[str, str] | None = None,
    algorithm: str = "sha-256",
) -> str:
    """The event's CBV 2.0 hash id. ``prefixes`` are the CURIE prefixes its document's
    ``@context`` declares (e.g. ``{"qnode": "https://…/"}``)."""
    return hash_id(pre_hash_string(event, prefixes), algorithm)


def document_hashes(document: Mapping[str, Any]) -> list[str]:
    """The hash id of every event of an EPCIS document, as the reference computes them: the bare
    CBV words of the whole document are expanded together."""
    events = event_list(document)
    prefixes = context_prefixes(document.get("@context"))
    expanded = _expanded_vocabulary(events, prefixes)
    return [hash_id(_pre_hash(event, prefixes, expanded)) for event in events]


def pre_hash_string(event: Mapping[str, Any], prefixes: Mapping[str, str] | None = None) -> str:
    namespaces = dict(prefixes or {})
    return _pre_hash(event, namespaces, _expanded_vocabulary([event], namespaces))


def hash_id(pre_hash: str, algorithm: str = "sha-256") -> str:
    digests = {"sha-256": hashlib.sha256, "sha3-256": hashlib.sha3_256, "sha-384": hashlib.sha384}
    try:
        digest = digests[algorithm](pre_hash.encode()).hexdigest()
    except KeyError:
        raise ValueError(f"unsupported hash algorithm {algorithm!r}") from None
    return f"ni:///{algorithm};{digest}?ver={HASH_VERSION}"


def event_list(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    body = document.get("epcisBody", {})
    if "eventList" in body:
        return list(body["eventList"])
    return [body["event"]]


def context_prefixes(context: Any) -> dict[str, str]:
    """CURIE prefixes declared by the objects of a JSON-LD ``@context`` list."""
    prefixes: dict[str, str] = {}
    if isinstance(context, list):
        for item in context:
            if isinstance(item, Mapping):
                prefixes.update({k: v for k, v in item.items() if isinstance(v, str)})
    return prefixes


# --- bare CBV words ---------------------------------------------------------------------------


def _expanded_vocabulary(
    events: Iterable[Mapping[str, Any]], prefixes: Mapping[str, str]
) -> frozenset[str]:
    """The CBV/GS1 web URIs a JSON-LD expansion of ``events`` would contain."""
    found: set[str] = set()
    for event in events:
        _collect_expanded(event, None, found, {**_STANDARD_PREFIXES, **prefixes})
    return frozenset(u for u in found if u.startswith(("https://ref.gs1.org/cbv", GS1_VOC)))


def _vocabulary_of(key: str, parent: str | None) -> str | None:
    if key in ("bizStep", "disposition"):
        return key
    if key == "type":
        return {
            "sourceList": "sourceOrDestinationType",
            "destinationList": "sourceOrDestinationType",
            "bizTransactionList": "bizTransactionType",
            "sensorReport": "sensorReportType",
        }.get(parent or "")
    return {"exception": "sensorException", "component": "component", "reason": "errorReason"}.get(
        key
    )


def _collect_expanded(
    value: Any, key: str | None, found: set[str], prefixes: Mapping[str, str]
) -> None:
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _collect_expanded_field(name, item, key, found, prefixes)
    elif isinstance(value, list):
        for item in value:
            _collect_expanded(item, key, found, prefixes)


def _collect_expanded_field(
    name: str, item: Any, parent: str | None, found: set[str], prefixes: Mapping[str, str]
) -> None:
    if isinstance(item, str):
        vocabulary = _vocabulary_of(name, parent)
        if vocabulary is not None:
            base, terms = _VOCABULARY[vocabulary]
            if item in terms:
                found.add(base + item)
                return
            head, _, tail = item.partition(":")
            if head in prefixes and not tail.startswith("//"):
                found.add(prefixes[head] + tail)
                return
        found.add(item)
    elif isinstance(item, list) and name in ("set", "unset"):
        for entry in item:
            _collect_expanded_field("disposition", entry, None, found, prefixes)
    else:
        _collect_expanded(item, name, found, prefixes)


def _replace_bare_words(value: Any, expanded: frozenset[str]) -> Any:
    if isinstance(value, str):
        matches = [u for u in expanded if u.endswith(("-" + value, "/" + value))]
        return matches[0] if len(matches) == 1 else value
    if isinstance(value, list):
        return [_replace_bare_words(item, expanded) for item in value]
    if isinstance(value, Mapping):
        return {key: _replace_bare_words(item, expanded) for key, item in value.items()}
    return value


# --- JSON to element tree -----------------------------------------------------------------------


def _pre_hash(
    event: Mapping[str, Any], prefixes: Mapping[str, str], expanded: frozenset[str]
) -> str:
    namespaces = {p: "{" + uri + "}" for p, uri in prefixes.items()}
    replaced = _replace_bare_words(event, expanded)
    root = _corrected(_element(replaced, namespaces))
    ordered = _ordered(root.children, PROPERTY_ORDER)
    leftovers = [
        child
        for child in root.children
        if isinstance(child, _Pair) or child.name not in IGNORED_FIELDS
    ]
    return f"eventType={root.name}{ordered}{_generic(leftovers) if leftovers else ''}"


def _qualified(text: str, namespaces: Mapping[str, str], is_value: bool = False) -> str:
    head, sep, tail = text.partition(":")
    if sep and head in namespaces:
        namespace = namespaces[head]
        return (namespace[1:-1] if is_value else namespace) + tail
    return text


def _scalar_text(value: Any, namespaces: Mapping[str, str]) -> str:
    """The reference's ``str()`` of a JSON scalar (``true`` is ``True``, ``null`` is ``None``)."""
    if isinstance(value, str):
        return _qualified(value, namespaces, is_value=True)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _element(value: Any, namespaces: dict[str, str]) -> _Element:
    if isinstance(value, list):
        return _Element("", "", [_element(item, namespaces) for item in value])
    if not isinstance(value, Mapping):
        return _Element("", _scalar_text(value, namespaces))
    node = _Element(str(value.get("type", "")), str(value.get("#text", "")))
    for key, item in value.items():
        if key in _IGNORED_KEYS:
            continue
        if key.startswith("@xmlns"):
            namespaces[key[7:]] = "{" + str(item) + "}"
            continue
        child = _element(item, namespaces)
        name = _qualified(key, namespaces)
        if isinstance(item, list):
            for entry in child.children:
                assert isinstance(entry, _Element)
                node.children.append(_Element(name, entry.value, entry.children))
        else:
            node.children.append(_Element(name, child.value, child.children))
    return node


def _corrected(node: _Element) -> _Element:
    """The XML binding's structure: list items named, ``childEPCs`` and quantities renamed."""
    children: list[_Element | _Pair] = []
    lists: dict[str, list[_Element | _Pair]] = {}
    child_epcs: list[_Element | _Pair] = []
    for child in node.children:
        assert isinstance(child, _Element)
        if child.name.endswith("List"):
            item = _Element(child.name[:-4], child.value, child.children)
            if child.name in _PAIRED_LISTS:
                first, second = item.children[0], item.children[1]
                assert isinstance(first, _Element) and isinstance(second, _Element)
                lists.setdefault(child.name, []).append(_Pair(first, second))
            else:
                lists.setdefault(child.name, []).append(item)
        elif child.name == "childEPCs":
            child_epcs.append(_Element("epc", child.value))
        else:
            children.append(child)
    children.extend(_Element(name, "", items) for name, items in lists.items())
    if child_epcs:
        children.append(_Element("childEPCs", "", child_epcs))
    fixed: list[_Element | _Pair] = []
    for child in children:
        assert isinstance(child, _Element)
        fixed.append(child if child.name in _PAIRED_LISTS else _corrected(child))
    return _renamed(_Element(node.name, node.value, fixed))


def _renamed(node: _Element) -> _Element:
    if node.name in ("inputEPC", "outputEPC"):
        node.name = "epc"
    elif node.name in ("inputQuantity", "outputQuantity", "childQuantity") or (
        node.name == "quantity" and node.children
    ):
        node.name = "quantityElement"
    return node


# --- element tree to pre-hash string --------------------------------------------------------


def _ordered(children: list[_Element | _Pair], order: Sequence[_Order]) -> str:
    """The ordered part; consumed leaves (and emptied parents) are removed from ``children``."""
    extensions = _user_extensions(children)
    by_name: dict[str, list[_Element]] = {}
    for child in children:
        if isinstance(child, _Element):
            by_name.setdefault(child.name, []).append(child)
    text = ""
    consumed: set[int] = set()
    for item in order:
        matching = by_name.get(item.name)
        if not matching:
            continue
        values = []
        for child in matching:
            rendered = _ordered_element(child, item.children)
            if rendered:
                values.append(rendered)
            if not child.children:
                consumed.add(id(child))
        values.sort()
        text += "".join(values)
    if consumed:
        children[:] = [c for c in children if id(c) not in consumed]
    if extensions:
        text += _generic(extensions)
    return text


def _user_extensions(children: list[_Element | _Pair]) -> list[_Element | _Pair]:
    """Namespaced children of a nested standard element (not of the event itself)."""
    if len(children) <= 1:
        return []
    names = [c.name for c in children if isinstance(c, _Element)]
    if any("eventTime" in n or "action" in n for n in names):
        return []
    found: list[_Element | _Pair] = [
        c for c in children if isinstance(c, _Element) and "{" in c.name and "/}" in c.name
    ]
    for child in found:
        children.remove(child)
    return found


def _ordered_element(child: _Element, order: Sequence[_Order]) -> str:
    nested = _ordered(child.children, order) if order else ""
    text = ""
    if child.value:
        text = child.value.strip()
        lowered = child.name.lower()
        text = (
            canonical_timestamp(text)
            if "time" in lowered and "offset" not in lowered
            else canonical_value(text)
        )
        if text:
            text = "=" + text
    return child.name + text + nested if text or nested else ""


def _generic(children: Sequence[_Element | _Pair]) -> str:
    values = []
    for child in children:
        if isinstance(child, _Pair):
            values.append(_generic([child.first, child.second]))
            continue
        text = child.value.strip()
        if text:
            text = "=" + canonical_value(text)
        values.append(child.name + text + _generic(child.children))
    if len(children) > 1 and not any(
        isinstance(c, _Element) and c.name in _PAIRED_ITEMS for c in children
    ):
        values.sort()
    return "".join(values)


# --- value canonicalisation -----------------------------------------------------------------

_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)


@lru_cache(maxsize=1 << 16)
def canonical_value(text: str) -> str:
    for urn, uri in _CBV_URNS:
        text = text.replace(urn, uri)
    text = canonical_number(text)
    normalised = normalise_gs1_uri(text)
    return normalised if normalised is not None else text


def canonical_number(text: str) -> str:
    """A number without trailing zeros or a leading '+' (as Python's float reads and writes it)."""
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if int(number) == number else str(number)


@lru_cache(maxsize=1 << 16)
def canonical_timestamp(text: str) -> str:
    """UTC, milliseconds (rounded half to even, as the reference does), ``Z``."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    microsecond = round(moment.microsecond, -3)
    moment = moment.replace(microsecond=0) + timedelta(microseconds=microsecond)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


# --- GS1 identifiers: EPC URNs and Digital Link URIs to constrained canonical DL URIs ---------

_URI_CHAR = (
    r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]"
    r"|[!')(*+,.0-9:;=A-Za-z_-])"
)
_CANONICAL = "https://id.gs1.org/"
_DL_CHAR = r"[\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]"


def _check_digit(digits: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def _encode_dl(text: str) -> str:
    for char, code in (("!", "%21"), ("(", "%28"), (")", "%29"), ("*", "%2A"), ("+", "%2B")):
        text = text.replace(char, code)
    return text.replace(",", "%2C").replace(":", "%3A")


def _prefix_alternatives(total: int, tail: str = r"\d") -> str:
    """Company prefix of 6..12 digits, a dot, and the rest of ``total`` digits."""
    return "(?:" + "|".join(rf"\d{{{n}}}\.{tail}{{{total - n}}}" for n in range(6, 13)) + ")"


_SGTIN = re.compile(rf"urn:epc:id:sgtin:(\d+)\.(\d+)\.({_URI_CHAR}{{1,20}})")
_SSCC = re.compile(rf"urn:epc:id:sscc:{_prefix_alternatives(17)}")
_SGLN = re.compile(rf"urn:epc:id:sgln:(\d+)\.(\d*)\.({_URI_CHAR}{{1,20}})")
_PGLN = re.compile(r"urn:epc:id:pgln:(\d+)\.(\d*)")
_GRAI = re.compile(rf"urn:epc:id:grai:(\d+)\.(\d*)\.({_URI_CHAR}{{1,16}})")
_GIAI = re.compile(rf"urn:epc:id:giai:(\d{{6,12}})\.({_URI_CHAR}+)")
_GDTI = re.compile(rf"urn:epc:id:gdti:(\d+)\.(\d*)\.({_URI_CHAR}{{1,20}})")
_GSRN = re.compile(r"urn:epc:id:(gsrnp?):(\d+)\.(\d+)")
_SGCN = re.compile(r"urn:epc:id:sgcn:(\d+)\.(\d*)\.(\d{1,12})")
_GSIN = re.compile(r"urn:epc:id:gsin:(\d+)\.(\d+)")
_GINC = re.compile(rf"urn:epc:id:ginc:(\d{{6,12}})\.({_URI_CHAR}+)")
_LGTIN = re.compile(rf"urn:epc:class:lgtin:(\d+)\.(\d+)\.({_URI_CHAR}{{1,20}})")
_IDPAT_SGTIN = re.compile(r"urn:epc:idpat:sgtin:(\d+)\.(\d+)\.\*")


def _gtin_from(company: str, item: str) -> str | None:
    if len(company) + len(item) != 13 or not 6 <= len(company) <= 12:
        return None
    raw = item[0] + company + item[1:]
    return raw + _check_digit(raw)


def _twelve(company: str, reference: str) -> str | None:
    if len(company) + len(reference) != 12 or not 6 <= len(company) <= 12:
        return None
    return company + reference + _check_digit(company + reference)


def _from_epc_urn(uri: str) -> str | None:
    if m := _SGTIN.fullmatch(uri):
        gtin = _gtin_from(m[1], m[2])
        return None if gtin is None else f"{_CANONICAL}01/{gtin}/21/{_encode_dl(m[3])}"
    if m := _SSCC.fullmatch(uri):
        company, reference = uri[16:].split(".")
        raw = reference[0] + company + reference[1:]
        return f"{_CANONICAL}00/{raw}{_check_digit(raw)}"
    if m := _SGLN.fullmatch(uri):
        gln = _twelve(m[1], m[2])
        if gln is None:
            return None
        tail = "" if m[3] == "0" else f"/254/{_encode_dl(m[3])}"
        return f"{_CANONICAL}414/{gln}{tail}"
    if m := _PGLN.fullmatch(uri):
        gln = _twelve(m[1], m[2])
        return None if gln is None else f"{_CANONICAL}417/{gln}"
    if m := _GRAI.fullmatch(uri):
        raw = "0" + m[1] + m[2]
        if len(raw) != 13:
            return None
        return f"{_CANONICAL}8003/{raw}{_check_digit(raw)}{_encode_dl(m[3])}"
    if m := _GIAI.fullmatch(uri):
        if len(m[1]) + len(m[2]) > 30:
            return None
        return f"{_CANONICAL}8004/{m[1]}{_encode_dl(m[2])}"
    if m := _GDTI.fullmatch(uri):
        gdti = _twelve(m[1], m[2])
        return None if gdti is None else f"{_CANONICAL}253/{gdti}{_encode_dl(m[3])}"
    if m := _GSRN.fullmatch(uri):
        raw = m[2] + m[3]
        if len(raw) != 17 or not 6 <= len(m[2]) <= 12:
            return None
        return f"{_CANONICAL}{'8017' if m[1] == 'gsrnp' else '8018'}/{raw}{_check_digit(raw)}"
    if m := _SGCN.fullmatch(uri):
        sgcn = _twelve(m[1], m[2])
        return None if sgcn is None else f"{_CANONICAL}255/{sgcn}{m[3]}"
    if m := _GSIN.fullmatch(uri):
        raw = m[1] + m[2]
        if len(raw) != 16 or not 6 <= len(m[1]) <= 12:
            return None
        return f"{_CANONICAL}402/{raw}{_check_digit(raw)}"
    if m := _GINC.fullmatch(uri):
        if len(m[1]) + len(m[2]) > 30:
            return None
        return f"{_CANONICAL}401/{m[1]}{_encode_dl(m[2])}"
    if m := _LGTIN.fullmatch(uri):
        gtin = _gtin_from(m[1], m[2])
        return None if gtin is None else f"{_CANONICAL}01/{gtin}/10/{_encode_dl(m[3])}"
    if m := _IDPAT_SGTIN.fullmatch(uri):
        gtin = _gtin_from(m[1], m[2])
        return None if gtin is None else f"{_CANONICAL}01/{gtin}"
    return None


_DL_SHAPE = re.compile(
    r"^https?:(//((([^/?#]*)@)?([^/?#:]*)(:([^/?#]*))?))?((([^?#]*)(/(01|gtin|8006|itip|8010|cpid"
    r"|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402|gsin|8003"
    r"|grai|8004|giai)/)(\d{4}[^/]+)(/[^/]+/[^/]+)?[/]?(\?([^?\n]*))?(#([^\n]*))?)|(/[A-Za-z_-]{10}$))"
)
_SHORT_NAMES = (
    ("/gtin/", "/01/"),
    ("/itip/", "/8006/"),
    ("/cpid/", "/8010/"),
    ("/gln/", "/414/"),
    ("/party/", "/417/"),
    ("/gsrnp/", "/8017/"),
    ("/gsrn/", "/8018/"),
    ("/gcn/", "/255/"),
    ("/sscc/", "/00/"),
    ("/gdti/", "/253/"),
    ("/ginc/", "/401/"),
    ("/gsin/", "/402/"),
    ("/grai/", "/8003/"),
    ("/giai/", "/8004/"),
    ("/cpv/", "/22/"),
    ("/lot/", "/10/"),
    ("/ser/", "/21/"),
)
_PRIMARY_KEYS = ("00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006")
_PRIMARY_KEYS_TAIL = ("8010", "8017", "8018")
_ON_CANONICAL_DOMAIN = re.compile(
    r"^https://id.gs1.org/(01|8006|8010|414|417|8017|8018|255|00|253|401|402|8003|8004)/"
    r"(\d{4}[^/]+)(/[^/]+/[^/]+)?[/]?(\?([^?\n]*))?(#([^\n]*))?"
)
_CPV_ONLY = re.compile(rf"https://id.gs1.org/(8006/\d{{18}}|01/\d{{14}})/22/({_DL_CHAR}{{0,20}})$")
_CPV_THEN = re.compile(
    rf"https://id.gs1.org/(8006/\d{{18}}|01/\d{{14}})/22/([\x2F]|{_DL_CHAR}){{0,20}}$"
)
_LOT_AND_SERIAL = re.compile(
    rf"https://id.gs1.org/(8006/\d{{18}}|01/\d{{14}})/10/({_DL_CHAR}{{0,20}})/21/({_DL_CHAR}{{0,20}})$"
)
_CONSTRAINED = re.compile(
    "https://id.gs1.org/(?:"
    + "|".join(
        (
            r"00/\d{18}",
            rf"01/\d{{14}}/21/{_DL_CHAR}{{0,20}}",
            rf"01/\d{{14}}/10/{_DL_CHAR}{{0,20}}",
            r"01/\d{14}",
            rf"01/\d{{14}}/235/{_DL_CHAR}{{0,28}}",
            rf"253/\d{{13}}{_DL_CHAR}{{0,17}}",
            r"255/\d{13}\d{0,12}",
            rf"401/{_DL_CHAR}{{0,30}}",
            r"402/\d{17}",
            r"414/\d{13}",
            rf"414/\d{{13}}/254/{_DL_CHAR}{{0,20}}",
            r"417/\d{13}",
            rf"8003/\d{{14}}{_DL_CHAR}{{0,16}}",
            rf"8004/{_DL_CHAR}{{0,30}}",
            rf"8006/\d{{18}}/21/{_DL_CHAR}{{0,20}}",
            rf"8006/\d{{18}}/10/{_DL_CHAR}{{0,20}}",
            r"8006/\d{18}",
            r"8010/[\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30}/8011/\d{0,12}",
            r"8010/[\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30}",
            r"8017/\d{18}",
            r"8018/\d{18}",
        )
    )
    + ")$"
)


def normalise_gs1_uri(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link URI of an EPC URN or DL URI, else None:
    on ``https://id.gs1.org``, no query string, only the finest level of identification (a serial
    drops the lot, the CPV is dropped)."""
    if "." not in uri:
        return None
    if uri.startswith("urn:epc:"):
        return _from_epc_urn(uri)
    if not _DL_SHAPE.match(uri):
        return None
    uri = uri.split("?", 1)[0]
    for short, code in _SHORT_NAMES:
        uri = uri.replace(short, code)
    if not _ON_CANONICAL_DOMAIN.match(uri):
        for key in (*_PRIMARY_KEYS, *_PRIMARY_KEYS_TAIL):
            at = uri.find(f"/{key}/")
            if at != -1:
                uri = _CANONICAL[:-1] + uri[at:]
                break
    uri = _padded_gtin(uri)
    after_cpv = uri[uri.find("/22/") + 4 :]
    if _CPV_ONLY.match(uri):
        uri = uri[: uri.find("/22/")] + after_cpv[after_cpv.find("/") : -1]
    if _CPV_THEN.match(uri):
        uri = uri[: uri.find("/22/")] + after_cpv[after_cpv.find("/") :]
    if _LOT_AND_SERIAL.match(uri):
        after_lot = uri[uri.find("/10/") + 4 :]
        uri = uri[: uri.find("/10/")] + after_lot[after_lot.find("/") :]
    return uri if _CONSTRAINED.match(uri) else None


def _padded_gtin(uri: str) -> str:
    if re.match(r"^https://id.gs1.org/01/\d{14}", uri):
        return uri
    for digits, padding in ((13, "0"), (12, "00"), (8, "000000")):
        if re.match(rf"^https://id.gs1.org/01/\d{{{digits}}}", uri):
            return uri.replace("/01/", "/01/" + padding)
    return uri
