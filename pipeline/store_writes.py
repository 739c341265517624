"""The writes of a run, done in Ray workers: store commits, documents, and the patient shards.

Each function takes an Arrow batch and returns an Arrow batch: the commits run in the graph's
workers on each batch they produce, the document and shard steps as Ray tasks after the graph
(`pipeline.run.assembly_step`). None holds more than one batch, one document or one patient
shard. The driver receives only small summary rows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.assemble.grouped import assemble_group
from pipeline.config import ValidateConfig
from pipeline.schemas import (
    FLAGS_TABLE_SCHEMA,
    PAGE_SCHEMA,
    PAGES_TABLE_SCHEMA,
    QUARANTINE_SCHEMA,
    REVIEW_QUEUE_SCHEMA,
)
from pipeline.stages.validate import RuleEngine
from pipeline.store import (
    DOCUMENTS,
    OCR,
    PAGES,
    STORE,
    Fingerprints,
    append_ledger,
    commit_directory,
    failpoint,
    ledger_entry,
    ocr_key,
    read_store_file,
    result_key,
    shard_record_path,
    write_parquet_atomic,
    write_text_atomic,
)
from pipeline.tables import (
    ASSEMBLY_INPUT_SCHEMA,
    DOCUMENT_HELD_BACK,
    DocumentSummary,
    StageTiming,
    assembly_row,
    document_findings_of,
    finish_entity_row,
    is_blank,
    is_held_back,
)

# Page rows as stored: the page schema without the image (never kept) plus the row's key.
STORED_PAGE_SCHEMA = pa.schema([f for f in PAGE_SCHEMA if f.name != "image"] + [pa.field("key", pa.string())])
LINEAGE = ("facility_id", "document_id", "source_uri", "media_type", "sha256", "mrn", "document_type")

TIMING_SUMMARY_TYPE = pa.struct([
    pa.field("stage", pa.string()), pa.field("busy_seconds", pa.float64()), pa.field("pages_in", pa.int64()),
    pa.field("pages_failed", pa.int64()), pa.field("first_started", pa.float64()),
    pa.field("first_ended", pa.float64()), pa.field("last_ended", pa.float64()),
])
PAGE_COMMIT_SUMMARY = pa.schema([
    pa.field("pages_ok", pa.int64()), pa.field("pages_failed", pa.int64()),
    pa.field("timings", pa.list_(TIMING_SUMMARY_TYPE)),
    pa.field("llm_pages", pa.map_(pa.string(), pa.int64())), pa.field("llm_output_tokens", pa.int64()),
])
DOCUMENT_SUMMARY = pa.schema([
    pa.field("document_key", pa.string()), pa.field("patient_key", pa.string()),
    pa.field("pages_ok", pa.int32()), pa.field("pages_failed", pa.int32()),
])
SHARD_SUMMARY = pa.schema([pa.field("shard", pa.int32()), pa.field("record", pa.string())])

DOCUMENT_TABLES = {  # file in a committed document folder -> its schema
    "pages.parquet": PAGES_TABLE_SCHEMA,
    "entities.parquet": ASSEMBLY_INPUT_SCHEMA,
    "flags.parquet": FLAGS_TABLE_SCHEMA,
    "review_queue.parquet": REVIEW_QUEUE_SCHEMA,
    "quarantine.parquet": QUARANTINE_SCHEMA,
}
OUTPUT_TABLES = ("pages", "entities", "flags", "review_queue")  # tables/<name>/part-NNNN.parquet
# Page segments a document task keeps read: neighbours in the manifest share segments, and the
# bound keeps a task of many documents from holding all it read.
SEGMENTS_KEPT = 8


def _stored_rows(batch: pa.Table, keys: list[str]) -> pa.Table:
    columns = [batch.column(f.name) if f.name in batch.column_names else pa.nulls(batch.num_rows, f.type)
               for f in STORED_PAGE_SCHEMA if f.name != "key"]
    table = pa.Table.from_arrays(columns, schema=pa.schema([f for f in STORED_PAGE_SCHEMA if f.name != "key"]))
    return table.append_column("key", pa.array(keys, pa.string()))


def commit_ocr_batch(batch: pa.Table, output: str, fp: Fingerprints) -> pa.Table:
    """After OCR: store the batch's pages under their OCR keys, pass them on without images."""
    out = Path(output)
    rows = batch.select(["sha256", "page_index"]).to_pylist()
    keys = [ocr_key(fp, r["sha256"], r["page_index"]) for r in rows]
    location = f"{STORE}/{OCR}/{uuid.uuid4().hex}.parquet"
    stored = _stored_rows(batch, keys)
    write_parquet_atomic(stored, out / location)
    lineage = batch.select(["facility_id", "document_id", "page_index", "sha256"]).to_pylist()
    append_ledger(out, [ledger_entry(OCR, key, location, row, fp) for key, row in zip(keys, lineage)])
    failpoint("ocr_committed")
    image = batch.schema.get_field_index("image")
    return batch.set_column(image, "image", pa.nulls(batch.num_rows, pa.binary())) if image >= 0 else batch


