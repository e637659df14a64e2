"""``create_app``: the verifier API of one member's node, built from its settings alone.

Routes:

- ``GET /01/{gtin}``, ``/01/{gtin}/10/{lot}``, ``/01/{gtin}/10/{lot}/21/{serial}``,
  ``/01/{gtin}/21/{serial}``: the GS1 Digital Link resolver (HTML, passport JSON, or linkset);
- ``GET /api/v1/records/{id}/proof`` | ``/attestation`` | ``/blobs/{field}``: a value's bundles;
- ``POST /api/v1/verify``: the proof checker (a proof or attestation bundle in, a verdict out);
- ``GET /api/v1/health``, ``GET /.well-known/gs1resolver``;
- ``POST /api/v1/trace/links`` | ``/anomalies``: this member's part of another member's trace
  (:mod:`node.api.trace_routes`).

Every error is ``application/problem+json`` (``node.api.problems``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from node.api.access import Tier
from node.api.catalogue import ProductKey
from node.api.linkset import link_header, linkset
from node.api.models import Health, Linkset, PassportModel, ResolverDescription, Verdict
from node.api.negotiation import (
    HTML_MEDIA_TYPE,
    LINKSET_MEDIA_TYPE,
    Representation,
    negotiate,
)
from node.api.pages import install_pages
from node.api.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers, problem_responses
from node.api.rendering import PageContext, PageRenderer
from node.api.service import ApiService, NodeFactory, UpstreamFactory
from node.api.trace_routes import install_trace_routes
from node.errors import IdentifierError, NotFoundError
from node.oracles.digital_link import GTIN, parse
from node.settings import Settings

_PARSE_DOMAIN = "https://resolver.invalid"
_bearer = HTTPBearer(auto_error=False, description="A legitimate-interest or authority token.")
TierQuery = Annotated[
    Literal["public", "legitimate_interest", "authority"] | None,
    Query(description="The tier to serve (default: the highest the token grants)."),
]
LinkTypeQuery = Annotated[
    str | None,
    Query(
        alias="linkType",
        max_length=200,
        description="`all`: the linkset of this entry (RFC 9264). Other link types are answered "
        "with the default link (the passport).",
    ),
]
AuthHeader = Annotated[str | None, Header(include_in_schema=False)]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]

Gtin = Annotated[
    str,
    Path(description="GTIN-8, -12, -13 or -14 with its check digit.", examples=["09506000134352"]),
]
Lot = Annotated[str, Path(description="Batch/lot (AI 10).", examples=["L42"])]
Serial = Annotated[
    str,
    Path(
        description="Serial (AI 21): 16-20 random base-32 characters.",
        examples=["7Q2K9D4M8X1C5V3B"],
    ),
]
RecordId = Annotated[
    str, Path(description="A record id (0x + 64 hex digits).", examples=["0x" + "00" * 32])
]

_RESOLVER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The passport: JSON for programs, an HTML page for browsers "
        "(Accept: text/html), or the linkset (`?linkType=all` or Accept: "
        "application/linkset+json).",
        "content": {
            HTML_MEDIA_TYPE: {"schema": {"type": "string"}},
            LINKSET_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Linkset"}},
        },
        "headers": {
            "Link": {"description": "The linkset of this entry.", "schema": {"type": "string"}}
        },
    },
    303: {
        "description": "The serial (or lot) is not known, a less specific entry is: see Location.",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    **problem_responses(400, 401, 403, 404, 406, 429, 503),
}


def create_app(
    settings: Settings,
    node_factory: NodeFactory,
    *,
    page_renderer: PageRenderer | None = None,
    upstream_factory: UpstreamFactory | None = None,
) -> FastAPI:
    """The API of the node ``node_factory`` opens (on first use), configured by ``settings``.

    ``page_renderer`` turns a passport into the HTML page browsers get (default: the consumer
    page, :class:`node.api.pages_consumer.ConsumerPage`); ``upstream_factory`` gives the source
    of other members' parts (default: their nodes over HTTP, see :mod:`node.api.peers`). The
    explorer (``/explorer``) and the supplier portal (``/portal``) are mounted too
    (:mod:`node.api.pages`).
    """
    service = ApiService(settings, node_factory, upstream_factory)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    async def limit(request: Request) -> None:
        service.limiter.request(client_of(request, settings))

    app = FastAPI(
        title=f"qnode verifier API: {settings.member.name}",
        version="1",
        description="GS1 Digital Link resolver and verified product passports of a consortium "
        "member's node. Every value carries its verification status and a link to its "
        "offline-checkable proof bundle. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        dependencies=[Depends(limit)],
    )
    app.state.qnode = service
    install_problem_handlers(app)
    consumer_page = install_pages(app, service)
    install_trace_routes(app, service)
    render = page_renderer or consumer_page

    async def resolve(
        request: Request,
        authorization: str | None,
        accept: str | None,
        tier_name: str | None,
        link_type: str | None,
    ) -> Response:
        client = client_of(request, settings)
        link = _request_link(request)
        tier = service.tokens.tier_for(authorization, tier_name)
        representation = negotiate(accept, link_type)
        service.limiter.check_misses(client)
        if not service.ready:
            await run_in_threadpool(service.refresh)
        key = ProductKey.of(link)
        assert key is not None  # the routes are all /01/
        found = service.lookup(key)
        path = key.link().uri("")
        if found.key is None:
            service.limiter.miss(client)
            if found.redirect is not None:
                target = found.redirect.link().uri("")
                query = request.url.query
                location = service.base + target + (f"?{query}" if query else "")
                return Response(
                    status_code=303,
                    headers={
                        "Location": location,
                        "Link": link_header(service.base + target),
                        "Vary": "Accept, Authorization",
                    },
                )
            raise NotFoundError(f"nothing is known under {path}")
        headers = {"Link": link_header(service.base + path), "Vary": "Accept, Authorization"}
        if representation is Representation.LINKSET:
            parent = key.parent()
            if parent is not None and service.lookup(parent).key is None:
                parent = None
            document = linkset(key, settings.api.resolver_domain, service.base, parent)
            return Response(orjson.dumps(document), media_type=LINKSET_MEDIA_TYPE, headers=headers)
        if representation is Representation.HTML:
            page = service.cached(key, "html", tier)
            if page is None:
                document = await run_in_threadpool(service.passport_document, key, tier)
                context = PageContext(path, tier.label, service.base + path + "?linkType=all")
                page = render(document, context).encode()
                service.store_rendered(key, "html", tier, page)
            return Response(page, media_type="text/html; charset=utf-8", headers=headers)
        cached = service.cached(key, "json", tier)
        if cached is None:
            cached = await run_in_threadpool(service.passport_bytes, key, tier)
        return Response(cached, media_type="application/json", headers=headers)

    common: dict[str, Any] = {
        "response_model": PassportModel,
        "responses": _RESOLVER_RESPONSES,
        "tags": ["resolver"],
        "dependencies": [Security(_bearer)],
    }

    @app.get("/01/{gtin}", summary="A product class (GTIN)", **common)
    async def product_class(
        request: Request,
        gtin: Gtin,
        tier: TierQuery = None,
        link_type: LinkTypeQuery = None,
        authorization: AuthHeader = None,
        accept: AcceptHeader = None,
    ) -> Response:
        return await resolve(request, authorization, accept, tier, link_type)

    @app.get("/01/{gtin}/10/{lot}", summary="A lot of a product", **common)
    async def product_lot(
        request: Request,
        gtin: Gtin,
        lot: Lot,
        tier: TierQuery = None,
        link_type: LinkTypeQuery = None,
        authorization: AuthHeader = None,
        accept: AcceptHeader = None,
    ) -> Response:
        return await resolve(request, authorization, accept, tier, link_type)

    @app.get("/01/{gtin}/10/{lot}/21/{serial}", summary="A serialised item of a lot", **common)
    async def product_item(
        request: Request,
        gtin: Gtin,
        lot: Lot,
        serial: Serial,
        tier: TierQuery = None,
        link_type: LinkTypeQuery = None,
        authorization: AuthHeader = None,
        accept: AcceptHeader = None,
    ) -> Response:
        return await resolve(request, authorization, accept, tier, link_type)

    @app.get("/01/{gtin}/21/{serial}", summary="A serialised item (GTIN + serial)", **common)
    async def product_serial(
        request: Request,
        gtin: Gtin,
        serial: Serial,
        tier: TierQuery = None,
        link_type: LinkTypeQuery = None,
        authorization: AuthHeader = None,
        accept: AcceptHeader = None,
    ) -> Response:
        return await resolve(request, authorization, accept, tier, link_type)

    @app.get("/01/{gtin}/{qualifiers:path}", include_in_schema=False)
    async def other_forms(
        request: Request,
        tier: TierQuery = None,
        link_type: LinkTypeQuery = None,
        authorization: AuthHeader = None,
        accept: AcceptHeader = None,
    ) -> Response:
        """Any other path under /01/: an encoded '/' in a value, a CPV, or a malformed or
        out-of-order one (400, with the rule)."""
        return await resolve(request, authorization, accept, tier, link_type)

    record_common: dict[str, Any] = {
        "tags": ["bundles"],
        "dependencies": [Security(_bearer)],
        "responses": problem_responses(400, 401, 403, 404, 429, 503),
    }

    async def _record(
        request: Request, record_id: str, authorization: str | None, tier_name: str | None
    ) -> Any:
        client = client_of(request, settings)
        tier = service.tokens.tier_for(authorization, tier_name)
        service.limiter.check_misses(client)
        try:
            return await run_in_threadpool(service.served_record, record_id, tier)
        except NotFoundError:
            service.limiter.miss(client)
            raise

    @app.get(
        "/api/v1/records/{record_id}/proof",
        summary="A value's Merkle proof bundle (offline-checkable; qnode-proof-v1)",
        response_class=Response,
        openapi_extra={
            "responses": {
                "200": {
                    "description": "The proof bundle.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            }
        },
        **record_common,
    )
    async def record_proof(
        request: Request,
        record_id: RecordId,
        tier: TierQuery = None,
        authorization: AuthHeader = None,
    ) -> Response:
        record = await _record(request, record_id, authorization, tier)
        bundle = await run_in_threadpool(service.proof_bundle, record)
        return Response(orjson.dumps(bundle), media_type="application/json")

    @app.get(
        "/api/v1/records/{record_id}/attestation",
        summary="A critical value's EIP-712 attestation bundle",
        response_class=Response,
        openapi_extra={
            "responses": {
                "200": {
                    "description": "The attestation bundle.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            }
        },
        **record_common,
    )
    async def record_attestation(
        request: Request,
        record_id: RecordId,
        tier: TierQuery = None,
        authorization: AuthHeader = None,
    ) -> Response:
        record = await _record(request, record_id, authorization, tier)
        bundle = await run_in_threadpool(service.attestation_bundle, record)
        return Response(orjson.dumps(bundle), media_type="application/json")

    @app.get(
        "/api/v1/records/{record_id}/blobs/{name}",
        summary="A blob a value refers to (a curve, a report), checked against its SHA-256",
        response_class=Response,
        openapi_extra={
            "responses": {
                "200": {
                    "description": "The blob's bytes.",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
            }
        },
        **record_common,
    )
    async def record_blob(
        request: Request,
        record_id: RecordId,
        name: Annotated[str, Path(max_length=100, examples=["curve_blob"])],
        tier: TierQuery = None,
        authorization: AuthHeader = None,
    ) -> Response:
        record = await _record(request, record_id, authorization, tier)
        data = await run_in_threadpool(service.blob, record, name)
        return Response(data, media_type="application/octet-stream")

    @app.post(
        "/api/v1/verify",
        summary="Check a proof or attestation bundle offline and against the chain",
        response_model=Verdict,
        tags=["bundles"],
        responses=problem_responses(400, 422, 429, 503),
    )
    async def verify(
        bundle: Annotated[
            dict[str, Any],
            Body(
                description="A qnode-proof-v1 or qnode-attestation/1 bundle, as served.",
                examples=[{"format": "qnode-proof-v1"}],
            ),
        ],
    ) -> Response:
        verdict = await run_in_threadpool(service.verify, bundle)
        return Response(orjson.dumps(verdict), media_type="application/json")

    @app.get(
        "/api/v1/health", response_model=Health, tags=["meta"], responses=problem_responses(429)
    )
    async def health() -> Response:
        return Response(
            orjson.dumps({"status": "ok", "member": settings.member.name}),
            media_type="application/json",
        )

    @app.get(
        "/.well-known/gs1resolver",
        response_model=ResolverDescription,
        tags=["meta"],
        responses=problem_responses(429),
    )
    async def resolver_description() -> Response:
        body = {
            "name": f"{settings.member.name} (qnode)",
            "resolverRoot": settings.api.resolver_domain,
            "supportedPrimaryKeys": [GTIN],
            "supportedLinkType": [
                {"namespace": "https://ref.gs1.org/voc/", "prefix": "gs1:", "profile": ""}
            ],
            "linkTypeDefaultCanBeLinkset": True,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    _ = (Linkset, PROBLEM_MEDIA_TYPE)  # referenced from the OpenAPI responses
    app.openapi_schema = None
    _register_extra_schemas(app)
    return app


def _register_extra_schemas(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Linkset,):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components.setdefault(model.__name__, model_schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def client_of(request: Request, settings: Settings) -> str:
    if settings.api.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client is not None else "unknown"


def _request_link(request: Request) -> Any:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    try:
        link = parse(_PARSE_DOMAIN + path, domains=(_PARSE_DOMAIN,))
    except IdentifierError as exc:
        raise IdentifierError(str(exc).replace(_PARSE_DOMAIN, "")) from exc
    return link


__all__ = ["Tier", "create_app"]
