"""The HTML side of the API: templates, error pages, security headers and bounded form reading
for the consumer page, the auditor's explorer and the supplier portal.

Templates are Jinja2 (``node/api/templates``) with autoescaping on for every template, so a value
from a record, a bundle or a form is always written escaped; only SVG drawn by this package's own
renderers (which escape what they draw) is marked safe. Every page answer carries a strict
Content-Security-Policy (no script at all, no external resource), ``nosniff``, same-origin
referrers and ``frame-ancestors 'none'``; the explorer's and the portal's pages are ``no-store``.

Errors on a page route become an HTML page with the right status (:func:`page_problem`), never a
traceback: the node's error tree maps as in :mod:`node.api.problems`; a contract's decoded custom
error (a discipline out of order, a closed case) is a 409 or 422 whose detail is the contract's
own message and what it means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from node.api.problems import describe_validation
from node.chain import contract_errors
from node.errors import (
    ApiRequestError,
    AttestationError,
    ChainError,
    ConfigError,
    ContractRevertError,
    ControlError,
    CredentialsError,
    IdentifierError,
    KeystoreError,
    NotFoundError,
    PeerError,
    ProofError,
    RateLimitError,
    RecordError,
    StoreError,
    TierError,
)

__all__ = [
    "PAGE_CSP",
    "SESSION_KEY",
    "Html",
    "PageError",
    "SignInRequired",
    "form_text",
    "page_problem",
    "page_route",
    "read_form",
    "secure",
]

log = logging.getLogger(__name__)

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""No script, no external resource; forms only to this origin."""
_SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
DASH = "\u2013"
"""What a page shows for a missing value."""
SESSION_KEY = "qnode.session"
"""Where a page route keeps the request's session in the ASGI scope (for its error page)."""


class PageError(ApiRequestError):
    """A page's own refusal with its HTTP status (a missing CSRF token, an oversize upload, a
    form without a report, ...)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title


# -- contract errors ---------------------------------------------------------------------------

_CONFLICTS = (
    contract_errors.DisciplineOutOfOrder,
    contract_errors.DisciplineAwaitingReview,
    contract_errors.DisciplineNotSubmitted,
    contract_errors.CaseAlreadyClosed,
)


def revert_meaning(exc: ContractRevertError) -> str:
    """The contract's own sentence for a decoded custom error (its NatSpec notice)."""
    doc = type(exc).__doc__ or ""
    if not isinstance(exc, contract_errors.CustomContractError) or not doc.strip():
        return ""
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip()


def _revert_problem(exc: ContractRevertError) -> tuple[int, str, str]:
    meaning = revert_meaning(exc)
    detail = f"{exc}" + (f": {meaning[0].lower()}{meaning[1:]}" if meaning else "")
    if isinstance(exc, _CONFLICTS):
        return 409, "Refused by the contract: the case is not there yet", detail
    if isinstance(exc, contract_errors.NotResponsibleParty):
        return 403, "Refused by the contract: not this member's case", detail
    if isinstance(exc, contract_errors.UnknownCase):
        return 404, "Refused by the contract: no such case", detail
    return 422, "Refused by the contract", detail


# -- errors to pages ---------------------------------------------------------------------------

_MAPPING: tuple[tuple[type[Exception], int, str], ...] = (
    (IdentifierError, 400, "Invalid identifier"),
    (RecordError, 400, "Invalid request"),
    (CredentialsError, 401, "Sign-in required or not recognised"),
    (TierError, 403, "Not granted to this credential"),
    (NotFoundError, 404, "Not found"),
    (ProofError, 422, "The proof does not verify"),
    (AttestationError, 422, "The attestation does not verify"),
    (ControlError, 422, "Refused"),
    (RateLimitError, 429, "Too many requests"),
)
_HIDDEN: tuple[tuple[type[Exception], str], ...] = (
    (StoreError, "The store is unavailable"),
    (ChainError, "The chain is unavailable"),
    (PeerError, "Another member's node is unavailable"),
    (ConfigError, "The node is not configured for this"),
    (KeystoreError, "The node's key is unavailable"),
)


