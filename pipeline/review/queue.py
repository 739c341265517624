"""The review queue over one or more output folders, paged server-side with DuckDB.

At start the queue files are read once into an in-memory DuckDB table with a stable item
id, the document type and a rank (`seq`, worst first). Each screen is then one
keyset query (`seq > last seen`, LIMIT n) joined with the item states the decision logs
add up to, so a queue of a million rows pages as quickly as one of ten. Entities and page
lines are read from the output's Parquet tables per item, never held.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.review.store import AuditLog, DecisionLog, ItemState, item_states
from pipeline.store import output_table, table_parts

TABLES_DIR = "tables"
QUEUE_TABLE = "review_queue"
ENTITIES_TABLE = "entities"
PAGES_TABLE = "pages"
STATUSES = ("open", "done", "skipped")


def _literal(path: Path) -> str:
    """A server-side path as a SQL string literal (paths come from the command line, not requests)."""
    return "'" + str(path).replace("'", "''") + "'"


def _parquet(path: Path) -> str:
    """A table as `read_parquet`'s argument: its file, or the part files of a table folder."""
    return "[" + ", ".join(_literal(p) for p in table_parts(path) or [path]) + "]"


@dataclass(frozen=True)
class QueueFilter:
    """What the reviewer narrowed the queue to; None means any."""

    facility_id: str | None = None
    document_type: str | None = None
    kind: str | None = None
    reason: str | None = None  # a rule id or flag name (the part of a reason before ':')
    min_priority: float | None = None
    status: str | None = "open"
    assignee: str | None = None

    def where(self, with_status: bool = True) -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        for column, value in (("q.facility_id", self.facility_id), ("q.document_type", self.document_type),
                              ("q.kind", self.kind), ("s.assignee", self.assignee)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.reason:
            clauses.append("list_contains(q.reason_codes, ?)")
            params.append(self.reason)
        if self.min_priority is not None:
            clauses.append("q.priority >= ?")
            params.append(self.min_priority)
        if with_status and self.status:
            clauses.append("coalesce(s.status, 'open') = ?")
            params.append(self.status)
        return " AND ".join(clauses), params


class ReviewQueue:
    """Every output folder's queue as one worst-first list; items addressed by (out, item_id)."""

    def __init__(self, outputs: list[Path]):
        self.outputs = [Path(o).resolve() for o in outputs]
        for output in self.outputs:
            if not table_parts(output_table(output / TABLES_DIR, QUEUE_TABLE)):
                raise FileNotFoundError(f"{output} has no {TABLES_DIR}/{QUEUE_TABLE}: is it a medrec output folder?")
        self.decision_logs = [DecisionLog(o) for o in self.outputs]
        self.audit_logs = [AuditLog(o) for o in self.outputs]
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()  # one writer of the states table at a time
        self._states: list[dict[str, ItemState]] = []
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        selects = []
        for out, output in enumerate(self.outputs):
            tables = output / TABLES_DIR
            pages = output_table(tables, PAGES_TABLE)
            # A document's type: the manifest's hint, else the classifier's confidence-weighted vote.
            doc_types = (
                f"(SELECT h.facility_id, h.document_id, coalesce(h.hint, v.voted, 'other') AS document_type FROM "
                f"(SELECT facility_id, document_id, max(document_type) AS hint FROM read_parquet({_parquet(pages)}) "
                f" GROUP BY ALL) h LEFT JOIN "
                f"(SELECT facility_id, document_id, arg_max(t, w) AS voted FROM "
                f"  (SELECT facility_id, document_id, document_type_predicted AS t, "
                f"   sum(coalesce(document_type_confidence, 0.01)) AS w FROM read_parquet({_parquet(pages)}) "
                f"   WHERE document_type_predicted IS NOT NULL GROUP BY ALL) GROUP BY ALL) v "
                f"USING (facility_id, document_id))"
            ) if table_parts(pages) else "(SELECT NULL::VARCHAR AS facility_id, NULL::VARCHAR AS document_id, NULL::VARCHAR AS document_type WHERE FALSE)"
            selects.append(
                f"SELECT {out}::INTEGER AS out, q.*, d.document_type, "
                "md5(concat_ws('|', q.facility_id, q.document_id, q.entity_id, q.field, coalesce(q.reason, '')))[1:16] AS item_id, "
                "list_transform(string_split(coalesce(q.reason, ''), '; '), lambda x: trim(split_part(x, ':', 1))) AS reason_codes "
                f"FROM read_parquet({_parquet(output_table(tables, QUEUE_TABLE))}) q LEFT JOIN {doc_types} d "
                "USING (facility_id, document_id)"
            )
        self._db.execute(
            "CREATE TABLE queue AS SELECT *, row_number() OVER (ORDER BY priority DESC, out, entity_id, field, reason) AS seq "
            f"FROM ({' UNION ALL '.join(selects)})"
        )
        # No ART indexes: DuckDB scans a million rows for one item in ~8 ms of CPU, and building
        # the index cost more at start than it saved (measured on the 1M-row benchmark queue).
        self._db.execute("CREATE TABLE states (out INTEGER, item_id VARCHAR, status VARCHAR, assignee VARCHAR, "
                         "PRIMARY KEY (out, item_id))")
        for out, log in enumerate(self.decision_logs):
            states = item_states(log.rows())
            self._states.append(states)
            rows = [(out, item_id, s.status, s.assignee) for item_id, s in states.items()]
            if rows:
                self._db.executemany("INSERT INTO states VALUES (?, ?, ?, ?)", rows)
        self.facets = self._facets()

    def _facets(self) -> dict[str, list[str]]:
        cursor = self._db.cursor()
        facets = {}
        for name, column in (("facility_id", "facility_id"), ("document_type", "document_type"), ("kind", "kind")):
            facets[name] = [r[0] for r in cursor.execute(
                f"SELECT DISTINCT {column} FROM queue WHERE {column} IS NOT NULL ORDER BY 1").fetchall()]
        facets["reason"] = [r[0] for r in cursor.execute(
            "SELECT DISTINCT code FROM (SELECT unnest(reason_codes) AS code FROM queue) WHERE code <> '' ORDER BY 1"
        ).fetchall()]
        return facets

    # ------------------------------------------------------------------ reading

    def page(self, where: QueueFilter, after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Up to `limit` items after rank `after_seq`, worst first."""
        clause, params = where.where()
        cursor = self._db.cursor()
        result = cursor.execute(
            "SELECT q.out, q.item_id, q.seq, q.facility_id, q.document_id, q.document_type, q.page_index, q.entity_id, q.kind, "
            "q.field, q.value, q.confidence, q.reason, q.priority, coalesce(s.status, 'open') AS status, s.assignee "
            f"FROM queue q LEFT JOIN states s USING (out, item_id) WHERE q.seq > ? AND {clause} "
            "ORDER BY q.seq LIMIT ?", [after_seq, *params, limit])
        return _dicts(result)

    def counts(self, where: QueueFilter) -> dict[str, int]:
        """Items by status under the filter's other conditions."""
        clause, params = where.where(with_status=False)
        cursor = self._db.cursor()
        found = dict(cursor.execute(
            f"SELECT coalesce(s.status, 'open'), count(*) FROM queue q LEFT JOIN states s USING (out, item_id) "
            f"WHERE {clause} GROUP BY 1", params).fetchall())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def item(self, out: int, item_id: str) -> dict[str, Any] | None:
        if not 0 <= out < len(self.outputs):
            return None
        rows = _dicts(self._db.cursor().execute("SELECT * EXCLUDE (reason_codes) FROM queue WHERE out = ? AND item_id = ?",
                                                [out, item_id]))
        if not rows:
            return None
        row = rows[0]
        row["bbox"] = list(row["bbox"] or [])
        return row

    def next_item(self, where: QueueFilter, after_seq: int) -> dict[str, Any] | None:
        found = self.page(where, after_seq, 1)
        return found[0] if found else None

    def state(self, out: int, item_id: str) -> ItemState:
        return self._states[out].get(item_id, ItemState())

    def entity(self, out: int, item: dict[str, Any]) -> dict[str, Any] | None:
        """The item's entity row from the output's entities table."""
        path = output_table(self.outputs[out] / TABLES_DIR, ENTITIES_TABLE)
        rows = _dicts(self._db.cursor().execute(
            f"SELECT * FROM read_parquet({_parquet(path)}) WHERE facility_id = ? AND document_id = ? AND entity_id = ? LIMIT 1",
            [item["facility_id"], item["document_id"], item["entity_id"]]))
        return rows[0] if rows else None

    def page_row(self, out: int, facility_id: str, document_id: str, page_index: int) -> dict[str, Any] | None:
        """The page's row of the pages table: source, size at its rendered DPI, lines."""
        if not 0 <= out < len(self.outputs):
            return None
        path = output_table(self.outputs[out] / TABLES_DIR, PAGES_TABLE)
        rows = _dicts(self._db.cursor().execute(
            "SELECT facility_id, document_id, page_index, source_uri, media_type, image_width, image_height, dpi, lines "
            f"FROM read_parquet({_parquet(path)}) WHERE facility_id = ? AND document_id = ? AND page_index = ? LIMIT 1",
            [facility_id, document_id, page_index]))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ writing

    def record(self, out: int, decision: dict[str, Any]) -> dict[str, Any]:
        """Append a decision to the output's log and update the item's state."""
        with self._lock:
            row = self.decision_logs[out].append(decision)
            history = [*self.state(out, row["item_id"]).history, row]
            state = item_states(history)[row["item_id"]]
            self._states[out][row["item_id"]] = state
            cursor = self._db.cursor()
            cursor.execute("DELETE FROM states WHERE out = ? AND item_id = ?", [out, row["item_id"]])
            cursor.execute("INSERT INTO states VALUES (?, ?, ?, ?)", [out, row["item_id"], state.status, state.assignee])
        return row


def _dicts(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def lines_around(lines: list[dict[str, Any]], line_ids: list[int], around: int) -> list[dict[str, Any]]:
    """The field's lines and `around` lines above and below in reading order, each marked."""
    ordered = sorted(lines or [], key=lambda line: (line["bbox"][1], line["bbox"][0]) if line.get("bbox") else (0, 0))
    wanted = set(line_ids or [])
    positions = [i for i, line in enumerate(ordered) if line["line_id"] in wanted]
    if not positions:
        return []
    start, end = max(0, min(positions) - around), min(len(ordered), max(positions) + around + 1)
    return [{"text": line["text"], "confidence": line["confidence"], "line_id": line["line_id"],
             "is_field": line["line_id"] in wanted} for line in ordered[start:end]]