def read_stored_ocr(batch: pa.Table, output: str) -> pa.Table:
    """Manifest rows with the location of their stored OCR -> the stored page rows, with the
    current manifest's lineage (the store is keyed by content, not by path)."""
    wanted = batch.to_pylist()
    by_location: dict[str, pa.Table] = {}
    rows = []
    for row in wanted:
        if row["ocr_location"] not in by_location:
            by_location[row["ocr_location"]] = read_store_file(Path(output) / row["ocr_location"])
        stored = by_location[row["ocr_location"]]
        match = stored.filter(pa.compute.equal(stored.column("key"), row["ocr_key"])).slice(0, 1).to_pylist()[0]
        match.update({name: row[name] for name in LINEAGE})
        match.pop("key")
        match["timings"] = []  # the OCR time was spent by an earlier run
        rows.append(match)
    return pa.Table.from_pylist(rows, schema=PAGE_SCHEMA)


def _timing_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    timings: dict[str, StageTiming] = {}
    for row in rows:
        for timing in row.get("timings") or []:
            timings.setdefault(timing["stage"], StageTiming()).add(
                timing, failed_here=row.get("error_stage") == timing["stage"])
    return [{"stage": stage, "busy_seconds": t.busy_seconds, "pages_in": t.pages_in, "pages_failed": t.pages_failed,
             "first_started": t.first_started, "first_ended": t.first_ended, "last_ended": t.last_ended}
            for stage, t in timings.items()]


def commit_page_batch(batch: pa.Table, output: str, fp: Fingerprints) -> pa.Table:
    """After validate: store the batch's page results; returns one summary row for the driver."""
    out = Path(output)
    rows = batch.to_pylist()
    keys = [result_key(fp, row) for row in rows]
    location = f"{STORE}/{PAGES}/{uuid.uuid4().hex}.parquet"
    write_parquet_atomic(_stored_rows(batch, keys), out / location)
    append_ledger(out, [ledger_entry(PAGES, key, location, row, fp) for key, row in zip(keys, rows)])
    failpoint("pages_committed")
    failed = sum(1 for row in rows if row.get("error_stage"))
    llm = Counter(row["extract_source"] for row in rows if row.get("extract_source") and not row.get("error_stage"))
    return pa.Table.from_pylist([{
        "pages_ok": len(rows) - failed, "pages_failed": failed, "timings": _timing_summary(rows),
        "llm_pages": list(llm.items()),
        "llm_output_tokens": sum(row.get("llm_output_tokens") or 0 for row in rows if not row.get("error_stage")),
    }], schema=PAGE_COMMIT_SUMMARY)


def merge_timing(into: dict[str, StageTiming], summary: dict[str, Any]) -> None:
    """Add one batch's timing summary to the run's per-stage sums."""
    timing = into.setdefault(summary["stage"], StageTiming())
    timing.busy_seconds += summary["busy_seconds"]
    timing.pages_in += summary["pages_in"]
    timing.pages_failed += summary["pages_failed"]
    timing.first_started = min(timing.first_started, summary["first_started"])
    timing.first_ended = min(timing.first_ended, summary["first_ended"])
    timing.last_ended = max(timing.last_ended, summary["last_ended"])