def page_problem(request: Request, exc: Exception) -> tuple[int, str, str, dict[str, str]]:
    """``(status, title, detail, headers)`` of the page that answers ``exc``."""
    headers: dict[str, str] = {}
    if isinstance(exc, PageError):
        return exc.status, exc.title, str(exc), headers
    if isinstance(exc, RequestValidationError):
        return 400, "Invalid request", describe_validation(exc), headers
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "the request failed"
        return exc.status_code, "Request failed", detail, dict(exc.headers or {})
    if isinstance(exc, ContractRevertError):
        status, title, detail = _revert_problem(exc)
        return status, title, detail, headers
    if isinstance(exc, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    for cls, status, title in _MAPPING:
        if isinstance(exc, cls):
            return status, title, str(exc), headers
    for cls, title in _HIDDEN:
        if isinstance(exc, cls):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return 503, title, f"{title.lower()}; try again later", headers
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return 500, "Internal error", "the node failed to answer", headers


# -- templates ---------------------------------------------------------------------------------


def utc_us(timestamp_us: int | None) -> str:
    if timestamp_us is None:
        return DASH
    return utc_s(timestamp_us / 1e6)


def utc_s(timestamp_s: float | None) -> str:
    if timestamp_s is None or timestamp_s <= 0:
        return DASH
    moment = datetime.fromtimestamp(timestamp_s, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_text(text: str | None) -> str:
    """An ISO 8601 instant (as the passport writes it) for people."""
    if not text:
        return DASH
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short(text: Any, keep: int = 10) -> str:
    value = "" if text is None else str(text)
    if len(value) <= keep + 6:
        return value
    return f"{value[:keep]}…{value[-4:]}"


def url_part(text: Any) -> str:
    """A value for a path segment or a query value."""
    return quote(str(text), safe="")


def svg_markup(svg: str) -> Markup:
    """SVG drawn by this package's renderers (they escape what they draw), inlined into a page:
    the XML declaration dropped."""
    body = svg.strip()
    if body.startswith("<?xml"):
        body = body.split("?>", 1)[1].lstrip()
    return Markup(body)


class Html:
    """The templates and how a page becomes a response."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("node.api", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            utc_us=utc_us, utc_s=utc_s, iso=iso_text, short=short, u=url_part, svg=svg_markup
        )

    def text(self, template: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(template).render(**context)

    def page(
        self,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        private: bool = True,
    ) -> HTMLResponse:
        response = HTMLResponse(self.text(template, context), status_code=status)
        secure(response, private)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def error(
        self, request: Request, exc: Exception, area: str, session: Any = None
    ) -> HTMLResponse:
        status, title, detail, headers = page_problem(request, exc)
        context = {
            "area": area,
            "session": session,
            "status": status,
            "title": title,
            "detail": detail,
            "path": request.url.path,
        }
        return self.page("error.html", context, status, headers)


def secure(response: Response, private: bool = True) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def page_route(html: Html, area: str) -> type[APIRoute]:
    """A route class whose errors are HTML pages of ``area`` (explorer, portal) and whose answers
    carry the pages' security headers."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def page_handler(request: Request) -> Response:
                try:
                    response = await handler(request)
                except SignInRequired as exc:
                    if request.method in ("GET", "HEAD"):
                        target = request.url.path
                        if request.url.query:
                            target += "?" + request.url.query
                        location = f"/{area}/login?next={url_part(target)}"
                        return secure(RedirectResponse(location, status_code=303))
                    return html.error(request, exc, area)
                except Exception as exc:  # every failure is a page, never a traceback
                    return html.error(request, exc, area, request.scope.get(SESSION_KEY))
                return secure(response)

            return page_handler

    return PageRoute


# -- forms -------------------------------------------------------------------------------------


async def read_form(request: Request, limit: int, max_files: int = 1) -> FormData:
    """The request's form, refused with 413 past ``limit`` bytes (the declared length, else while
    it is read) and with 415/400 when it is not a well-formed form."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in _FORM_TYPES:
        if not content_type and request.headers.get("content-length", "0") == "0":
            return FormData()  # an empty POST: an empty form
        raise PageError(415, "Not a form", "send the form as a browser does (a form encoding)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PageError(413, "Too large", _too_large(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PageError(413, "Too large", _too_large(limit))
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    buffered = Request(request.scope, replay)
    try:
        return await buffered.form(max_files=max_files, max_fields=20, max_part_size=limit)
    except (MultiPartException, StarletteHTTPException, ValueError) as exc:
        raise PageError(400, "Malformed form", f"the form could not be read: {exc}") from exc


def _too_large(limit: int) -> str:
    return f"the form is larger than this node accepts ({limit:,} bytes)"


def form_text(form: FormData, name: str, limit: int = 10_000) -> str:
    """A text field (an uploaded file under that name is not text: refused)."""
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PageError(400, "Malformed form", f"{name!r} must be text")
    if len(value) > limit:
        raise PageError(413, "Too large", f"{name!r} is longer than {limit:,} characters")
    return value


class SignInRequired(PageError):
    """A page of a signed-in area asked for without a session: a GET is sent to the sign-in form
    (and back after it), anything else is a 401 page."""

    def __init__(self, area: str) -> None:
        super().__init__(401, "Sign-in required", f"sign in to the {area} first")
        self.area = area
