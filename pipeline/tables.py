"""Streaming Parquet writers for the output tables, and the per-document index kept while writing.

The driver consumes the graph batch by batch: page rows go to `tables/pages.parquet`,
their entities to a staging file, failed pages to the quarantine table. Pages are not
held; a small summary per document is (patient key votes, type votes, page count), so
driver memory grows with the number of documents, not pages or entities.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import Entity
from pipeline.schemas import (
    ENTITIES_TABLE_SCHEMA,
    ENTITY_FIELDS,
    FLAGS_TABLE_SCHEMA,
    PAGES_TABLE_SCHEMA,
    QUARANTINE_SCHEMA,
    REVIEW_QUEUE_SCHEMA,
)
from pipeline.stages.validate import DocumentFacts, Finding, RuleEngine, apply_findings, review_rows

STAGED_ENTITY_SCHEMA = pa.schema([pa.field("facility_id", pa.string()), pa.field("document_id", pa.string())]
                                 + ENTITY_FIELDS)

# Document context carried on every entity row so assembly needs nothing else.
DOCUMENT_FIELDS = [
    pa.field("source_uri", pa.string()),
    pa.field("media_type", pa.string()),
    pa.field("document_type", pa.string()),
    pa.field("page_count", pa.int32()),
]
ASSEMBLY_INPUT_SCHEMA = pa.schema(list(ENTITIES_TABLE_SCHEMA) + DOCUMENT_FIELDS)


@dataclass
class DocumentSummary:
    """What the run learns about one document while its pages stream past."""

    facility_id: str
    source_uri: str
    media_type: str
    pages_ok: int = 0
    pages_failed: int = 0
    mrn_votes: Counter[str] = field(default_factory=Counter)
    type_votes: Counter[str] = field(default_factory=Counter)
    mrn_hint: str | None = None
    type_hint: str | None = None
    # Dates and fact fingerprints for the document rules, which need every page.
    facts: DocumentFacts = field(default_factory=DocumentFacts)

    @property
    def document_type(self) -> str:
        if self.type_hint:
            return self.type_hint
        return self.type_votes.most_common(1)[0][0] if self.type_votes else "other"

    @classmethod
    def for_row(cls, row: dict[str, Any]) -> "DocumentSummary":
        """An empty summary for the document of this page row (its manifest hints included)."""
        return cls(row["facility_id"], row["source_uri"], row["media_type"], mrn_hint=row.get("mrn"),
                   type_hint=row.get("document_type"))

    def take_page(self, row: dict[str, Any], rules: RuleEngine | None
                  ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
        """Count one validated page row into the summary; returns its pages-table row (None when
        failed), its staged entity rows and its quarantine row (None when healthy)."""
        if row.get("error_stage"):
            self.pages_failed += 1
            return None, [], {
                "facility_id": row["facility_id"], "document_id": row["document_id"],
                "page_index": row["page_index"], "source_uri": row["source_uri"],
                "stage": row["error_stage"], "error_type": row["error_type"],
                "message": row["error_message"], "resource_type": None,
            }
        self.pages_ok += 1
        if row.get("document_type_predicted"):
            # Votes weighted by confidence: a sure title page outweighs unsure continuation pages.
            self.type_votes[row["document_type_predicted"]] += row.get("document_type_confidence") or 0.01
        entities = []
        for entity in row.get("entities") or []:
            if entity["kind"] == "demographic" and entity["attribute"] == "mrn" and entity["value"]:
                self.mrn_votes[entity["value"]] += 1
            entities.append({"facility_id": row["facility_id"], "document_id": row["document_id"], **entity})
            if rules is not None:
                self.facts.observe(Entity.from_row(entity), rules.duplicate_kinds)
        return {name: row.get(name) for name in PAGES_TABLE_SCHEMA.names}, entities, None

    def patient_key(self, document_id: str) -> str:
        """Facility + MRN when the pages show one; else the document stands alone (and is flagged)."""
        mrn = self.mrn_hint or (self.mrn_votes.most_common(1)[0][0] if self.mrn_votes else None)
        return f"{self.facility_id}|mrn:{mrn}" if mrn else f"{self.facility_id}|doc:{document_id}"


def is_blank(page: dict[str, Any]) -> bool:
    """A processed page with no text and no check box (the back of a sheet)."""
    return not page.get("lines") and not page.get("checkboxes")


@dataclass
class StageTiming:
    """One stage's work, summed from the timing entries of the rows that leave the graph.

    Sums and extremes only, so it stays a few numbers per stage however many pages pass.
    """

    busy_seconds: float = 0.0
    pages_in: int = 0  # healthy pages the stage was given
    pages_failed: int = 0  # of those, pages the stage quarantined
    first_started: float = float("inf")  # epoch seconds
    first_ended: float = float("inf")
    last_ended: float = float("-inf")

    @property
    def pages_out(self) -> int:
        return self.pages_in - self.pages_failed

    def add(self, timing: dict[str, Any], failed_here: bool) -> None:
        self.busy_seconds += timing["seconds"]
        self.pages_in += 1
        self.pages_failed += int(failed_here)
        if timing.get("ended") is not None:
            self.first_started = min(self.first_started, timing["started"])
            self.first_ended = min(self.first_ended, timing["ended"])
            self.last_ended = max(self.last_ended, timing["ended"])


class _Writer:
    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema, self.rows = path, schema, 0
        self._writer = pq.ParquetWriter(path, schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
            self.rows += len(rows)

    def close(self) -> None:
        self._writer.close()


class PageTableWriter:
    """Splits each streamed batch of page rows into the pages, staged-entities and quarantine tables."""

    def __init__(self, tables_dir: Path, quarantine_path: Path, rules: RuleEngine | None = None):
        tables_dir.mkdir(parents=True, exist_ok=True)
        self.rules = rules  # None: document rules ran only over the pages each validate batch held
        self.pages = _Writer(tables_dir / "pages.parquet", PAGES_TABLE_SCHEMA)
        self.staged_entities = _Writer(tables_dir / "_entities_staged.parquet", STAGED_ENTITY_SCHEMA)
        self.quarantine = _Writer(quarantine_path, QUARANTINE_SCHEMA)
        # One small summary per document (not per page): patient and type votes for assembly.
        self.documents: dict[tuple[str, str], DocumentSummary] = {}
        # LLM backends: pages by extract_source (llm / llm_repaired / llm_fallback) and output tokens.
        self.llm_pages: Counter[str] = Counter()
        self.llm_output_tokens = 0
        self.stage_timings: dict[str, StageTiming] = {}
        self.blank_pages = 0  # processed pages with no text and no check box (the backs of sheets)

    def write_batch(self, batch: pa.Table) -> tuple[int, int]:
        """Write one batch; returns (pages ok, pages quarantined)."""
        pages, entities, quarantined = [], [], []
        for row in batch.to_pylist():
            summary = self.documents.setdefault(
                (row["facility_id"], row["document_id"]), DocumentSummary.for_row(row))
            for timing in row.get("timings") or []:
                self.stage_timings.setdefault(timing["stage"], StageTiming()).add(
                    timing, failed_here=row.get("error_stage") == timing["stage"])
            self.blank_pages += int(not row.get("error_stage") and is_blank(row))
            if row.get("extract_source") and not row.get("error_stage"):
                self.llm_pages[row["extract_source"]] += 1
                self.llm_output_tokens += row.get("llm_output_tokens") or 0
            page, page_entities, failure = summary.take_page(row, self.rules)
            pages += [page] if page else []
            entities += page_entities
            quarantined += [failure] if failure else []
        self.pages.write(pages)
        self.staged_entities.write(entities)
        self.quarantine.write(quarantined)
        return len(pages), len(quarantined)

    def close_pages(self) -> None:
        self.pages.close()
        self.staged_entities.close()


# Up to this many flagged fields, the review queue file is rewritten sorted worst first;
# beyond it, it stays in arrival order (sort by `priority` when reading) so memory stays bounded.
REVIEW_SORT_LIMIT = 1_000_000
_ENTITY_COLUMNS = [f.name for f in ENTITY_FIELDS]


def document_findings_of(documents: dict[tuple[str, str], DocumentSummary], rules: RuleEngine | None
                       ) -> dict[tuple[str, str, str], list[Finding]]:
    """Findings of the document rules over whole documents, by (facility, document, entity id);
    only entities a rule fired on."""
    found: dict[tuple[str, str, str], list[Finding]] = {}
    if rules is None:
        return found
    for (facility_id, document_id), summary in documents.items():
        for finding in rules.document_findings(summary.facts, facility_id):
            found.setdefault((facility_id, document_id, finding.entity_id), []).append(finding)
    return found


# Flag on every entity of a document held back from FHIR: too many of its pages were quarantined.
DOCUMENT_HELD_BACK = "document_held_back"


def is_held_back(pages_ok: int, pages_failed: int, max_error_rate: float | None) -> bool:
    """A document with good pages whose share of quarantined pages exceeds `max_error_rate`
    (None: hold none back). A document with no good page is in quarantine already."""
    return max_error_rate is not None and bool(pages_ok) and pages_failed / (pages_ok + pages_failed) > max_error_rate


def held_back_documents(documents: dict[tuple[str, str], DocumentSummary],
                        max_error_rate: float | None) -> set[tuple[str, str]]:
    return {key for key, d in documents.items() if is_held_back(d.pages_ok, d.pages_failed, max_error_rate)}


def finish_entity_row(row: dict[str, Any], document: DocumentSummary,
                      document_findings: dict[tuple[str, str, str], list[Finding]], rules: RuleEngine | None,
                      held: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Complete one staged entity row in place (whole-document rule flags, patient key, the
    hold of a held-back document); returns its flags-table rows and review-queue rows."""
    queue_rows = []
    if held:
        row["flags"] = sorted(set(row["flags"] or []) | {DOCUMENT_HELD_BACK})
        row["requires_review"] = True
    if rules is not None:
        entity = Entity.from_row({name: row[name] for name in _ENTITY_COLUMNS})
        key = (row["facility_id"], row["document_id"], entity.entity_id)
        apply_findings(entity, document_findings.get(key, []), rules.config.min_confidence)
        if held:  # apply_findings recomputes the flags: the hold stays among them
            entity.flags = sorted(set(entity.flags) | {DOCUMENT_HELD_BACK})
            entity.requires_review = True
        row.update(entity.to_row())
        lineage = {"facility_id": row["facility_id"], "document_id": row["document_id"],
                   "page_index": row["page_index"], "bbox": row["bbox"], "entity_id": row["entity_id"],
                   "kind": row["kind"]}
        queue_rows = [{**lineage, **item} for item in review_rows(entity, rules.by_id, rules.config.min_confidence)]
    row["patient_key"] = document.patient_key(row["document_id"])
    flag_rows = [{"facility_id": row["facility_id"], "document_id": row["document_id"],
                  "page_index": row["page_index"], "entity_id": row["entity_id"],
                  "kind": row["kind"], "flag": flag, "bbox": row["bbox"]} for flag in row["flags"] or []]
    return flag_rows, queue_rows


