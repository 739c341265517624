"""The review workbench: a FastAPI application with server-rendered pages.

Security model (a workstation tool on a hospital network, not a public site):
- Binds loopback unless configured otherwise; users and roles from the local users file.
- Sessions are cookies signed with itsdangerous (HttpOnly, SameSite=Strict), expiring after
  `review.session_hours`; every state-changing request is a POST carrying the session's
  CSRF token (the login form a pre-session one), compared in constant time.
- Requests address items by output number and item id only; files are found through the
  output's own tables, never from a path in the request.
- Every view of an item, a page image, the queue and the audit log, and every decision, is
  appended to the output's audit log. The server's own log gets ids and counts, never
  record text: terminology searches are POSTs so their text stays out of access logs.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.config import RenderConfig, ReviewConfig
from pipeline.records import Entity
from pipeline.review.apply import correct_code, correct_field
from pipeline.review.pageimage import PNG, PageImages
from pipeline.review.queue import STATUSES, QueueFilter, ReviewQueue, lines_around
from pipeline.review.store import ITEM_ACTIONS
from pipeline.review.users import User, UserStore

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "medrec_session"
LOGIN_COOKIE = "medrec_login"
FILTER_KEYS = ("facility_id", "document_type", "kind", "reason", "min_priority", "status", "assignee")
_CODE_QUERY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{1,14}$")


class _LoginRequired(Exception):
    pass


class Workbench:
    """What the routes share: the queue, users, signer, page renderer and terminology index."""

    def __init__(self, outputs: list[Path], users: UserStore, secret: bytes, review: ReviewConfig,
                 render: RenderConfig, index_path: Path | None):
        self.queue = ReviewQueue(outputs)
        self.users = users
        self.review = review
        self.signer = URLSafeTimedSerializer(secret, salt="medrec-review-session")
        self.images = PageImages(render, review.image_cache_pages)
        self.index_path = index_path
        self._index: Any = None
        self._index_lock = threading.Lock()

    def terminology(self) -> Any:
        """The terminology index, opened on first search (opening reads every term, seconds)."""
        from pipeline.terminology import TerminologyIndex

        with self._index_lock:
            if self._index is None:
                if self.index_path is None:
                    raise FileNotFoundError("no terminology index configured")
                self._index = TerminologyIndex(self.index_path)
            return self._index

    def audit(self, out: int | None, user: User, action: str, **lineage: Any) -> None:
        """One audit row in the output's log (`out` None: in every output's log)."""
        logs = self.queue.audit_logs if out is None else [self.queue.audit_logs[out]]
        for audit_log in logs:
            audit_log.append(user.name, user.role, action, **lineage)


def create_app(workbench: Workbench) -> FastAPI:
    """The ASGI application over one workbench."""
    app = FastAPI(title="medrec review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workbench = workbench
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    hours = workbench.review.session_hours

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        # Scripts, styles and images from this server only; never framed; pages of patients not cached.
        response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self'; script-src 'self'; "
                                                       "style-src 'self'; frame-ancestors 'none'; form-action 'self'")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "private, no-store"
        return response

    @app.exception_handler(_LoginRequired)
    async def _to_login(request: Request, _: _LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> Response:
        log.error("review: %s on %s %s", type(error).__name__, request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    def session(request: Request) -> dict[str, Any]:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise _LoginRequired()
        try:
            data = workbench.signer.loads(token, max_age=int(hours * 3600))
        except BadSignature:
            raise _LoginRequired() from None
        user = workbench.users.get(data.get("u", ""))
        if user is None or user.role != data.get("r"):
            raise _LoginRequired()  # removed from the users file, or given another role
        return {"user": user, "csrf": data["c"]}

    def require(permission: str):
        def check(current: dict[str, Any] = Depends(session)) -> dict[str, Any]:
            if not current["user"].can(permission):
                raise HTTPException(403, "your role does not allow this")
            return current
        return check

    def check_csrf(current: dict[str, Any], token: str) -> None:
        if not hmac.compare_digest(current["csrf"].encode(), (token or "").encode()):
            raise HTTPException(403, "bad or missing CSRF token")

    def render(request: Request, name: str, current: dict[str, Any] | None, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"user": current["user"] if current else None,
                                                          "csrf": current["csrf"] if current else None, **context})

    def item_or_404(out: int, item_id: str) -> dict[str, Any]:
        item = workbench.queue.item(out, item_id)
        if item is None:
            raise HTTPException(404, "no such item")
        return item

    # ------------------------------------------------------------------ login

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", None, login_csrf=token, error=None)
        response.set_cookie(LOGIN_COOKIE, workbench.signer.dumps({"c": token}), max_age=900, httponly=True,
                            samesite="strict")
        return response

    @app.post("/login")
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              csrf: str = Form("")) -> Response:
        try:
            expected = workbench.signer.loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=900)["c"]
        except (BadSignature, KeyError, TypeError):
            expected = None
        if expected is None or not hmac.compare_digest(expected.encode(), csrf.encode()):
            raise HTTPException(403, "bad or missing CSRF token")
        user = workbench.users.authenticate(username.strip(), password)
        if user is None:
            log.info("review: failed login")
            response = render(request, "login.html", None, login_csrf=expected, error="Wrong name or password.")
            response.status_code = 401
            return response
        workbench.audit(None, user, "login")
        response = RedirectResponse("/audit" if user.role == "auditor" else "/queue", status_code=303)
        token = workbench.signer.dumps({"u": user.name, "r": user.role, "c": secrets.token_urlsafe(24)})
        response.set_cookie(SESSION_COOKIE, token, max_age=int(hours * 3600), httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    def logout(csrf: str = Form(""), current: dict[str, Any] = Depends(session)) -> Response:
        check_csrf(current, csrf)
        workbench.audit(None, current["user"], "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    def home(current: dict[str, Any] = Depends(session)) -> Response:
        return RedirectResponse("/audit" if current["user"].role == "auditor" else "/queue", status_code=303)

    # ------------------------------------------------------------------ queue

    def queue_filter(request: Request, current: dict[str, Any]) -> QueueFilter:
        params = request.query_params
        status = params.get("status", "open")
        if status not in (*STATUSES, "all"):
            raise HTTPException(400, "unknown status")
        try:
            min_priority = float(params["min_priority"]) if params.get("min_priority") else None
        except ValueError:
            raise HTTPException(400, "min_priority must be a number") from None
        assignee = params.get("assignee") or None
        if assignee == "me":
            assignee = current["user"].name
        return QueueFilter(facility_id=params.get("facility_id") or None, document_type=params.get("document_type") or None,
                           kind=params.get("kind") or None, reason=params.get("reason") or None,
                           min_priority=min_priority, status=None if status == "all" else status, assignee=assignee)

    def filter_query(request: Request) -> str:
        return urlencode({k: request.query_params[k] for k in FILTER_KEYS if request.query_params.get(k)})

    @app.get("/queue", response_class=HTMLResponse)
    def queue_view(request: Request, after: int = 0, current: dict[str, Any] = Depends(require("queue"))) -> HTMLResponse:
        where = queue_filter(request, current)
        rows = workbench.queue.page(where, after, workbench.review.page_size)
        counts = workbench.queue.counts(where)
        workbench.audit(None, current["user"], "view_queue", detail=f"rows={len(rows)} after={after}")
        return render(request, "queue.html", current, rows=rows, counts=counts, facets=workbench.queue.facets,
                      params=request.query_params, query=filter_query(request), after=after,
                      next_after=rows[-1]["seq"] if len(rows) == workbench.review.page_size else None,
                      reviewers=workbench.users.names())

    # ------------------------------------------------------------------ one item

    @app.get("/item/{out}/{item_id}", response_class=HTMLResponse)
    def item_view(request: Request, out: int, item_id: str,
                  current: dict[str, Any] = Depends(require("queue"))) -> HTMLResponse:
        item = item_or_404(out, item_id)
        entity = workbench.queue.entity(out, item)
        page = workbench.queue.page_row(out, item["facility_id"], item["document_id"], item["page_index"])
        lines = lines_around(page["lines"] if page else [], entity["line_ids"] if entity else [],
                             workbench.review.lines_around)
        state = workbench.queue.state(out, item_id)
        workbench.audit(out, current["user"], "view_item", facility_id=item["facility_id"],
                        document_id=item["document_id"], page_index=item["page_index"], item_id=item_id)
        return render(request, "item.html", current, out=out, item=item, entity=entity, page=page, lines=lines,
                      state=state, query=filter_query(request), reviewers=workbench.users.names(),
                      error=request.query_params.get("error"))

    @app.get("/item/{out}/{item_id}/page.png")
    def page_image(out: int, item_id: str, current: dict[str, Any] = Depends(require("queue"))) -> Response:
        item = item_or_404(out, item_id)
        page = workbench.queue.page_row(out, item["facility_id"], item["document_id"], item["page_index"])
        if page is None:
            raise HTTPException(404, "page not in the pages table")
        try:
            data = workbench.images.png(page)
        except LookupError as error:
            raise HTTPException(404, str(error)) from None
        workbench.audit(out, current["user"], "view_page", facility_id=item["facility_id"],
                        document_id=item["document_id"], page_index=item["page_index"], item_id=item_id)
        return Response(data, media_type=PNG)

    @app.post("/item/{out}/{item_id}/decide")
    def decide(request: Request, out: int, item_id: str, action: str = Form(...), csrf: str = Form(""),
               value_after: str = Form(""), code: str = Form(""),
               current: dict[str, Any] = Depends(require("decide"))) -> Response:
        check_csrf(current, csrf)
        item = item_or_404(out, item_id)
        if action not in ITEM_ACTIONS:
            raise HTTPException(400, f"action must be one of {ITEM_ACTIONS}")
        entity_row = workbench.queue.entity(out, item)
        decision = _decision(item, entity_row, current["user"], action)
        if action == "correct":
            try:
                _correction(decision, item, entity_row, value_after, code)
            except ValueError as error:
                return RedirectResponse(f"/item/{out}/{item_id}?{urlencode({'error': str(error)})}", status_code=303)
        row = workbench.queue.record(out, decision)
        workbench.audit(out, current["user"], "decide", facility_id=item["facility_id"], document_id=item["document_id"],
                        page_index=item["page_index"], item_id=item_id, detail=f"{action} {row['decision_id']}")
        log.info("review: decision %s on item %s", action, item_id)
        following = workbench.queue.next_item(replace(queue_filter(request, current), status="open"), item["seq"])
        query = filter_query(request)
        target = f"/item/{following['out']}/{following['item_id']}" if following else "/queue"
        return RedirectResponse(f"{target}?{query}" if query else target, status_code=303)

    @app.post("/item/{out}/{item_id}/assign")
    def assign(request: Request, out: int, item_id: str, assignee: str = Form(...), csrf: str = Form(""),
               current: dict[str, Any] = Depends(require("assign"))) -> Response:
        check_csrf(current, csrf)
        item = item_or_404(out, item_id)
        target = workbench.users.get(assignee)
        if target is None or not target.can("decide"):
            raise HTTPException(400, "assignee must be a reviewer or supervisor")
        decision = {**_decision(item, None, current["user"], "assign"), "assignee": assignee}
        row = workbench.queue.record(out, decision)
        workbench.audit(out, current["user"], "assign", facility_id=item["facility_id"], document_id=item["document_id"],
                        page_index=item["page_index"], item_id=item_id, detail=f"assign {row['decision_id']}")
        return RedirectResponse(f"/item/{out}/{item_id}", status_code=303)

    @app.post("/item/{out}/{item_id}/undo")
    def undo(out: int, item_id: str, decision_id: str = Form(...), csrf: str = Form(""),
             current: dict[str, Any] = Depends(require("undo"))) -> Response:
        check_csrf(current, csrf)
        item = item_or_404(out, item_id)
        history = workbench.queue.state(out, item_id).history
        if not any(d["decision_id"] == decision_id and d["action"] != "undo" for d in history):
            raise HTTPException(404, "no such decision on this item")
        decision = {**_decision(item, None, current["user"], "undo"), "undoes": decision_id}
        row = workbench.queue.record(out, decision)
        workbench.audit(out, current["user"], "undo", facility_id=item["facility_id"], document_id=item["document_id"],
                        page_index=item["page_index"], item_id=item_id, detail=f"undo {decision_id} by {row['decision_id']}")
        return RedirectResponse(f"/item/{out}/{item_id}", status_code=303)

    @app.post("/item/{out}/{item_id}/search")
    def search(out: int, item_id: str, q: str = Form(...), csrf: str = Form(""),
               current: dict[str, Any] = Depends(require("search"))) -> JSONResponse:
        check_csrf(current, csrf)
        item = item_or_404(out, item_id)
        try:
            index = workbench.terminology()
        except FileNotFoundError:
            raise HTTPException(503, "no terminology index: build one with `medrec index build`") from None
        workbench.audit(out, current["user"], "search", item_id=item_id, document_id=item["document_id"],
                        facility_id=item["facility_id"])
        return JSONResponse({"results": search_codes(index, item["kind"], q.strip(), 10)})

    # ------------------------------------------------------------------ audit

    @app.get("/audit", response_class=HTMLResponse)
    def audit_view(request: Request, out: int = 0, limit: int = 200,
                   current: dict[str, Any] = Depends(require("audit"))) -> HTMLResponse:
        if not 0 <= out < len(workbench.queue.outputs):
            raise HTTPException(404, "no such output")
        audit_log = workbench.queue.audit_logs[out]
        broken = audit_log.verify()
        rows = audit_log.rows()[-max(1, min(limit, 5000)):][::-1]
        workbench.audit(out, current["user"], "view_audit")
        return render(request, "audit.html", current, rows=rows, out=out, broken=broken,
                      outputs=list(range(len(workbench.queue.outputs))))

    return app


def _decision(item: dict[str, Any], entity: dict[str, Any] | None, user: User, action: str) -> dict[str, Any]:
    return {
        "decision_id": None, "decided_at": None, "reviewer": user.name, "role": user.role, "item_id": item["item_id"],
        "facility_id": item["facility_id"], "document_id": item["document_id"], "page_index": item["page_index"],
        "entity_id": item["entity_id"], "kind": item["kind"], "field": item["field"], "action": action,
        "value_before": item["value"],
        "code_system_before": entity["code_system"] if entity else None,
        "code_before": entity["code"] if entity else None,
    }


def _correction(decision: dict[str, Any], item: dict[str, Any], entity_row: dict[str, Any] | None,
                value_after: str, code: str) -> None:
    """Fill the after-values of a correction, checked by applying them to a copy of the entity."""
    if entity_row is None:
        raise ValueError("the entity is no longer in the entities table")
    entity = Entity.from_row({k: v for k, v in entity_row.items() if k in Entity.__dataclass_fields__})
    value_after = value_after.strip()
    if code:
        parts = code.split("|", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError("a code is chosen as system|code|display")
        correct_code(entity, parts[0], parts[1], parts[2] if len(parts) > 2 else None)
        decision.update(code_system_after=parts[0], code_after=parts[1],
                        code_display_after=parts[2] if len(parts) > 2 else None)
    if value_after and value_after != (item["value"] or "") and item["field"] != "code":
        correct_field(entity, item["field"], value_after)
        decision["value_after"] = value_after
    if not decision.get("code_after") and not decision.get("value_after"):
        raise ValueError("a correction needs a new value or another code")


def search_codes(index: Any, kind: str, query: str, k: int) -> list[dict[str, Any]]:
    """Concepts for the item's kind: by code when the query reads as one, else by text."""
    from pipeline.terminology import SYSTEMS_BY_KIND, code_readings

    if not query or kind not in SYSTEMS_BY_KIND:
        return []
    _, systems = SYSTEMS_BY_KIND[kind]
    found: list[dict[str, Any]] = []
    if _CODE_QUERY.match(query) and any(ch.isdigit() for ch in query):
        for system in systems:
            for code in dict.fromkeys([query, query.upper(), *code_readings(query)]):
                concept = index.concept(system, code)
                if concept is not None:
                    found.append({"system": system, "code": concept.code, "display": concept.display,
                                  "score": 1.0, "match": "code"})
    seen = {(f["system"], f["code"]) for f in found}
    for candidate in index.candidates(kind, query, k):
        if (candidate.system, candidate.code) not in seen:
            found.append({"system": candidate.system, "code": candidate.code, "display": candidate.display,
                          "score": round(candidate.score, 3), "match": candidate.match})
    return found[:k]


