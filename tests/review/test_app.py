"""The workbench's HTTP endpoints through FastAPI's TestClient: login, roles, CSRF, decisions, audit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.config import RenderConfig, ReviewConfig
from pipeline.review.app import SESSION_COOKIE, Workbench, create_app
from pipeline.review.store import AuditLog, DecisionLog
from pipeline.review.users import UserStore
from tests.review.conftest import PASSWORDS

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def workbench(output: Path, users_file: Path, terminology_index_path: Path) -> Workbench:
    return Workbench([output], UserStore(users_file), b"k" * 32, ReviewConfig(), RenderConfig(), terminology_index_path)


@pytest.fixture
def client(workbench: Workbench) -> TestClient:
    return TestClient(create_app(workbench), follow_redirects=False)


def login(client: TestClient, name: str) -> str:
    """Log in as `name`; returns the session's CSRF token."""
    form = client.get("/login")
    token = _CSRF.search(form.text).group(1)
    answer = client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": token})
    assert answer.status_code == 303, answer.text
    return _CSRF.search(client.get(answer.headers["location"]).text).group(1)


def first_item(workbench: Workbench, field: str) -> dict:
    rows = [r for r in workbench.queue.page(workbench_filter(), 0, 100) if r["field"] == field]
    assert rows, f"the fixture's queue has no {field} item"
    return rows[0]


def workbench_filter():
    from pipeline.review.queue import QueueFilter

    return QueueFilter(status=None)


def test_login_needs_the_forms_csrf_token_and_the_right_password(client: TestClient):
    client.get("/login")
    assert client.post("/login", data={"username": "rita", "password": PASSWORDS["rita"], "csrf": "forged"}).status_code == 403
    token = _CSRF.search(client.get("/login").text).group(1)
    wrong = client.post("/login", data={"username": "rita", "password": "not-her-password", "csrf": token})
    assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.cookies
    unknown = client.post("/login", data={"username": "nobody", "password": "whatever-long", "csrf": token})
    assert unknown.status_code == 401


def test_session_cookie_is_signed_and_http_only(client: TestClient):
    token = _CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": "rita", "password": PASSWORDS["rita"], "csrf": token})
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header.replace("Strict", "strict")
    page = client.get("/queue")
    assert page.status_code == 200 and page.headers["cache-control"] == "private, no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    signed = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, signed[:-2] + ("xx" if not signed.endswith("xx") else "yy"))
    assert client.get("/queue").status_code == 303  # tampered: back to the login page


def test_no_session_is_sent_to_login_or_refused(client: TestClient, workbench: Workbench):
    item = first_item(workbench, "dose")
    assert client.get("/queue").headers["location"] == "/login"
    assert client.get(f"/item/0/{item['item_id']}/page.png").status_code == 303
    assert client.post(f"/item/0/{item['item_id']}/decide", data={"action": "accept", "csrf": "x"}).status_code == 401
    assert DecisionLog(workbench.queue.outputs[0]).rows() == []


def test_queue_lists_worst_first_with_counts_and_filters(client: TestClient, workbench: Workbench):
    login(client, "rita")
    page = client.get("/queue")
    assert page.status_code == 200
    rows = workbench.queue.page(workbench_filter(), 0, 100)
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)
    assert f"open <b>{len(rows)}</b>" in page.text
    only_dose = client.get("/queue", params={"kind": "medication"})
    assert only_dose.text.count('class="open-item"') == sum(r["kind"] == "medication" for r in rows)
    assert client.get("/queue", params={"status": "bogus"}).status_code == 400


def test_item_view_shows_value_reason_lines_and_candidates(client: TestClient, workbench: Workbench):
    login(client, "rita")
    item = first_item(workbench, "code")
    page = client.get(f"/item/0/{item['item_id']}")
    assert page.status_code == 200
    assert "Zorblatt wobble syndrome" in page.text and "uncoded" in page.text
    assert 'class="field-line"' in page.text and 'id="field-box"' in page.text
    image = client.get(f"/item/0/{item['item_id']}/page.png")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    actions = [r["action"] for r in AuditLog(workbench.queue.outputs[0]).rows()]
    assert "view_item" in actions and "view_page" in actions


