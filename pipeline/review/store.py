"""The workbench's two append-only logs in each output folder, and what the decisions add up to.

`OUT/review/decisions.jsonl` holds one row per reviewer action (schema
`DECISION_SCHEMA`); `OUT/review/audit.jsonl` one row per view of an item or page image
and per decision (schema `AUDIT_SCHEMA`), each row carrying the hash of the line before it.
Both are only ever opened for appending: a correction of a decision is a later row (an
`undo`, a new decision), never an edit. JSON Lines rather than Parquet because rows come
one at a time from a web request and each must be durable before the answer is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.schemas import AUDIT_SCHEMA, DECISION_SCHEMA

REVIEW_DIR = "review"
DECISIONS_FILE = "decisions.jsonl"
AUDIT_FILE = "audit.jsonl"
ITEM_ACTIONS = ("accept", "correct", "reject", "skip")
ACTIONS = ITEM_ACTIONS + ("assign", "undo")
GENESIS = "0" * 64  # the `prev` of the first audit row


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_id_of(facility_id: str, document_id: str, entity_id: str, field_name: str, reason: str | None) -> str:
    """A queue row's stable id: the same flagged field keeps it across server restarts.
    (`pipeline.review.queue` computes the same digest in SQL.)"""
    key = "|".join((facility_id, document_id, entity_id, field_name, reason or ""))
    return hashlib.md5(key.encode()).hexdigest()[:16]


class _AppendOnly:
    """A JSON Lines file written by appending whole lines, each flushed and fsynced."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = path, schema
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def _append_line(self, line: str) -> None:
        # O_APPEND: every write lands at the end, whatever else holds the file open.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _checked(self, row: dict[str, Any]) -> None:
        """Raise unless the row fits the schema: types, and values where a column is required."""
        missing = [f.name for f in self.schema if not f.nullable and row.get(f.name) in (None, "")]
        if missing:
            raise ValueError(f"{self.path.name}: missing {missing}")
        pa.Table.from_pylist([row], schema=self.schema)  # raises on a value of the wrong type

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows(), schema=self.schema)


class DecisionLog(_AppendOnly):
    """Reviewer decisions of one output folder."""

    def __init__(self, output: Path):
        super().__init__(output / REVIEW_DIR / DECISIONS_FILE, DECISION_SCHEMA)

    def append(self, decision: dict[str, Any]) -> dict[str, Any]:
        """Complete (id, time), check against the schema, append; returns the stored row."""
        if decision.get("action") not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        row = {name: None for name in self.schema.names}
        row.update(decision)
        row["decision_id"] = row["decision_id"] or str(uuid.uuid4())
        row["decided_at"] = row["decided_at"] or now_iso()
        self._checked(row)
        with self._lock:
            self._append_line(json.dumps(row, sort_keys=True))
        return row


class AuditLog(_AppendOnly):
    """Access audit log of one output folder, hash-chained."""

    def __init__(self, output: Path):
        super().__init__(output / REVIEW_DIR / AUDIT_FILE, AUDIT_SCHEMA)
        self._last: str | None = None

    def append(self, user: str, role: str | None, action: str, **lineage: Any) -> None:
        row = {name: None for name in self.schema.names}
        row.update(lineage, at=now_iso(), user=user, role=role, action=action)
        with self._lock:
            if self._last is None:
                self._last = self._last_hash()
            row["prev"] = self._last
            self._checked(row)
            line = json.dumps(row, sort_keys=True)
            self._append_line(line)
            self._last = hashlib.sha256(line.encode()).hexdigest()

    def _last_hash(self) -> str:
        last = GENESIS
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        last = hashlib.sha256(line.rstrip("\n").encode()).hexdigest()
        return last

    def verify(self) -> int | None:
        """The 0-based number of the first row whose chain is broken, or None when intact."""
        expected = GENESIS
        if not self.path.is_file():
            return None
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(l for l in handle if l.strip()):
                line = line.rstrip("\n")
                if json.loads(line).get("prev") != expected:
                    return number
                expected = hashlib.sha256(line.encode()).hexdigest()
        return None


@dataclass
class ItemState:
    """What the decisions so far say about one queue item."""

    status: str = "open"  # open | done | skipped
    decision: dict[str, Any] | None = None  # the accept/correct/reject/skip in force
    assignee: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def item_states(decisions: list[dict[str, Any]]) -> dict[str, ItemState]:
    """Fold the log in order: the latest item decision not undone is in force; the latest
    assignment holds. Undoing an undo is not offered, so an undo cancels one decision for good."""
    undone = {d["undoes"] for d in decisions if d["action"] == "undo" and d.get("undoes")}
    states: dict[str, ItemState] = {}
    for d in decisions:
        state = states.setdefault(d["item_id"], ItemState())
        state.history.append(d)
        if d["action"] == "assign" and d["decision_id"] not in undone:
            state.assignee = d.get("assignee")
    for state in states.values():
        # An undo brings back the decision before the undone one, if any.
        in_force = [d for d in state.history if d["action"] in ITEM_ACTIONS and d["decision_id"] not in undone]
        state.decision = in_force[-1] if in_force else None
        if state.decision is None:
            state.status = "open"
        else:
            state.status = "skipped" if state.decision["action"] == "skip" else "done"
    return states
