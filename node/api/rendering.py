"""The HTML hook: how a passport becomes a page for a browser.

``create_app(..., page_renderer=...)`` takes any :class:`PageRenderer`; the default,
:func:`minimal_page`, is a plain server-rendered page (every value, its verification badge and its
proof link) until the real consumer pages plug in. A renderer receives the passport JSON of the
request's tier (the same dict the JSON representation serves) and a :class:`PageContext`, and
returns the whole HTML document. It must escape what it writes: values come from records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol


@dataclass(frozen=True)
class PageContext:
    path: str
    """The request's path (the Digital Link entry)."""
    tier: str
    linkset: str
    """Where the linkset of this entry is."""


class PageRenderer(Protocol):
    def __call__(self, passport: Mapping[str, Any], context: PageContext) -> str: ...


_BADGES = {
    "verified": "✔ verified",
    "pending": "… pending",
    "failed": "✘ failed",
    "unavailable": "? unavailable",
}


def minimal_page(passport: Mapping[str, Any], context: PageContext) -> str:
    product = passport.get("product") or {}
    title = escape(str(product.get("name") or passport.get("gtin") or "Product"))
    rows = []
    for aspect, values in passport.get("aspects", {}).items():
        for value in values:
            status = str(value["verification"]["status"])
            detail = escape(str(value["verification"]["detail"]))
            unit = f" {escape(str(value['unit']))}" if value.get("unit") else ""
            proof = escape(str(value["links"]["proof"]))
            rows.append(
                "<tr>"
                f"<td>{escape(aspect)}</td><td>{escape(str(value['label']))}</td>"
                f"<td>{escape(str(value['value']))}{unit}</td>"
                f'<td class="{escape(status)}" title="{detail}">'
                f"{escape(_BADGES.get(status, status))}</td>"
                f'<td><a href="{proof}">proof</a></td>'
                "</tr>"
            )
    identity = " · ".join(
        escape(f"{label} {passport[name]}")
        for label, name in (("GTIN", "gtin"), ("lot", "lot"), ("serial", "serial"))
        if passport.get(name)
    )
    issuer = passport.get("issuer") or {}
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        f'<link rel="linkset" type="application/linkset+json" href="{escape(context.linkset)}">'
        "</head><body>"
        f"<h1>{title}</h1><p>{identity}</p>"
        f"<p>Issued by {escape(str(issuer.get('name', '')))} · tier {escape(context.tier)}</p>"
        "<table><thead><tr><th>aspect</th><th>what</th><th>value</th><th>verification</th>"
        "<th>bundle</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )
