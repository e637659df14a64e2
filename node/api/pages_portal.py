"""The supplier portal (``/portal``) on a supplier member's own node.

Signed in with the portal token (``api.portal_token_sha256``; see :mod:`node.api.pages_session`),
the supplier sees:

- its holds, from SupplierQuality (which customer, which part and characteristic, how many lots
  in a row were out of spec, its 8D case, active or released);
- its 8D tasks from the node's :class:`~node.control.actions.tasks.TaskBoard` (kind
  ``supplier_task``), with their deadlines, the overdue ones highlighted;
- each of its cases in CorrectiveAction with the state of every discipline (approved, awaiting
  review, rejected, to submit, not yet) and the report hash on-chain;
- one form per case at a discipline to submit (a file or a text).

A submission is kept as a blob of the node's store; its SHA-256 goes on-chain with
``CorrectiveAction.submit``, sent by the node's member account (the supplier's key); the
discipline's open tasks are closed; the answer is a redirect to the transaction
(``/portal/receipts/{tx}``), decoded. The contract's refusals (a discipline out of order, one
awaiting review, a closed case) are pages with 409 and the contract's own message. Every POST
needs the session's CSRF token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

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
from node.chain.corrective_action import Case, Discipline
from node.chain.supplier_quality import Hold, HoldStatus
from node.control.actions.tasks import KIND_SUPPLIER_TASK, Task, TaskBoard, TaskStatus
from node.errors import ChainError, ConfigError, NotFoundError
from node.explorer import Explorer, TransactionDetail
from node.offchain.store import now_us
from node.runtime import Node

__all__ = ["PortalView", "portal_router", "portal_view", "submit_discipline"]

_US_PER_DAY = 86_400_000_000
_MAX_TEXT_REPORT = 1_000_000


@dataclass(frozen=True)
class HoldView:
    hold: Hold
    customer: str
    status: str


@dataclass(frozen=True)
class TaskView:
    task: Task
    case_id: int | None
    discipline: int | None
    overdue: bool
    due: str


@dataclass(frozen=True)
class DisciplineView:
    discipline: Discipline
    state: str
    """``approved``, ``awaiting review``, ``rejected``, ``to submit``, ``not yet`` or ``closed``."""
    report: str | None


@dataclass(frozen=True)
class CaseView:
    case: Case
    customer: str
    disciplines: tuple[DisciplineView, ...]
    current: DisciplineView | None
    """The discipline to submit now (None: awaiting review, or closed)."""
    tasks: tuple[TaskView, ...]


@dataclass(frozen=True)
class PortalView:
    member: str
    address: str
    holds: tuple[HoldView, ...]
    cases: tuple[CaseView, ...]
    tasks: tuple[TaskView, ...]
    overdue: int


@dataclass(frozen=True)
class Submission:
    tx_hash: str
    block_number: int
    report_hash: str
    closed_tasks: tuple[str, ...]


def portal_view(node: Node, at_us: int | None = None) -> PortalView:
    """What the portal shows the supplier whose node this is (reads the chain and the store)."""
    moment = now_us() if at_us is None else at_us
    me = node.address.lower()
    names: dict[str, str] = {}

    def name(address: str) -> str:
        key = address.lower()
        if key not in names:
            try:
                names[key] = node.consortium().member(address).name or address
            except (ChainError, ConfigError):
                names[key] = address
        return names[key]

    quality = node.supplier_quality()
    corrective = node.corrective_action()
    holds = []
    for hold_id in range(quality.hold_count(), 0, -1):
        hold = quality.hold(hold_id)
        if hold.supplier.lower() == me:
            status = HoldStatus(hold.status).name.lower()
            holds.append(HoldView(hold, name(hold.customer), status))
    board = TaskBoard(node.store())
    tasks = [_task_view(t, moment) for t in board.tasks(assignee=me, kind=KIND_SUPPLIER_TASK)]
    tasks.sort(
        key=lambda t: (
            t.task.status is not TaskStatus.OPEN,
            t.task.due_at_us if t.task.due_at_us is not None else 2**63,
            -t.task.id,
        )
    )
    cases = []
    for case_id in range(corrective.case_count(), 0, -1):
        case = corrective.case(case_id)
        if case.supplier.lower() != me:
            continue
        disciplines = tuple(_discipline(corrective.report, case, d) for d in Discipline)
        current = next((d for d in disciplines if d.state in ("to submit", "rejected")), None)
        own_tasks = tuple(t for t in tasks if t.case_id == case_id)
        cases.append(CaseView(case, name(case.customer), disciplines, current, own_tasks))
    cases.sort(key=lambda c: (c.case.closed, -c.case.case_id))
    member = name(node.address)
    overdue = sum(t.overdue for t in tasks)
    return PortalView(member, node.address, tuple(holds), tuple(cases), tuple(tasks), overdue)


def _discipline(
    report_of: Callable[[int, int], str | None], case: Case, discipline: Discipline
) -> DisciplineView:
    if case.closed:
        return DisciplineView(discipline, "approved", report_of(case.case_id, discipline))
    if discipline < case.discipline:
        return DisciplineView(discipline, "approved", report_of(case.case_id, discipline))
    if discipline > case.discipline:
        return DisciplineView(discipline, "not yet", None)
    report = report_of(case.case_id, discipline)
    if case.awaiting_review:
        return DisciplineView(discipline, "awaiting review", report)
    return DisciplineView(discipline, "rejected" if report else "to submit", report)


def _task_view(task: Task, at_us: int) -> TaskView:
    detail = task.detail
    case_id = detail.get("case_id")
    discipline = detail.get("discipline")
    due = "no deadline"
    if task.due_at_us is not None:
        days = (task.due_at_us - at_us) / _US_PER_DAY
        if task.overdue(at_us):
            due = f"overdue by {_days(-days)}"
        elif task.status is TaskStatus.OPEN:
            due = f"due in {_days(days)}"
        else:
            due = "closed"
    return TaskView(
        task,
        case_id if isinstance(case_id, int) else None,
        discipline if isinstance(discipline, int) else None,
        task.overdue(at_us),
        due,
    )


def _days(days: float) -> str:
    if days < 1:
        hours = max(days * 24, 0)
        return f"{hours:.0f} h"
    return f"{days:.1f} days"


def submit_discipline(node: Node, case_id: int, discipline: int, report: bytes) -> Submission:
    """Keep the report as a blob, submit its SHA-256 for the discipline on-chain (as the node's
    member account), close the discipline's open tasks."""
    digest = node.store().blobs.put(report)
    receipt = node.corrective_action().submit(case_id, discipline, "0x" + digest)
    board = TaskBoard(node.store())
    closed = []
    for task in board.tasks(assignee=node.address, status=TaskStatus.OPEN, kind=KIND_SUPPLIER_TASK):
        if task.detail.get("case_id") == case_id and task.detail.get("discipline") == discipline:
            board.close(task.key)
            closed.append(task.key)
    return Submission(receipt.tx_hash, receipt.block_number, "0x" + digest, tuple(closed))