def _document_tables(pages: list[dict[str, Any]], rules: RuleEngine, max_document_error_rate: float | None
                     ) -> tuple[DocumentSummary, dict[str, pa.Table]]:
    """One document's validated pages (page order) -> its summary and tables, document rules
    applied; a held-back document's entities carry the hold (assembly leaves them out)."""
    summary = DocumentSummary.for_row(pages[0])
    page_rows, staged, quarantine = [], [], []
    for row in pages:
        page, entities, failure = summary.take_page(row, rules)
        page_rows += [page] if page else []
        staged += entities
        quarantine += [failure] if failure else []
    document_id = pages[0]["document_id"]
    findings = document_findings_of({(pages[0]["facility_id"], document_id): summary}, rules)
    held = is_held_back(summary.pages_ok, summary.pages_failed, max_document_error_rate)
    entity_rows, flag_rows, queue_rows = [], [], []
    for row in staged:
        flags, queue = finish_entity_row(row, summary, findings, rules, held)
        entity_rows.append(assembly_row(row, summary))
        flag_rows += flags
        queue_rows += queue
    tables = {"pages.parquet": page_rows, "entities.parquet": entity_rows, "flags.parquet": flag_rows,
              "review_queue.parquet": queue_rows, "quarantine.parquet": quarantine}
    return summary, {name: pa.Table.from_pylist(rows, schema=DOCUMENT_TABLES[name]) for name, rows in tables.items()}


def warm_worker() -> None:
    """A no-op task, run while the graph runs: the worker process it starts has imported Ray
    Data and this module when the document and shard tasks come, and Ray gives them to it.
    A fresh task worker took 2-3 s to give its first document on 2 cores (issue 12)."""
    import ray.data  # noqa: F401  the map tasks' own machinery


def finalize_documents(batch: pa.Table, output: str, fp: Fingerprints, validate: ValidateConfig,
                       max_document_error_rate: float | None) -> pa.Table:
    """Documents whose pages all have results -> each document's tables committed as one folder."""
    out = Path(output)
    rules = RuleEngine.from_config(validate)
    segments: dict[str, pa.Table] = {}
    summaries = []
    for document in batch.to_pylist():
        pages = []
        for key, location in zip(document["result_keys"], document["locations"]):
            if location not in segments:
                if len(segments) >= SEGMENTS_KEPT:
                    del segments[next(iter(segments))]  # the first read: documents come in manifest order
                segments[location] = read_store_file(out / location)
            segment = segments[location]
            row = segment.filter(pa.compute.equal(segment.column("key"), key)).slice(0, 1).to_pylist()[0]
            row.update({name: document[name] for name in LINEAGE})
            pages.append(row)
        pages.sort(key=lambda r: r["page_index"])
        summary, tables = _document_tables(pages, rules, max_document_error_rate)
        location = f"{STORE}/{DOCUMENTS}/{document['document_key']}"
        commit_directory(tables, out / location)
        patient_key = summary.patient_key(document["document_id"])
        append_ledger(out, [ledger_entry(DOCUMENTS, document["document_key"], location, document, fp,
                                         patient_key=patient_key, pages_ok=summary.pages_ok,
                                         pages_failed=summary.pages_failed)])
        summaries.append({"document_key": document["document_key"], "patient_key": patient_key,
                          "pages_ok": summary.pages_ok, "pages_failed": summary.pages_failed})
    return pa.Table.from_pylist(summaries, schema=DOCUMENT_SUMMARY)


def _part(shard: int) -> str:
    return f"part-{shard:04d}"


