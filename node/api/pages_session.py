"""Sign-in for the explorer and the portal: a token typed into a form, kept in a cookie, checked
against the configured token hashes on every request; and the per-session CSRF token of their
forms.

A browser cannot send a bearer header when it follows a link, so the login form takes the token
and the answer sets a cookie (``HttpOnly``, ``SameSite=Strict``, ``Path`` the area's prefix,
``Secure`` over https or when ``api.public_base_url`` is https, ``Max-Age``
``api.session_ttl_s``) holding::

    v1.<issued at, unix s>.<nonce: 128 random bits>.<base64url(token)>.<mac>

``mac`` is HMAC-SHA256 keyed by the token over the area, time and nonce. Nothing is kept on the
server: every request checks the token again with the same :class:`~node.api.access.TokenTable`
as the API (constant time), so a token removed from the configuration stops working at once, and
any worker of ``qnode serve --workers N`` accepts the cookie. A session expires ``session_ttl_s``
after sign-in.

The CSRF token of a session is HMAC-SHA256(token, "csrf" | area | issued | nonce): new at each
sign-in, unknown to anyone without the token, required (compared in constant time) in every POST
form of the area, and a cross-site ``Origin`` is refused as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from node.api.access import Tier, TokenTable
from node.api.pages_html import Html, PageError, form_text, read_form
from node.api.ratelimit import RateLimiter
from node.errors import CredentialsError, TierError
from node.settings import ApiTokenSettings

__all__ = ["Session", "SessionKeeper", "check_origin", "safe_next", "sign_in_routes"]

_VERSION = "v1"
_MAX_COOKIE_CHARS = 2048


@dataclass(frozen=True)
class Session:
    area: str
    holder: str
    """The configured name of the token that signed in."""
    issued_at: int
    expires_at: int
    csrf: str


class SessionKeeper:
    """Sign-in to one area (``explorer``: an authority token of ``[[api.tokens]]``; ``portal``:
    the portal token) under the path ``prefix``."""

    def __init__(
        self,
        area: str,
        prefix: str,
        tokens: TokenTable,
        tier: Tier,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        https: bool = False,
    ) -> None:
        self.area = area
        self.https = https
        """Always mark the cookie Secure (the node is reached over https behind a proxy)."""
        self.prefix = prefix
        self.cookie = f"qnode_{area}"
        self.tokens = tokens
        self.tier = tier
        self.ttl_s = int(ttl_s)
        self.clock = clock

    @classmethod
    def portal(cls, sha256: str, ttl_s: float, https: bool = False) -> SessionKeeper:
        entry = ApiTokenSettings(name="supplier portal", tier="authority", sha256=sha256)
        return cls("portal", "/portal", TokenTable([entry]), Tier.AUTHORITY, ttl_s, https=https)

    # -- the token -----------------------------------------------------------------------------

    def holder(self, token: str) -> str:
        """The holder's name if ``token`` signs in here; CredentialsError (not recognised) or
        TierError (recognised, but of a tier below the area's)."""
        token = token.strip()
        if not token:
            raise CredentialsError("type the token you were given")
        if any(c.isspace() for c in token):
            raise CredentialsError("the token is not recognised")
        grant = self.tokens.grant(f"Bearer {token}")
        if grant.tier < self.tier:
            raise TierError(
                f"this {grant.tier.label} token does not open the {self.area}: it needs a "
                f"{self.tier.label} token"
            )
        return grant.holder or self.area

    # -- the cookie ----------------------------------------------------------------------------

    def sign_in(self, token: str) -> tuple[str, Session]:
        """The cookie value and session of a sign-in with ``token`` (checked)."""
        holder = self.holder(token)
        issued = int(self.clock())
        nonce = secrets.token_urlsafe(16)
        encoded = base64.urlsafe_b64encode(token.strip().encode()).decode().rstrip("=")
        mac = self._mac(token.strip(), "session", issued, nonce)
        value = f"{_VERSION}.{issued}.{nonce}.{encoded}.{mac}"
        return value, self._session(token.strip(), holder, issued, nonce)

    def session(self, request: Request) -> Session | None:
        """The request's valid session, or None (no cookie, expired, altered, or its token no
        longer recognised)."""
        value = request.cookies.get(self.cookie)
        if not value or len(value) > _MAX_COOKIE_CHARS:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        _, issued_text, nonce, encoded, mac = parts
        issued = int(issued_text)
        now = self.clock()
        if issued > now + 60 or now >= issued + self.ttl_s:
            return None
        try:
            token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(token, "session", issued, nonce)):
            return None
        try:
            holder = self.holder(token)
        except (CredentialsError, TierError):
            return None
        return self._session(token, holder, issued, nonce)

    def _session(self, token: str, holder: str, issued: int, nonce: str) -> Session:
        csrf = self._mac(token, "csrf", issued, nonce)
        return Session(self.area, holder, issued, issued + self.ttl_s, csrf)

    def _mac(self, token: str, purpose: str, issued: int, nonce: str) -> str:
        message = f"{purpose}|{self.area}|{issued}|{nonce}".encode()
        digest = hmac.new(token.encode(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            self.cookie,
            value,
            max_age=self.ttl_s,
            path=self.prefix,
            secure=self.https or _https(request),
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            self.cookie,
            path=self.prefix,
            secure=self.https or _https(request),
            httponly=True,
            samesite="strict",
        )

    # -- CSRF ------------------------------------------------------------------------------------

    def check_csrf(self, session: Session, submitted: str | None) -> None:
        if not submitted:
            raise PageError(
                403, "Form refused", "the form lacks its CSRF token: reload the page and try again"
            )
        if not hmac.compare_digest(submitted.encode(), session.csrf.encode()):
            raise PageError(
                403,
                "Form refused",
                "the form's CSRF token is not this session's: reload the page and try again",
            )


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def check_origin(request: Request, public_base_url: str | None) -> None:
    """Refuse a form posted from another site, as far as the browser says where it came from:
    ``Sec-Fetch-Site`` when sent, else ``Origin`` (the CSRF token and the SameSite cookie are the
    defence; this is a second one)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() not in ("same-origin", "none"):
            raise PageError(403, "Form refused", "the form was sent from another site")
        return
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if public_base_url:
        parts = urlsplit(public_base_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    if origin.lower().rstrip("/") not in allowed:
        raise PageError(403, "Form refused", "the form was sent from another site")


def safe_next(target: str | None, prefix: str) -> str:
    """Where to go after signing in: a path of the area only (never another site)."""
    if (
        not target
        or not target.startswith(prefix)
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or target.startswith(f"{prefix}/login")
        or target.startswith(f"{prefix}/logout")
    ):
        return prefix
    return target[:2000]


def sign_in_routes(
    router: APIRouter,
    keeper: SessionKeeper,
    html: Html,
    limiter: RateLimiter,
    client: Callable[[Request], str],
    public_base_url: str | None,
    explanation: str,
) -> None:
    """``GET/POST {prefix}/login`` and ``POST {prefix}/logout`` of ``keeper``'s area. A token
    that is not recognised counts as a miss of the client's rate limit (so guessing is as slow
    as guessing serials)."""

    def form(next_path: str, problem: str | None = None, status: int = 200) -> Response:
        hours = keeper.ttl_s / 3600
        context = {
            "area": keeper.area,
            "session": None,
            "title": f"Sign in · {keeper.area}",
            "next": safe_next(next_path, keeper.prefix),
            "problem": problem,
            "explanation": explanation,
            "ttl": f"{hours:g} hours" if hours >= 1 else f"{keeper.ttl_s} s",
        }
        return html.page("login.html", context, status)

    @router.get("/login")
    async def login_form(
        request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
    ) -> Response:
        return form(next_path or keeper.prefix)

    @router.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request, public_base_url)
        who = client(request)
        limiter.check_misses(who)
        fields = await read_form(request, 8192, max_files=0)
        token = form_text(fields, "token", 512)
        next_path = form_text(fields, "next", 2000)
        try:
            value, _ = keeper.sign_in(token)
        except CredentialsError as exc:
            limiter.miss(who)
            return form(next_path, str(exc), 401)
        except TierError as exc:
            return form(next_path, str(exc), 403)
        response = RedirectResponse(safe_next(next_path, keeper.prefix), status_code=303)
        keeper.set_cookie(request, response, value)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        check_origin(request, public_base_url)
        session = keeper.session(request)
        if session is not None:
            fields = await read_form(request, 8192, max_files=0)
            keeper.check_csrf(session, form_text(fields, "csrf", 200))
        response = RedirectResponse(f"{keeper.prefix}/login", status_code=303)
        keeper.clear_cookie(request, response)
        return response
