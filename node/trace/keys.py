"""How the trace names things: canonical product identifiers, equipment keys, and the keys of the
trace index.

Product, lot and item identifiers are GS1 Digital Link URIs on any domain; the trace compares them
in their canonical form (``https://id.gs1.org/01/…``), so a member writing its own resolver
domain and one writing GS1's meet. Anything else (a process step's name, a plain equipment id) is
compared as written.

**Equipment and its devices.** An equipment's key is its GIAI when it is a Digital Link asset URI
(``…/8004/{giai}``), else its identifier as written. A device belongs to an equipment when the
device id *is* the equipment's key or URI, or starts with the key and a slash
(``4012345CRYST-3/pid`` is a device of ``https://id.gs1.org/8004/4012345CRYST-3``). Measurements,
quarantined readings and rule firings are found on an equipment through its devices this way.
"""

from __future__ import annotations

from node.errors import IdentifierError
from node.oracles.digital_link import GIAI, GTIN, DigitalLink, parse

SUBJECT = "s:"
"""Anomalous records about a product, lot or item (failed inspections, out-of-spec results)."""
OUTPUT = "out:"
"""Genealogy records that made a product, lot or item."""
EQUIPMENT = "eq:"
"""Setpoints, measurements, quarantined readings and rule firings of an equipment."""
SUPPLIER = "sup:"
"""Rule firings about a supplier (a member address)."""
MAX_KEY_CHARS = 520


def digital_link(identifier: str) -> DigitalLink | None:
    try:
        return parse(identifier, domains=None)
    except IdentifierError:
        return None


def canonical(identifier: str) -> str:
    """The canonical Digital Link URI of a GS1 identifier; anything else as it is."""
    link = digital_link(identifier) if "://" in identifier else None
    return link.canonical_uri() if link is not None else identifier


def is_product(identifier: str) -> bool:
    link = digital_link(identifier) if "://" in identifier else None
    return link is not None and link.ai == GTIN


def lot_of(identifier: str) -> str | None:
    """The canonical lot of an item identified with its lot (``/01/…/10/L/21/S``), else None."""
    link = digital_link(identifier) if "://" in identifier else None
    if link is None or link.ai != GTIN or link.serial is None or link.lot is None:
        return None
    from node.oracles.digital_link import product

    return product(link.key, link.lot).canonical_uri()


def gtin_of(identifier: str) -> str | None:
    link = digital_link(identifier) if "://" in identifier else None
    return link.key if link is not None and link.ai == GTIN else None


def equipment_key(identifier: str) -> str:
    """An equipment's key: the GIAI of an asset URI, else the identifier as written."""
    if "://" in identifier:
        link = digital_link(identifier)
        if link is not None and link.ai == GIAI:
            return link.key
        return identifier
    return identifier


def device_equipment(device: str) -> str:
    """The key of the equipment a device belongs to (see the module docstring)."""
    if "://" in device:
        return equipment_key(device)
    return device.split("/", 1)[0]


def label(identifier: str) -> str:
    """A short name for people: ``lot CATH-7``, ``item 7Q2K…``, ``asset 4098765CRYST-3``."""
    from node.explorer.genealogy import identifier_label

    return identifier_label(identifier)[0] if "://" in identifier else identifier


def key(prefix: str, value: str) -> str:
    return (prefix + value)[:MAX_KEY_CHARS]
