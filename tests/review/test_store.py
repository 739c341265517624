"""The append-only decision and audit logs, and what the decisions add up to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.review.store import AuditLog, DecisionLog, item_id_of, item_states


def decision(item: str, action: str, **extra) -> dict:
    return {"reviewer": "rita", "role": "reviewer", "item_id": item, "action": action, **extra}


def test_decisions_are_appended_never_rewritten(tmp_path: Path):
    log = DecisionLog(tmp_path)
    first = log.append(decision("i1", "accept"))
    before = log.path.read_bytes()
    second = log.append(decision("i1", "correct", value_before="5000 mg", value_after="500 mg"))
    assert log.path.read_bytes().startswith(before)
    assert [r["decision_id"] for r in log.rows()] == [first["decision_id"], second["decision_id"]]
    assert first["decided_at"].endswith("Z") and log.table().num_rows == 2


def test_a_decision_must_fit_the_schema(tmp_path: Path):
    log = DecisionLog(tmp_path)
    with pytest.raises(ValueError):
        log.append(decision("i1", "approve"))
    with pytest.raises((TypeError, ValueError)):
        log.append(decision("i1", "accept", page_index="first"))
    with pytest.raises((TypeError, ValueError)):
        log.append({"item_id": "i1", "action": "accept"})  # no reviewer
    assert log.rows() == []


def test_item_states_fold_decisions_assignments_and_undos():
    rows = [
        {"decision_id": "d1", "item_id": "a", "action": "accept"},
        {"decision_id": "d2", "item_id": "a", "action": "correct", "value_after": "x"},
        {"decision_id": "d3", "item_id": "a", "action": "undo", "undoes": "d2"},
        {"decision_id": "d4", "item_id": "b", "action": "skip"},
        {"decision_id": "d5", "item_id": "c", "action": "assign", "assignee": "rita"},
        {"decision_id": "d6", "item_id": "c", "action": "assign", "assignee": "sam"},
        {"decision_id": "d7", "item_id": "c", "action": "reject"},
        {"decision_id": "d8", "item_id": "c", "action": "undo", "undoes": "d7"},
    ]
    states = item_states(rows)
    assert states["a"].status == "done" and states["a"].decision["decision_id"] == "d1"
    assert states["b"].status == "skipped"
    assert states["c"].status == "open" and states["c"].assignee == "sam" and len(states["c"].history) == 4


def test_item_ids_are_stable_and_distinct():
    a = item_id_of("fac", "doc", "ent-1", "dose", "dose-metformin: ...")
    assert a == item_id_of("fac", "doc", "ent-1", "dose", "dose-metformin: ...")
    assert a != item_id_of("fac", "doc", "ent-1", "unit", "dose-metformin: ...") and len(a) == 16


def test_the_audit_chain_shows_an_edited_or_deleted_row(tmp_path: Path):
    log = AuditLog(tmp_path)
    for action in ("login", "view_item", "view_page", "decide"):
        log.append("rita", "reviewer", action, document_id="doc-1", page_index=0)
    assert log.verify() is None
    # A new process continues the chain from the file.
    AuditLog(tmp_path).append("rita", "reviewer", "logout")
    assert log.verify() is None and len(log.rows()) == 5
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # a row removed
    assert log.verify() == 2
    edited = json.loads(lines[0])
    edited["user"] = "mallory"
    log.path.write_text("\n".join([json.dumps(edited, sort_keys=True), *lines[1:]]) + "\n")
    assert log.verify() == 1