def portal_router(
    service: ApiService,
    html: Html,
    limiter: RateLimiter,
    client: Callable[[Request], str],
) -> APIRouter:
    settings = service.settings
    router = APIRouter(
        prefix="/portal", route_class=page_route(html, "portal"), include_in_schema=False
    )
    digest = settings.api.portal_token_sha256
    if digest is None:

        @router.api_route("", methods=["GET", "POST"])
        @router.api_route("/{rest:path}", methods=["GET", "POST"])
        async def no_portal(request: Request) -> Response:
            raise NotFoundError(
                "this node serves no supplier portal (api.portal_token_sha256 is not set)"
            )

        return router

    https = (settings.api.public_base_url or "").startswith("https://")
    keeper = SessionKeeper.portal(digest, settings.api.session_ttl_s, https)
    sign_in_routes(
        router,
        keeper,
        html,
        limiter,
        client,
        settings.api.public_base_url,
        "The supplier portal shows this supplier's holds, its 8D tasks and deadlines, and takes "
        "each discipline's report to the chain. It needs the portal token.",
    )
    submit_lock = threading.Lock()
    opened: list[Explorer] = []

    def node() -> Node:
        return service.state().node

    def signed_in(request: Request) -> Session:
        session = keeper.session(request)
        if session is None:
            raise SignInRequired("portal")
        request.scope[SESSION_KEY] = session
        return session

    def page(request: Request, template: str, session: Session, **values: Any) -> Response:
        context = {"area": "portal", "session": session, "path": request.url.path, **values}
        return html.page(template, context)

    @router.get("")
    async def home(request: Request) -> Response:
        session = signed_in(request)
        view = await run_in_threadpool(lambda: portal_view(node()))
        return page(request, "portal/home.html", session, title="Supplier portal", view=view)

    @router.post("/cases/{case_id}/disciplines/{discipline}")
    async def submit(
        request: Request,
        case_id: Annotated[int, Path(ge=1, le=2**64 - 1)],
        discipline: Annotated[int, Path(ge=0, le=8)],
    ) -> Response:
        session = signed_in(request)
        check_origin(request, settings.api.public_base_url)
        fields = await read_form(request, settings.api.max_upload_bytes)
        try:
            keeper.check_csrf(session, form_text(fields, "csrf", 200))
            text = form_text(fields, "report_text", _MAX_TEXT_REPORT)
            upload = fields.get("report_file")
            has_file = isinstance(upload, UploadFile) and bool(upload.filename)
            if has_file and text.strip():
                raise PageError(
                    422, "One report", "attach the report as a file or write it, not both"
                )
            if has_file:
                assert isinstance(upload, UploadFile)
                report = await upload.read()
            else:
                report = text.strip().encode()
            if not report:
                raise PageError(
                    422, "No report", f"attach D{discipline}'s report or write it into the form"
                )
        finally:
            await fields.close()

        def send() -> Submission:
            with submit_lock:
                return submit_discipline(node(), case_id, discipline, report)

        done = await run_in_threadpool(send)
        return RedirectResponse(f"/portal/receipts/{done.tx_hash}", status_code=303)

    @router.get("/receipts/{tx_hash}")
    async def receipt(request: Request, tx_hash: Annotated[str, Path(max_length=80)]) -> Response:
        session = signed_in(request)

        def read() -> tuple[TransactionDetail | None, dict[str, Any], list[Task]]:
            if not opened:
                opened.append(Explorer.for_node(node()))
            tx = opened[0].transaction(tx_hash)
            if tx is None or tx.summary.sender.lower() != node().address.lower():
                raise NotFoundError(f"no transaction {tx_hash[:80]!r} of this supplier")
            args = {a.name: a.value for a in tx.call.args} if tx.call else {}
            board = TaskBoard(node().store())
            tasks = [
                t
                for t in board.tasks(assignee=node().address, kind=KIND_SUPPLIER_TASK)
                if t.detail.get("case_id") == args.get("caseId")
                and t.detail.get("discipline") == args.get("discipline")
            ]
            return tx, args, tasks

        tx, args, tasks = await run_in_threadpool(read)
        return page(
            request,
            "portal/receipt.html",
            session,
            title="Report submitted",
            tx=tx,
            args=args,
            tasks=tasks,
        )

    return router
