"""The trace routes of the verifier API: what this member serves to another member's trace.

- ``POST /api/v1/trace/links``: the genealogy records of products or lots and of their inputs, as
  far as this member's store goes, each with its proof bundle (``qnode-trace-links/1``);
- ``POST /api/v1/trace/anomalies``: the anomalies of products or lots, of equipment within a time
  window (parameter drifts with their evidence, quarantined readings, rule firings) and of
  suppliers within a window (rule firings), each record with its proof bundle and, for critical
  records, its EIP-712 attestation (``qnode-trace-anomalies/1``).

Both need a bearer token of the legitimate-interest tier or above (401 without one, 403 for a
public one); record types above the token's tier are left out and counted (``withheld``). The
answers are built by :class:`node.trace.part.PartReader` from the member's store; the asking node
verifies every record against the chain itself (:mod:`node.trace.tracer`).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, FastAPI, Header, Query, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from node.api.access import Tier
from node.api.problems import problem_responses
from node.api.service import ApiService
from node.errors import CredentialsError, TierError
from node.trace.index import TraceIndex
from node.trace.part import (
    MAX_DEPTH,
    MAX_IDS,
    MIN_TIER,
    AnomalyQuery,
    PartReader,
    Window,
)

__all__ = ["install_trace_routes"]

_bearer = HTTPBearer(auto_error=False, description="A legitimate-interest or authority token.")
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Timestamp = Annotated[int, Field(ge=0, le=2**62, description="Microseconds since the epoch.")]
TierQuery = Annotated[
    Literal["legitimate_interest", "authority"] | None,
    Query(description="The tier to serve (default: the highest the token grants)."),
]
AuthHeader = Annotated[str | None, Header(include_in_schema=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinksRequest(_Model):
    ids: list[Identifier] = Field(
        min_length=1,
        max_length=MAX_IDS,
        description="Products, lots or items (GS1 Digital Link URIs on any domain).",
        examples=[["https://id.gs1.org/01/04012345000016/10/CATH-7"]],
    )
    max_depth: int = Field(default=MAX_DEPTH, ge=0, le=MAX_DEPTH)


class WindowModel(_Model):
    id: Identifier = Field(description="An equipment id or URI, or a supplier's address.")
    since_us: Timestamp
    until_us: Timestamp


class AnomaliesRequest(_Model):
    subjects: list[Identifier] = Field(default_factory=list, max_length=5 * MAX_IDS)
    equipment: list[WindowModel] = Field(default_factory=list, max_length=MAX_IDS)
    suppliers: list[WindowModel] = Field(default_factory=list, max_length=MAX_IDS)


class ServedRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: dict[str, Any] | None = Field(
        default=None, description="The record's qnode-proof-v1 bundle (it holds the record)."
    )
    record: dict[str, Any] | None = Field(
        default=None, description="The record, when it has no proof yet."
    )
    pending: str | None = Field(default=None, description="Why there is no proof yet.")
    attestation: dict[str, Any] | None = Field(
        default=None, description="A critical record's EIP-712 attestation bundle."
    )


class LinksAnswer(_Model):
    format: Literal["qnode-trace-links/1"]
    member: str
    tier: str
    records: dict[str, ServedRecord] = Field(description="Genealogy records by id.")
    implied: dict[str, str] = Field(description="Items without genealogy -> their lot.")
    unknown: list[str] = Field(description="Ids this member holds no genealogy of.")
    owners: dict[str, str] = Field(description="Ids of other members' lots -> their owner.")
    withheld: dict[str, int]
    truncated: bool


class AnomalyClaim(_Model):
    kind: str
    scope: Literal["subject", "equipment", "supplier"]
    subject: str
    atUs: int
    summary: str
    records: list[str] = Field(description="The records it rests on (see ``records``).")
    details: dict[str, Any]


class AnomaliesAnswer(_Model):
    format: Literal["qnode-trace-anomalies/1"]
    member: str
    tier: str
    detector: str
    anomalies: list[AnomalyClaim]
    records: dict[str, ServedRecord]
    withheld: dict[str, int]


class _Readers:
    """The member's :class:`PartReader`, made on first use (the node opens lazily)."""

    def __init__(self, service: ApiService) -> None:
        self.service = service
        self._reader: PartReader | None = None
        self._lock = threading.Lock()

    def get(self) -> PartReader:
        if self._reader is None:
            with self._lock:
                if self._reader is None:
                    state = self.service.state()
                    lines = {
                        name: line.uri for name, line in self.service.settings.control.lines.items()
                    }
                    self._reader = PartReader(
                        state.store,
                        state.address,
                        TraceIndex(state.store, lines),
                        state.builder.ownership,
                    )
        return self._reader


def install_trace_routes(app: FastAPI, service: ApiService) -> None:
    """Mount the trace routes on a member's API."""
    readers = _Readers(service)
    router = APIRouter(
        prefix="/api/v1/trace",
        tags=["trace"],
        dependencies=[Security(_bearer)],
        responses=problem_responses(400, 401, 403, 429, 503),
    )

    def tier_of(authorization: str | None, requested: str | None) -> Tier:
        if authorization is None:
            raise CredentialsError(
                "a trace needs a bearer token of the legitimate_interest tier or above"
            )
        tier = service.tokens.tier_for(authorization, requested)
        if tier < MIN_TIER:
            raise TierError("a trace needs the legitimate_interest tier or above")
        return tier

    @router.post(
        "/links",
        summary="Genealogy records of products or lots and their inputs, with proofs",
        response_model=LinksAnswer,
    )
    async def trace_links(
        request: Annotated[LinksRequest, Body()],
        tier: TierQuery = None,
        authorization: AuthHeader = None,
    ) -> Response:
        granted = tier_of(authorization, tier)
        answer = await run_in_threadpool(
            readers.get().links, request.ids, granted, request.max_depth
        )
        return Response(orjson.dumps(answer), media_type="application/json")

    @router.post(
        "/anomalies",
        summary="Anomalies of products, equipment (in a window) and suppliers, with evidence",
        response_model=AnomaliesAnswer,
    )
    async def trace_anomalies(
        request: Annotated[AnomaliesRequest, Body()],
        tier: TierQuery = None,
        authorization: AuthHeader = None,
    ) -> Response:
        granted = tier_of(authorization, tier)
        query = AnomalyQuery(
            subjects=tuple(request.subjects),
            equipment=tuple(Window(w.id, w.since_us, w.until_us) for w in request.equipment),
            suppliers=tuple(Window(w.id, w.since_us, w.until_us) for w in request.suppliers),
        )
        answer = await run_in_threadpool(readers.get().anomalies, query, granted)
        return Response(orjson.dumps(answer), media_type="application/json")

    app.include_router(router)