def workbench_from_config(outputs: list[Path], cfg: Any) -> Workbench:
    """The workbench a `medrec review` config describes (users file, secret, index, render settings)."""
    from pipeline.config import expand
    from pipeline.review.users import session_secret

    users_path = expand(cfg.review.users_file)
    secret_path = expand(cfg.review.secret_file) if cfg.review.secret_file else users_path.with_name(users_path.name + ".secret")
    index_path = expand(cfg.terminology.index_path)
    return Workbench(outputs, UserStore(users_path), session_secret(secret_path), cfg.review, cfg.render,
                     index_path if index_path.is_dir() else None)


def serve(outputs: list[Path], cfg: Any) -> None:
    """Run the workbench with uvicorn until interrupted."""
    import time

    import uvicorn

    started = time.perf_counter()
    workbench = workbench_from_config(outputs, cfg)
    counts = workbench.queue.counts(QueueFilter(status=None))
    print(f"review queue: {sum(counts.values())} items ({counts['open']} open, {counts['done']} done, "
          f"{counts['skipped']} skipped) from {len(outputs)} output folder(s), loaded in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    print(f"open http://{cfg.review.host}:{cfg.review.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(create_app(workbench), host=cfg.review.host, port=cfg.review.port, log_level="info",
                access_log=True)
