"""Content negotiation of the resolver: an HTML page, the passport as JSON, or a linkset.

``?linkType=all`` (GS1-Conformant resolver) or an Accept header preferring
``application/linkset+json`` selects the RFC 9264 linkset. Otherwise the Accept header's
q-values choose between ``text/html`` (browsers) and ``application/json`` (programs; also for
``*/*`` and no Accept header at all). Another ``linkType`` (``gs1:pip``, ``gs1:defaultLink``, or
one this resolver has no link for) is answered with the default: the passport, negotiated.
"""

from __future__ import annotations

from enum import StrEnum

from node.errors import NotAcceptableError

LINKSET_MEDIA_TYPE = "application/linkset+json"
HTML_MEDIA_TYPE = "text/html"
JSON_MEDIA_TYPE = "application/json"


class Representation(StrEnum):
    HTML = "html"
    JSON = "json"
    LINKSET = "linkset"


_OFFERS = (
    (JSON_MEDIA_TYPE, Representation.JSON),
    (HTML_MEDIA_TYPE, Representation.HTML),
    (LINKSET_MEDIA_TYPE, Representation.LINKSET),
)
_ALIASES = {"application/xhtml+xml": HTML_MEDIA_TYPE, "application/ld+json": JSON_MEDIA_TYPE}


def negotiate(accept: str | None, link_type: str | None) -> Representation:
    if link_type is not None and link_type.strip().lower() in ("all", "gs1:all"):
        return Representation.LINKSET
    if accept is None or not accept.strip():
        return Representation.JSON
    ranges = _parse(accept)
    best: tuple[float, int, int] | None = None
    chosen: Representation | None = None
    for offer_index, (media_type, representation) in enumerate(_OFFERS):
        quality, specificity = _quality(media_type, ranges)
        if quality <= 0:
            continue
        # highest q first, then the most specific matching range, then our order of preference
        key = (quality, specificity, -offer_index)
        if best is None or key > best:
            best, chosen = key, representation
    if chosen is None:
        raise NotAcceptableError(
            f"cannot produce any of {accept[:200]!r}; this resolver serves "
            f"{JSON_MEDIA_TYPE}, {HTML_MEDIA_TYPE} and {LINKSET_MEDIA_TYPE}"
        )
    return chosen


def _parse(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(",")[:32]:
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media or "/" not in media:
            continue
        media = _ALIASES.get(media, media)
        quality = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The q of the most specific range matching ``media_type``, and that specificity."""
    kind = media_type.split("/")[0]
    found: tuple[float, int] = (0.0, -1)
    for media, quality in ranges:
        if media == media_type:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > found[1]:
            found = (quality, specificity)
    return found
