"""An ERP's webhook receiver on loopback, for demos and tests: a real HTTP server (a Starlette
app under uvicorn, in a background thread).

``POST /purchase-orders`` takes the node's purchase-order requests (:mod:`node.control.actions.erp`)
and keeps each supplier's purchase orders open or paused: paused while any hold paused them.
``POST /hooks/<name>`` takes any other signed notification (e.g. a supplier's task webhook) and
only records it.

Each request must carry a valid ``sha256=`` HMAC-SHA256 signature of its raw body under the shared
secret (else 401) and an ``Idempotency-Key`` (else 400). A key seen before is answered with the
first answer again (header ``Idempotent-Replayed: true``) and changes nothing. ``fail_next(n)``
makes the next n requests fail with 503 (or another status) before anything else is checked.
Everything received, accepted or not, is listed in ``received``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.chain.localnode import free_port
from node.errors import ConfigError

DEFAULT_SIGNATURE_HEADER = "X-Qnode-Signature"
START_TIMEOUT_S = 10.0

_Apply = Callable[[dict[str, Any]], "_Answer"]


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the ERP got it, and how it answered."""

    path: str
    key: str | None
    body: Any
    """The parsed JSON, or None when it was not JSON."""
    status: int
    replayed: bool = False


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]


@dataclass
class _ErpState:
    answers: dict[str, _Answer] = field(default_factory=dict)
    holds: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    received: list[ReceivedRequest] = field(default_factory=list)
    failures_left: int = 0
    failure_status: int = 503


class ErpSimulator:
    """``with ErpSimulator(secret) as erp:`` serves ``erp.url`` until the block ends."""

    def __init__(
        self,
        secret: str,
        *,
        port: int | None = None,
        signature_header: str = DEFAULT_SIGNATURE_HEADER,
    ) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.signature_header = signature_header
        self._state = _ErpState()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The purchase-order webhook."""
        return f"{self.base_url}/purchase-orders"

    def hook_url(self, name: str) -> str:
        """A notification webhook that only records what it gets."""
        return f"{self.base_url}/hooks/{name}"

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> ErpSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen (again, on the same port, with the same state after a ``stop()``)."""
        if self._server is not None:
            return
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"erp-sim :{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(START_TIMEOUT_S)
                raise ConfigError(f"the ERP simulator could not listen on port {self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(START_TIMEOUT_S)

    # -- what tests look at and steer -------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._state.failures_left = count
            self._state.failure_status = status

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._state.received)

    def purchase_orders(self, supplier: str) -> str:
        """``open`` or ``paused``."""
        with self._lock:
            return "paused" if self._state.holds.get(supplier) else "open"

    def holds(self, supplier: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._state.holds.get(supplier, ()))

    # -- the app ----------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/purchase-orders", self._purchase_orders, methods=["POST"]),
                Route("/hooks/{name}", self._hook, methods=["POST"]),
            ]
        )

    async def _purchase_orders(self, request: Request) -> Response:
        return await self._handle(request, self._apply_purchase_order)

    async def _hook(self, request: Request) -> Response:
        return await self._handle(request, lambda body: _Answer(200, {"received": True}))

    async def _handle(self, request: Request, apply: _Apply) -> Response:
        raw = await request.body()
        key = request.headers.get("Idempotency-Key")
        body = _json(raw)
        with self._lock:
            answer, replayed = self._answer(request, raw, key, body, apply)
            self._state.received.append(
                ReceivedRequest(request.url.path, key, body, answer.status, replayed)
            )
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return JSONResponse(answer.body, status_code=answer.status, headers=headers)

    def _answer(
        self, request: Request, raw: bytes, key: str | None, body: Any, apply: _Apply
    ) -> tuple[_Answer, bool]:
        state = self._state
        if state.failures_left > 0:
            state.failures_left -= 1
            return _Answer(state.failure_status, {"error": "injected failure"}), False
        if not self._signed(request, raw):
            return _Answer(401, {"error": "bad or missing signature"}), False
        if not key:
            return _Answer(400, {"error": "Idempotency-Key required"}), False
        scoped = f"{request.url.path} {key}"
        if scoped in state.answers:
            return state.answers[scoped], True
        if not isinstance(body, dict):
            return _Answer(400, {"error": "body must be a JSON object"}), False
        answer = apply(body)
        if 200 <= answer.status < 300:
            state.answers[scoped] = answer
        return answer, False

    def _signed(self, request: Request, raw: bytes) -> bool:
        given = request.headers.get(self.signature_header, "")
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given, expected)

    def _apply_purchase_order(self, body: dict[str, Any]) -> _Answer:
        operation, supplier, hold = body.get("operation"), body.get("supplier"), body.get("hold_id")
        if operation not in ("pause", "release") or not supplier or not hold:
            return _Answer(400, {"error": "operation (pause|release), supplier, hold_id needed"})
        holds = self._state.holds[str(supplier)]
        if operation == "pause":
            holds.add(str(hold))
        else:
            holds.discard(str(hold))
        state = "paused" if holds else "open"
        return _Answer(
            200, {"supplier": supplier, "purchase_orders": state, "holds": sorted(holds)}
        )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