def test_reviewer_corrects_a_value_and_moves_to_the_next_item(client: TestClient, workbench: Workbench):
    csrf = login(client, "rita")
    item = first_item(workbench, "dose")
    answer = client.post(f"/item/0/{item['item_id']}/decide",
                         data={"action": "correct", "value_after": "500 mg", "csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/item/0/")
    [decision] = DecisionLog(workbench.queue.outputs[0]).rows()
    assert decision["action"] == "correct" and decision["value_before"] == "5000 mg"
    assert decision["value_after"] == "500 mg" and decision["reviewer"] == "rita"
    assert workbench.queue.counts(workbench_filter())["done"] == 1
    audit = AuditLog(workbench.queue.outputs[0])
    assert [r for r in audit.rows() if r["action"] == "decide"] and audit.verify() is None


def test_a_correction_that_cannot_apply_is_refused_and_not_recorded(client: TestClient, workbench: Workbench):
    csrf = login(client, "rita")
    item = first_item(workbench, "dose")
    answer = client.post(f"/item/0/{item['item_id']}/decide", data={"action": "correct", "value_after": "lots", "csrf": csrf})
    assert answer.status_code == 303 and "error=" in answer.headers["location"]
    same = client.post(f"/item/0/{item['item_id']}/decide", data={"action": "correct", "value_after": "5000 mg", "csrf": csrf})
    assert "error=" in same.headers["location"]
    assert DecisionLog(workbench.queue.outputs[0]).rows() == []


def test_every_form_checks_the_csrf_token(client: TestClient, workbench: Workbench):
    login(client, "sam")
    item = first_item(workbench, "dose")
    base = f"/item/0/{item['item_id']}"
    for path, data in ((f"{base}/decide", {"action": "accept"}), (f"{base}/assign", {"assignee": "rita"}),
                       (f"{base}/undo", {"decision_id": "x"}), (f"{base}/search", {"q": "diabetes"}), ("/logout", {})):
        assert client.post(path, data={**data, "csrf": "wrong"}).status_code == 403, path
        assert client.post(path, data=data).status_code == 403, path
    assert DecisionLog(workbench.queue.outputs[0]).rows() == []


def test_roles_are_enforced(client: TestClient, workbench: Workbench):
    item = first_item(workbench, "dose")
    csrf = login(client, "alex")  # auditor: the audit log only
    assert client.get("/audit").status_code == 200
    assert client.get("/queue").status_code == 403
    assert client.get(f"/item/0/{item['item_id']}/page.png").status_code == 403
    assert client.post(f"/item/0/{item['item_id']}/decide", data={"action": "accept", "csrf": csrf}).status_code == 403
    client.cookies.clear()
    csrf = login(client, "rita")  # reviewer: no audit log, no reassigning, no undo
    assert client.get("/audit").status_code == 403
    assert client.post(f"/item/0/{item['item_id']}/assign", data={"assignee": "sam", "csrf": csrf}).status_code == 403
    assert client.post(f"/item/0/{item['item_id']}/undo", data={"decision_id": "x", "csrf": csrf}).status_code == 403


def test_supervisor_reassigns_and_undoes(client: TestClient, workbench: Workbench):
    csrf = login(client, "sam")
    item = first_item(workbench, "dose")
    base = f"/item/0/{item['item_id']}"
    assert client.post(f"{base}/assign", data={"assignee": "rita", "csrf": csrf}).status_code == 303
    assert client.post(f"{base}/assign", data={"assignee": "alex", "csrf": csrf}).status_code == 400  # an auditor cannot review
    assert workbench.queue.state(0, item["item_id"]).assignee == "rita"
    client.post(f"{base}/decide", data={"action": "reject", "csrf": csrf})
    rejected = [d for d in DecisionLog(workbench.queue.outputs[0]).rows() if d["action"] == "reject"][0]
    assert client.post(f"{base}/undo", data={"decision_id": rejected["decision_id"], "csrf": csrf}).status_code == 303
    assert workbench.queue.state(0, item["item_id"]).status == "open"
    assert [d["action"] for d in DecisionLog(workbench.queue.outputs[0]).rows()] == ["assign", "reject", "undo"]
    assert client.post(f"{base}/undo", data={"decision_id": "not-a-decision", "csrf": csrf}).status_code == 404


def test_requests_cannot_reach_files_outside_the_output(client: TestClient, workbench: Workbench):
    login(client, "rita")
    item = first_item(workbench, "dose")
    for path in ("/item/1/" + item["item_id"], "/item/-1/" + item["item_id"] + "/page.png", "/item/0/..%2F..%2Fetc%2Fpasswd",
                 "/item/0/../../etc/passwd/page.png", "/static/../../pyproject.toml", "/static/%2e%2e/app.py"):
        assert client.get(path).status_code == 404, path
    assert client.get("/audit", params={"out": 3}).status_code in (403, 404)


def test_terminology_search_by_text_and_by_code(client: TestClient, workbench: Workbench):
    csrf = login(client, "rita")
    item = first_item(workbench, "code")
    by_text = client.post(f"/item/0/{item['item_id']}/search", data={"q": "essential hypertension", "csrf": csrf}).json()
    assert any(r["code"] == "I10" for r in by_text["results"])
    by_code = client.post(f"/item/0/{item['item_id']}/search", data={"q": "E11.9", "csrf": csrf}).json()
    assert by_code["results"][0]["code"] == "E11.9" and by_code["results"][0]["match"] == "code"
    answer = client.post(f"/item/0/{item['item_id']}/decide",
                         data={"action": "correct", "code": "http://hl7.org/fhir/sid/icd-10-cm|E11.9|Type 2 diabetes mellitus without complications", "csrf": csrf})
    assert answer.status_code == 303
    decision = DecisionLog(workbench.queue.outputs[0]).rows()[-1]
    assert decision["code_after"] == "E11.9" and decision["code_before"] is None


def test_auditor_reads_the_chained_log(client: TestClient, workbench: Workbench):
    csrf = login(client, "rita")
    item = first_item(workbench, "dose")
    client.get(f"/item/0/{item['item_id']}")
    client.post(f"/item/0/{item['item_id']}/decide", data={"action": "skip", "csrf": csrf})
    client.cookies.clear()
    login(client, "alex")
    page = client.get("/audit")
    assert "Hash chain intact" in page.text and "view_item" in page.text and "skip" in page.text
    audit_path = workbench.queue.outputs[0] / "review" / "audit.jsonl"
    lines = audit_path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["user"] = "someone-else"
    audit_path.write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True), *lines[2:]]) + "\n")
    assert "Hash chain broken at row 2" in client.get("/audit").text
