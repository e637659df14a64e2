"""Errors as RFC 9457 problem details (``application/problem+json``).

The node's error tree is translated here, and only here, into HTTP status codes: each exception
handler maps one family of :mod:`node.errors` to a status and a problem ``type`` under
``PROBLEM_BASE``. A handler never echoes a traceback; an unexpected exception is a 500 whose
detail says nothing about the internals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from node.errors import (
    AttestationError,
    ChainError,
    ConfigError,
    CredentialsError,
    IdentifierError,
    NotAcceptableError,
    NotFoundError,
    PeerError,
    ProofError,
    QnodeError,
    RateLimitError,
    RecordError,
    StoreError,
    TierError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://qnode.example/problems/"
log = logging.getLogger(__name__)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": PROBLEM_BASE + "invalid-identifier",
                    "title": "Invalid GS1 identifier",
                    "status": 400,
                    "detail": "GTIN 09506000134353: check digit should be 2",
                    "instance": "/01/09506000134353",
                }
            ]
        }
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong with this request, for people.")
    instance: str = Field(description="The path of the request that failed.")


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "Bad request: a malformed identifier, query or body (the detail says what and why).",
    401: "Credentials missing or not recognised.",
    403: "The credentials are of a tier that does not grant this.",
    404: "Nothing is known under this identifier.",
    405: "Method not allowed.",
    406: "None of the accepted media types can be produced.",
    422: "The submitted proof or attestation does not verify (the detail says why).",
    429: "Too many requests (or too many misses) from this client; see Retry-After.",
    500: "Internal error.",
    503: "The store, the chain or another member's node is unavailable; try again later.",
}

# (exception class, status, problem kind, title), most specific first.
_MAPPING: tuple[tuple[type[QnodeError], int, str, str], ...] = (
    (IdentifierError, 400, "invalid-identifier", "Invalid GS1 identifier"),
    (RecordError, 400, "invalid-request", "Invalid request"),
    (CredentialsError, 401, "unauthorized", "Credentials required or not recognised"),
    (TierError, 403, "forbidden-tier", "Not granted to this access tier"),
    (NotFoundError, 404, "not-found", "Not found"),
    (NotAcceptableError, 406, "not-acceptable", "Not acceptable"),
    (ProofError, 422, "proof-invalid", "The proof bundle does not verify"),
    (AttestationError, 422, "attestation-invalid", "The attestation does not verify"),
    (RateLimitError, 429, "rate-limited", "Too many requests"),
    (StoreError, 503, "store-unavailable", "The store is unavailable"),
    (ChainError, 503, "chain-unavailable", "The chain is unavailable"),
    (PeerError, 503, "peer-unavailable", "Another member's node is unavailable"),
    (ConfigError, 503, "not-configured", "The node is not configured for this"),
)
_HIDDEN_DETAIL = {"store-unavailable", "chain-unavailable", "not-configured"}


def _qnode_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QnodeError)
    for cls, status, kind, title in _MAPPING:
        if isinstance(exc, cls):
            headers = {}
            if isinstance(exc, RateLimitError):
                headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
            if isinstance(exc, CredentialsError):
                headers["WWW-Authenticate"] = 'Bearer realm="qnode", error="invalid_token"'
            detail = str(exc)
            if kind in _HIDDEN_DETAIL:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                detail = f"{title.lower()}; try again later"
            return problem_response(status, kind, title, detail, request.url.path, headers)
    return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "internal", "Internal error", "the node failed to answer", request.url.path
    )


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        400, "invalid-request", "Invalid request", describe_validation(exc), request.url.path
    )


def describe_validation(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        if error.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON (truncated?)")
            continue
        message = str(error.get("msg", "invalid"))
        problems.append(f"{location or 'body'}: {message}")
    return "; ".join(problems) or "the request is malformed"


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    kinds = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}
    kind, title = kinds.get(status, ("http-error", "Request failed"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if status == 404:
        detail = f"no resource at {request.url.path}"
    headers = dict(exc.headers or {})
    return problem_response(status, kind, title, detail, request.url.path, headers)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QnodeError, _qnode_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
