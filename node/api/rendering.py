"""The HTML hook: how a passport becomes a page for a browser.

``create_app(..., page_renderer=...)`` takes any :class:`PageRenderer`; the default is the consumer
page (node/api/pages_consumer.py). A renderer receives the passport JSON of the
request's tier (the same dict the JSON representation serves) and a :class:`PageContext`, and
returns the whole HTML document. It must escape what it writes: values come from records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