def assembly_row(row: dict[str, Any], document: DocumentSummary) -> dict[str, Any]:
    """An entities-table row with the document context assembly needs."""
    return {**row, "source_uri": document.source_uri, "media_type": document.media_type,
            "document_type": document.document_type, "page_count": document.pages_ok + document.pages_failed}


def finish_entity_tables(tables_dir: Path, documents: dict[tuple[str, str], DocumentSummary],
                         rules: RuleEngine | None = None,
                         max_document_error_rate: float | None = None) -> tuple[Path, dict[str, int]]:
    """Staged entities -> `entities.parquet` (with patient keys and whole-document rule flags),
    `flags.parquet`, `review_queue.parquet` and the assembly input; streamed batch by batch.
    A document held back (too many pages quarantined) keeps its entities, flagged for review,
    out of the assembly input. Returns the assembly input path and counts."""
    staged = tables_dir / "_entities_staged.parquet"
    entities = _Writer(tables_dir / "entities.parquet", ENTITIES_TABLE_SCHEMA)
    flags = _Writer(tables_dir / "flags.parquet", FLAGS_TABLE_SCHEMA)
    review = _Writer(tables_dir / "review_queue.parquet", REVIEW_QUEUE_SCHEMA)
    document_findings = document_findings_of(documents, rules)
    held_back = held_back_documents(documents, max_document_error_rate)
    assembly_path = tables_dir / "_assembly_input.parquet"
    assembly = _Writer(assembly_path, ASSEMBLY_INPUT_SCHEMA)
    counts: Counter[str] = Counter()
    for batch in pq.ParquetFile(staged).iter_batches(batch_size=4096):
        entity_rows, flag_rows, assembly_rows, queue_rows = [], [], [], []
        for row in batch.to_pylist():
            document = documents[(row["facility_id"], row["document_id"])]
            held = (row["facility_id"], row["document_id"]) in held_back
            flag_rows_of, queue_rows_of = finish_entity_row(row, document, document_findings, rules, held)
            entity_rows.append(row)
            counts[f"{row['kind']}"] += 1
            counts["requires_review"] += int(bool(row["requires_review"]))
            flag_rows += flag_rows_of
            queue_rows += queue_rows_of
            if not held:
                assembly_rows.append(assembly_row(row, document))
        entities.write(entity_rows)
        flags.write(flag_rows)
        review.write(sorted(queue_rows, key=lambda r: -r["priority"]))
        assembly.write(assembly_rows)
    for writer in (entities, flags, review, assembly):
        writer.close()
    staged.unlink()
    if 0 < review.rows <= REVIEW_SORT_LIMIT:
        queue = pq.read_table(review.path)
        pq.write_table(queue.sort_by([("priority", "descending"), ("entity_id", "ascending")]), review.path)
    counts["flags"] = flags.rows
    counts["review_queue"] = review.rows
    counts["documents_held_back"] = len(held_back)
    return assembly_path, dict(counts)
