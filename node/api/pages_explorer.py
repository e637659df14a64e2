"""The auditor's explorer pages (``/explorer``), for holders of an authority token.

Routes (all HTML unless said otherwise; every one but sign-in needs the session cookie):

- ``/explorer``, ``/explorer/blocks?before=N``: the latest blocks; ``/explorer/search?q=``: a
  block number, a block or transaction hash, or a batch id;
- ``/explorer/blocks/{number or hash}``: a block and its transactions;
- ``/explorer/tx/{hash}``: a transaction with its decoded call and events (raw when unknown);
- ``/explorer/members``: members and every oracle key they registered (active, revoked);
- ``/explorer/anchors``, ``/explorer/batches/{id}?offset=``: anchored batches, one with its records;
- ``/explorer/proof`` (GET form, POST a pasted or uploaded bundle): the verdict and every check
  with its reason; 200 when valid, 422 when not;
- ``/explorer/genealogy?id=&direction=upstream|downstream`` (and ``/explorer/genealogy.svg``):
  a product's genealogy drawn as a picture;
- ``/explorer/decisions``, ``/explorer/decisions/{id}`` (and ``/graph.svg``): the automated
  decisions, one with its decision path drawn, its inputs re-checked, its actions and the
  transactions that carried it;
- ``/explorer/login``, ``/explorer/logout``: see :mod:`node.api.pages_session`.

The data comes from :class:`node.explorer.Explorer` over the node's own chain connection and
store; nothing here writes to the chain.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from node.api.access import Tier
from node.api.pages_html import (
    SESSION_KEY,
    Html,
    PageError,
    SignInRequired,
    form_text,
    page_route,
    read_form,
)
from node.api.pages_session import Session, SessionKeeper, check_origin, sign_in_routes
from node.api.ratelimit import RateLimiter
from node.api.service import ApiService
from node.errors import NotFoundError
from node.explorer import REASONS, Explorer, GraphNode, ProofVerdict, render_svg
from node.explorer.graph import Graph

__all__ = ["explorer_router"]

T = TypeVar("T")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ECHO_LIMIT = 64 * 1024
"""A pasted bundle longer than this is not written back into the form."""
_GRAPH_KINDS_WITH_GENEALOGY = frozenset({"product", "output", "material_lot", "parent_lot"})


def explorer_router(
    service: ApiService,
    html: Html,
    limiter: RateLimiter,
    client: Callable[[Request], str],
) -> APIRouter:
    settings = service.settings
    keeper = SessionKeeper(
        "explorer",
        "/explorer",
        service.tokens,
        Tier.AUTHORITY,
        settings.api.session_ttl_s,
        https=(settings.api.public_base_url or "").startswith("https://"),
    )
    router = APIRouter(
        prefix="/explorer", route_class=page_route(html, "explorer"), include_in_schema=False
    )
    sign_in_routes(
        router,
        keeper,
        html,
        limiter,
        client,
        settings.api.public_base_url,
        "The explorer shows the consortium's chain as this member's node sees it: blocks, "
        "transactions, members, anchors, proofs and the graphs of products and automated "
        "decisions. It needs an authority token.",
    )
    opened: list[Explorer] = []
    open_lock = threading.Lock()

    def explorer() -> Explorer:
        """The node's explorer (opened on first use, in a worker thread)."""
        with open_lock:
            if not opened:
                opened.append(Explorer.for_node(service.state().node))
            return opened[0]

    async def read(call: Callable[[Explorer], T]) -> T:
        return await run_in_threadpool(lambda: call(explorer()))

    def signed_in(request: Request) -> Session:
        session = keeper.session(request)
        if session is None:
            raise SignInRequired("explorer")
        request.scope[SESSION_KEY] = session
        return session

    def page(
        request: Request, template: str, session: Session, status: int = 200, **values: Any
    ) -> Response:
        context = {"area": "explorer", "session": session, "path": request.url.path, **values}
        return html.page(template, context, status)

    # -- blocks and transactions ---------------------------------------------------------------

    @router.get("")
    @router.get("/blocks")
    async def blocks(
        request: Request, before: Annotated[int | None, Query(ge=1, le=2**63)] = None
    ) -> Response:
        session = signed_in(request)
        listed = await read(lambda e: e.latest_blocks(20, before))
        older = listed[-1].number if listed and listed[-1].number > 0 else None
        return page(
            request, "explorer/blocks.html", session, title="Blocks", blocks=listed, older=older
        )

    @router.get("/search")
    async def search(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> Response:
        signed_in(request)
        text = q.strip()
        if text.isdigit():
            return RedirectResponse(f"/explorer/blocks/{int(text)}", status_code=303)
        if _HASH.match(text):
            if await read(lambda e: e.transaction(text)) is not None:
                return RedirectResponse(f"/explorer/tx/{text.lower()}", status_code=303)
            if await read(lambda e: e.block(text)) is not None:
                return RedirectResponse(f"/explorer/blocks/{text.lower()}", status_code=303)
            if await read(lambda e: e.batch(text, 0, 1)) is not None:
                return RedirectResponse(f"/explorer/batches/{text.lower()}", status_code=303)
        raise NotFoundError(
            f"nothing found for {text[:80]!r}: give a block number, a block or transaction "
            "hash, or a batch id"
        )

    @router.get("/blocks/{block}")
    async def block(request: Request, block: Annotated[str, Path(max_length=80)]) -> Response:
        session = signed_in(request)
        detail = await read(lambda e: e.block(block))
        if detail is None:
            raise NotFoundError(f"no block {block[:80]!r} on this chain")
        return page(
            request,
            "explorer/block.html",
            session,
            title=f"Block {detail.block.number}",
            detail=detail,
        )

    @router.get("/tx/{tx_hash}")
    async def transaction(
        request: Request, tx_hash: Annotated[str, Path(max_length=80)]
    ) -> Response:
        session = signed_in(request)
        detail = await read(lambda e: e.transaction(tx_hash))
        if detail is None:
            raise NotFoundError(f"no transaction {tx_hash[:80]!r} on this chain")
        return page(
            request,
            "explorer/tx.html",
            session,
            title=f"Transaction {detail.summary.hash[:10]}…",
            tx=detail,
            value_text=value_text,
        )

    # -- members and anchors -------------------------------------------------------------------

    @router.get("/members")
    async def members(request: Request) -> Response:
        session = signed_in(request)
        listed = await read(lambda e: e.members())
        return page(request, "explorer/members.html", session, title="Members", members=listed)

    @router.get("/anchors")
    async def anchors(
        request: Request, member: Annotated[str | None, Query(max_length=42)] = None
    ) -> Response:
        session = signed_in(request)
        listed = await read(lambda e: e.anchors(member))
        names = await read(_names)
        return page(
            request,
            "explorer/anchors.html",
            session,
            title="Anchors",
            anchors=listed,
            names=names,
            member=member,
        )

    @router.get("/batches/{batch_id}")
    async def batch(
        request: Request,
        batch_id: Annotated[str, Path(max_length=80)],
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> Response:
        session = signed_in(request)
        view = await read(lambda e: e.batch(batch_id, offset, 100))
        if view is None:
            raise NotFoundError(f"no batch {batch_id[:80]!r} is anchored or kept here")
        names = await read(_names)
        return page(
            request,
            "explorer/batch.html",
            session,
            title=f"Batch {view.batch_id[:10]}…",
            batch=view,
            names=names,
            pretty=pretty,
        )

    # -- the proof checker ---------------------------------------------------------------------

    @router.get("/proof")
    async def proof_form(request: Request) -> Response:
        session = signed_in(request)
        return page(
            request, "explorer/proof.html", session, title="Proof checker", verdict=None, text=""
        )

    @router.post("/proof")
    async def proof_check(request: Request) -> Response:
        session = signed_in(request)
        check_origin(request, settings.api.public_base_url)
        fields = await read_form(request, settings.api.max_upload_bytes)
        try:
            keeper.check_csrf(session, form_text(fields, "csrf", 200))
            pasted = form_text(fields, "bundle", settings.api.max_upload_bytes)
            upload = fields.get("file")
            offline = form_text(fields, "offline", 10) == "on"
            data: str | bytes = pasted
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                if not data:
                    raise PageError(422, "Empty file", "the uploaded file is empty")
            elif not pasted.strip():
                raise PageError(
                    422, "No bundle", "paste a proof or attestation bundle, or choose its file"
                )
        finally:
            await fields.close()
        verdict: ProofVerdict = await read(lambda e: e.check_proof(data, offline=offline))
        echo = pasted if len(pasted) <= _ECHO_LIMIT else ""
        return page(
            request,
            "explorer/proof.html",
            session,
            200 if verdict.valid else 422,
            title="Proof checker: " + ("valid" if verdict.valid else "invalid"),
            verdict=verdict,
            reasons=REASONS,
            text=echo,
            offline=offline,
            facts=[(k, value_text(v)) for k, v in verdict.facts.items()],
        )

    # -- graphs ----------------------------------------------------------------------------------

    def genealogy_link(node: GraphNode) -> str | None:
        if node.kind in _GRAPH_KINDS_WITH_GENEALOGY and ":" in node.id:
            return "/explorer/genealogy?id=" + _quote(node.id)
        return None

    async def genealogy_graph(identifier: str, direction: str) -> Graph:
        graph = await read(lambda e: e.genealogy(identifier, downstream=direction == "downstream"))
        root = graph.node(identifier)
        if len(graph.nodes) <= 1 and (root is None or not root.data.get("record_ids")):
            raise NotFoundError(f"no genealogy record names {identifier[:200]!r}")
        return graph

    @router.get("/genealogy")
    async def genealogy(
        request: Request,
        identifier: Annotated[str, Query(alias="id", max_length=2000)] = "",
        direction: Literal["upstream", "downstream"] = "upstream",
    ) -> Response:
        session = signed_in(request)
        graph = None
        svg = None
        if identifier.strip():
            graph = await genealogy_graph(identifier.strip(), direction)
            svg = render_svg(graph, genealogy_link)
        return page(
            request,
            "explorer/genealogy.html",
            session,
            title=graph.title if graph else "Genealogy",
            identifier=identifier.strip(),
            direction=direction,
            graph=graph,
            svg=svg,
            quote=_quote,
        )

    @router.get("/genealogy.svg")
    async def genealogy_svg(
        request: Request,
        identifier: Annotated[str, Query(alias="id", max_length=2000)],
        direction: Literal["upstream", "downstream"] = "upstream",
    ) -> Response:
        signed_in(request)
        graph = await genealogy_graph(identifier.strip(), direction)
        return _svg_response(render_svg(graph, genealogy_link))

    def decision_link(node: GraphNode) -> str | None:
        tx_hash = node.data.get("tx_hash")
        if node.kind == "transaction" and isinstance(tx_hash, str):
            return f"/explorer/tx/{_quote(tx_hash)}"
        return None

    @router.get("/decisions")
    async def decisions(request: Request) -> Response:
        session = signed_in(request)
        listed = await read(lambda e: e.decisions(200))
        return page(
            request, "explorer/decisions.html", session, title="Decisions", decisions=listed
        )

    async def decision_path(decision_id: str) -> Any:
        path = await read(lambda e: e.decision(decision_id))
        if path is None:
            raise NotFoundError(f"no decision record {decision_id[:80]!r} in this node's store")
        return path

    @router.get("/decisions/{decision_id}")
    async def decision(
        request: Request, decision_id: Annotated[str, Path(max_length=80)]
    ) -> Response:
        session = signed_in(request)
        path = await decision_path(decision_id)
        return page(
            request,
            "explorer/decision.html",
            session,
            title=path.graph.title,
            path=path,
            svg=render_svg(path.graph, decision_link),
            pretty=pretty,
            value_text=value_text,
        )

    @router.get("/decisions/{decision_id}/graph.svg")
    async def decision_svg(
        request: Request, decision_id: Annotated[str, Path(max_length=80)]
    ) -> Response:
        signed_in(request)
        path = await decision_path(decision_id)
        return _svg_response(render_svg(path.graph, decision_link))

    return router


def _names(explorer: Explorer) -> dict[str, str]:
    return {m.address.lower(): m.name for m in explorer.members()}


def _svg_response(svg: str) -> Response:
    return Response(
        svg,
        media_type="image/svg+xml",
        headers={"Content-Disposition": "inline", "Cache-Control": "no-store"},
    )


def _quote(text: str) -> str:
    return quote(text, safe="")


def value_text(value: Any) -> str:
    """A decoded ABI or JSON value for a table cell."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
