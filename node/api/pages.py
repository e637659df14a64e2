"""The pages of a member's node, mounted on its API by :func:`install_pages`:

- the consumer page (:class:`~node.api.pages_consumer.ConsumerPage`), the default HTML of the
  resolver's passports;
- the auditor's explorer under ``/explorer`` (:mod:`node.api.pages_explorer`);
- the supplier portal under ``/portal`` (:mod:`node.api.pages_portal`);
- the resilience dashboard, ``/explorer/resilience`` and its JSON ``/api/v1/resilience``
  (:mod:`node.api.pages_resilience`; the JSON route is in the OpenAPI document).

They are server-rendered HTML that works without JavaScript (the pages hold none: their
Content-Security-Policy forbids it); they are not part of the OpenAPI document, which describes
the JSON API only.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from node.api.pages_consumer import ConsumerPage
from node.api.pages_explorer import explorer_router
from node.api.pages_html import Html
from node.api.pages_portal import portal_router
from node.api.pages_resilience import resilience_routers
from node.api.rendering import PageRenderer
from node.api.service import ApiService

__all__ = ["install_pages"]


def install_pages(app: FastAPI, service: ApiService) -> PageRenderer:
    """Mount the explorer and the portal on ``app``; return the consumer page renderer."""
    from node.api.app import client_of  # the app module imports this one

    settings = service.settings
    html = Html()

    def client(request: Request) -> str:
        return client_of(request, settings)

    app.include_router(explorer_router(service, html, service.limiter, client))
    app.include_router(portal_router(service, html, service.limiter, client))
    for router in resilience_routers(service, html):
        app.include_router(router)
    return ConsumerPage(
        html,
        blobs=lambda: service.state().store.blobs.get,
        own=lambda: service.state().address,
    )
