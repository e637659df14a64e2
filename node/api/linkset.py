"""The RFC 9264 linkset of a Digital Link entry (``?linkType=all``), as a GS1-Conformant resolver
serves it: one context object whose ``anchor`` is the entry's URI on the member's resolver domain,
link relation types as keys (GS1 Web Vocabulary types as full URIs, IANA-registered ones by
name), each a list of target objects with ``href`` and, here, ``type``, ``title`` and
``hreflang``.
"""

from __future__ import annotations

from typing import Any

from node.api.catalogue import ProductKey

GS1_VOC = "https://ref.gs1.org/voc/"
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"


def linkset(key: ProductKey, domain: str, base: str, parent: ProductKey | None) -> dict[str, Any]:
    """``domain``: the resolver domain of the anchor; ``base``: where this API is reached."""
    link = key.link()
    path = link.uri("")
    here = base + path
    page = {"href": here, "type": "text/html", "title": "Product passport", "hreflang": ["en"]}
    data = {
        "href": here,
        "type": "application/json",
        "title": "Product passport (JSON, with verification status per value)",
        "hreflang": ["en"],
    }
    context: dict[str, Any] = {
        "anchor": link.uri(domain),
        GS1_VOC + "defaultLink": [page],
        GS1_VOC + "pip": [page],
        GS1_VOC + "traceability": [{**data, "title": "Supply chain and genealogy"}],
        GS1_VOC + "sustainabilityInfo": [{**data, "title": "Carbon footprint"}],
        GS1_VOC + "certificationInfo": [{**data, "title": "Inspection and lab results"}],
        GS1_VOC + "verificationService": [
            {
                "href": base + "/api/v1/verify",
                "type": "application/json",
                "title": "Proof checker: POST a proof or attestation bundle",
            }
        ],
        "describedby": [data],
    }
    if parent is not None:
        context["up"] = [{"href": base + parent.link().uri(""), "title": f"The {parent.level}"}]
    return {"linkset": [context]}


def link_header(path: str) -> str:
    return f'<{path}?linkType=all>; rel="linkset"; type="application/linkset+json"'