def write_shard(batch: pa.Table, output: str, pipeline_version: str, terminology_version: str,
                recorded: str, max_document_error_rate: float | None) -> pa.Table:
    """One patient shard: its documents' tables and FHIR resources rewritten as part files.

    Every file is renamed into place; the shard's record (files, counts) is written last, so a
    shard whose record does not match is rebuilt whole by the next run."""
    out = Path(output)
    results = []
    for shard in batch.to_pylist():
        part = _part(shard["shard"])
        tables: dict[str, list[pa.Table]] = defaultdict(list)
        held_back = 0
        for location in shard["documents"]:
            for name, schema in DOCUMENT_TABLES.items():
                tables[name].append(read_store_file(out / location / name, schema))
            held_back += is_held_back(tables["pages.parquet"][-1].num_rows, tables["quarantine.parquet"][-1].num_rows,
                                      max_document_error_rate)
        merged = {name: pa.concat_tables(parts) if parts else DOCUMENT_TABLES[name].empty_table()
                  for name, parts in tables.items()}
        counts: Counter[str] = Counter()
        for name in OUTPUT_TABLES:
            table = merged[f"{name}.parquet"]
            if name == "entities":
                table = table.select([f.name for f in ASSEMBLY_INPUT_SCHEMA if f.name not in
                                      ("source_uri", "media_type", "document_type", "page_count")])
            if name == "review_queue":
                table = table.sort_by([("priority", "descending"), ("entity_id", "ascending")])
            write_parquet_atomic(table, out / "tables" / name / f"{part}.parquet")
            counts[name] = table.num_rows
            failpoint("shard_table_written")
        entities = merged["entities.parquet"]
        resources: dict[str, list[str]] = defaultdict(list)
        failures, skipped = [], Counter()
        entity_counts: Counter[str] = Counter(entities.column("kind").to_pylist())
        entity_counts["requires_review"] = sum(bool(v) for v in entities.column("requires_review").to_pylist())
        entity_counts["documents_held_back"] = held_back
        # A held-back document's entities stay in the entities table, flagged, and out of FHIR.
        entities = entities.filter(pa.array([DOCUMENT_HELD_BACK not in (flags or [])
                                             for flags in entities.column("flags").to_pylist()], pa.bool_()))
        patients = sorted(set(entities.column("patient_key").to_pylist()))
        for patient in patients:
            group = entities.filter(pa.compute.equal(entities.column("patient_key"), patient))
            for row in assemble_group(group, pipeline_version, terminology_version, recorded).to_pylist():
                if row["json"]:
                    resources[row["resource_type"]].append(row["json"])
                elif row["error_type"]:
                    failures.append({
                        "facility_id": row["facility_id"], "document_id": row["document_id"],
                        "page_index": row["page_index"], "source_uri": None, "stage": "assemble",
                        "error_type": row["error_type"], "message": row["message"],
                        "resource_type": row["resource_type"]})
                for reason, count in row["skipped"] or []:
                    skipped[reason] += count
        files = []
        fhir = out / "fhir"
        for kind in sorted(resources):
            name = f"{kind}.{part}.ndjson"
            write_text_atomic("".join(line + "\n" for line in resources[kind]), fhir / name)
            files.append({"type": kind, "url": name, "count": len(resources[kind])})
            failpoint("shard_fhir_written")
        for stale in fhir.glob(f"*.{part}.ndjson"):
            if stale.name not in {f["url"] for f in files}:
                stale.unlink(missing_ok=True)
        quarantine = pa.concat_tables([merged["quarantine.parquet"],
                                       pa.Table.from_pylist(failures, schema=QUARANTINE_SCHEMA)])
        write_parquet_atomic(quarantine, out / "quarantine.parquet" / f"{part}.parquet")
        pages_failed = merged["quarantine.parquet"].num_rows
        record = {"shard": shard["shard"], "key": shard["key"], "documents": len(shard["documents"]),
                  "files": files, "resources": {f["type"]: f["count"] for f in files},
                  "resource_failures": len(failures), "skipped": dict(skipped), "entity_counts": dict(entity_counts),
                  "flags": counts["flags"], "review_queue": counts["review_queue"],
                  "pages_ok": counts["pages"], "pages_failed": pages_failed,
                  "pages_blank": sum(is_blank(page) for page in
                                     merged["pages.parquet"].select(["lines", "checkboxes"]).to_pylist()),
                  "written_at": time.time()}
        write_text_atomic(json.dumps(record, indent=1), shard_record_path(out, shard["shard"]))
        results.append({"shard": shard["shard"], "record": json.dumps(record)})
    return pa.Table.from_pylist(results, schema=SHARD_SUMMARY)
