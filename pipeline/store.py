"""The durable output store: results committed atomically by workers, and the ledger of commits.

An output folder accumulates runs. Work is committed at three grains, each under a key made
of the input's content hash and the fingerprints of the stages that produced it:

  store/ocr/<segment>.parquet        pages after render + OCR, one file per committed batch
  store/pages/<segment>.parquet      pages after validate (entities coded and flagged), per batch
  store/documents/<document key>/    one document's tables, document rules applied (a directory
                                     renamed into place, so it appears whole or not at all)

Every data file is written beside its target and renamed; only then is a ledger entry written
(`ledger/entries/*.parquet`, also renamed into place). The ledger entry is the commit: data
without an entry is an orphan from a killed worker and is simply redone. Entries are compacted
into one file per run by the driver. Keys:

  ocr key      = H(OCR fingerprint, sha256, page)           (content-addressed: a renamed file reuses it)
  result key   = H(result fingerprint, sha256, page, lineage, manifest hints)
  document key = H(result fingerprint, sha256, lineage, page count, manifest hints)

Ray Data's own checkpointing (`DataContext.checkpoint_config`, Ray 2.60) was considered and
does not fit: it applies only to a plan that ends in a `Write` with every path starting at a
`Read`, and it filters input rows by one id column whose rows are then skipped entirely or
recomputed entirely. It cannot keep OCR output and rerun only the stages after it, nor key a
row by the fingerprints of the stages it passed, which is what incremental reprocessing needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STORE = "store"
LEDGER = "ledger"
HASHES_FILE = "file-hashes.parquet"  # in the ledger folder: `pipeline.file_hashes`
OCR, PAGES, DOCUMENTS = "ocr", "pages", "documents"

LEDGER_SCHEMA = pa.schema([
    pa.field("stage", pa.string()),  # ocr | pages | documents
    pa.field("key", pa.string()),
    pa.field("location", pa.string()),  # data file or folder, relative to the output folder
    pa.field("facility_id", pa.string()),
    pa.field("document_id", pa.string()),
    pa.field("page_index", pa.int32()),  # null for a document
    pa.field("sha256", pa.string()),
    pa.field("ocr_fingerprint", pa.string()),
    pa.field("extract_fingerprint", pa.string()),
    pa.field("terminology_version", pa.string()),
    pa.field("patient_key", pa.string()),  # documents: the patient shard it goes to
    pa.field("pages_ok", pa.int32()),  # documents
    pa.field("pages_failed", pa.int32()),  # documents
    pa.field("committed_at", pa.float64()),
])


def digest(*parts: object) -> str:
    """A short stable hash of the parts, in order."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Fingerprints:
    """What each stage's output depends on, hashed; the parts of every key."""

    ocr: str  # OCR engine and versions, model files, render and OCR config, their code
    extract: str  # extractor code and config, rules file, coding and validation config
    terminology: str  # the terminology index version (hash of its release files)
    assembly: str  # FHIR mapping code and writer settings

    @property
    def result(self) -> str:
        return digest(self.ocr, self.extract, self.terminology)


def ocr_key(fp: Fingerprints, sha256: str, page_index: int) -> str:
    return digest("ocr", fp.ocr, sha256, page_index)


def result_key(fp: Fingerprints, row: dict[str, Any]) -> str:
    # Lineage is in the key: entity ids hash the document id, so a moved file is extracted again.
    return digest("pages", fp.result, row["sha256"], row["page_index"], row["facility_id"], row["document_id"],
                  row.get("mrn"), row.get("document_type"))


def document_key(fp: Fingerprints, row: dict[str, Any], pages: int) -> str:
    return digest("document", fp.result, row["sha256"], row["facility_id"], row["document_id"], pages,
                  row.get("mrn"), row.get("document_type"))


def input_sha(row: dict[str, Any]) -> str:
    """The content hash a key is made of; a file the manifest could not read gets a fresh one
    each time, so it is retried on every run rather than stored as failed."""
    return row["sha256"] or f"unread-{uuid.uuid4().hex}"


def output_table(tables_dir: Path, name: str) -> Path:
    """Where an output table is: the folder `tables/<name>/` of patient-shard part files, or the
    single file `tables/<name>.parquet` of an output written before the store. (The folder has
    no .parquet suffix: tools that glob `**/*.parquet` would read a suffixed folder and its
    part files both, every row twice.)"""
    folder, single = tables_dir / name, tables_dir / f"{name}.parquet"
    return single if single.is_file() and not folder.is_dir() else folder


def table_parts(path: Path) -> list[Path]:
    """An output table's files, for readers that go file by file: the table itself, or the
    part files of a table folder (`tables/<name>/part-NNNN.parquet`); none if absent."""
    if path.is_file():
        return [path]
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else []


# ----- atomic writes ----------------------------------------------------------------------------------


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` so a reader sees the old file, the new file, or none; never part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def commit_directory(files: dict[str, pa.Table], target: Path) -> bool:
    """Write the tables into a fresh folder and rename it to `target` in one step.

    Returns False when `target` already exists (another attempt committed the same key first;
    its content is the same, keys being content hashes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(target)
    tmp.mkdir()
    try:
        for name, table in files.items():
            pq.write_table(table, tmp / name)
        try:
            os.rename(tmp, target)
        except OSError:
            if target.is_dir():
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----- the ledger -------------------------------------------------------------------------------------


def ledger_entry(stage: str, key: str, location: str, row: dict[str, Any], fp: Fingerprints,
                 **extra: Any) -> dict[str, Any]:
    """One ledger row; `row` gives the lineage (a manifest or page row)."""
    return {"stage": stage, "key": key, "location": location, "facility_id": row["facility_id"],
            "document_id": row["document_id"], "page_index": row.get("page_index") if stage != DOCUMENTS else None,
            "sha256": row["sha256"], "ocr_fingerprint": fp.ocr, "extract_fingerprint": fp.extract,
            "terminology_version": fp.terminology, "committed_at": time.time(), **extra}


def append_ledger(output: Path, entries: list[dict[str, Any]]) -> None:
    """Commit entries: one new file, renamed into place (no shared file is ever appended to,
    so workers on several nodes can commit into one folder at once)."""
    if entries:
        path = output / LEDGER / "entries" / f"{uuid.uuid4().hex}.parquet"
        write_parquet_atomic(pa.Table.from_pylist(entries, schema=LEDGER_SCHEMA), path)


def _ledger_files(output: Path) -> list[Path]:
    root = output / LEDGER
    return sorted(p for p in [*root.glob("compacted-*.parquet"), *root.glob("entries/*.parquet")]
                  if not p.name.startswith(".tmp-"))


_LEDGER_FILES_A_GROUP = 64


def read_store_file(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """One small Parquet file of the store. `pq.ParquetFile` reads it in about half the time of
    `pq.read_table`, whose dataset scan is made for many files (3,000 document tables: 1.7 s
    against 3.1-3.6 s); a file of another schema (an older store's) is conformed by read_table."""
    table = pq.ParquetFile(path).read()
    return table if schema is None or table.schema.equals(schema) else pq.read_table(path, schema=schema)


def read_ledger(output: Path) -> pa.Table:
    """Every committed entry whose data is still present, one per (stage, key): the first committed.

    Deduplicated in Arrow: the driver reads the whole ledger at every plan, so a Python object
    per entry would make its memory grow with the archive (issue 12)."""
    files = _ledger_files(output)
    if not files:
        return LEDGER_SCHEMA.empty_table()
    # Thousands of entry files of a few rows each after a run: read a group at a time and
    # combined, since a table of thousands of tiny chunks holds buffers for each (at 10N pages,
    # reading 6,635 files at once raised the driver's peak by 224 MiB, in groups of 64 by 22 MiB).
    table = pa.concat_tables([
        pa.concat_tables([read_store_file(f, LEDGER_SCHEMA) for f in files[start:start + _LEDGER_FILES_A_GROUP]]).combine_chunks()
        for start in range(0, len(files), _LEDGER_FILES_A_GROUP)])
    table = table.sort_by([("committed_at", "ascending"), ("location", "ascending")])
    # A batch's entries share one data file: one stat per location.
    locations = table.column("location").unique().to_pylist()
    present = pa.array([loc for loc in locations if (output / loc).exists()], pa.string())
    table = table.filter(pc.is_in(table.column("location"), value_set=present))
    first = (table.append_column("row", pa.array(np.arange(table.num_rows)))
             .group_by(["stage", "key"]).aggregate([("row", "min")]).column("row_min"))
    return table.take(pc.take(first, pc.sort_indices(first)))  # in commit order, as sorted above


def compact_ledger(output: Path) -> None:
    """Fold every entry file into one compacted file (crash-safe: the new file is renamed in
    before the old ones go; a crash between leaves duplicates that reading drops)."""
    files = _ledger_files(output)
    if len(files) <= 1:
        return
    table = read_ledger(output)
    write_parquet_atomic(table, output / LEDGER / f"compacted-{int(time.time() * 1000):015d}-{uuid.uuid4().hex[:8]}.parquet")
    for path in files:
        path.unlink(missing_ok=True)


# ----- patient shards ---------------------------------------------------------------------------------


def shard_of(patient_key: str, shards: int) -> int:
    """The output part a patient's rows and resources go to."""
    return int(hashlib.sha256(patient_key.encode()).hexdigest()[:8], 16) % shards


def shard_record_path(output: Path, shard: int) -> Path:
    return output / LEDGER / "shards" / f"part-{shard:04d}.json"


def read_shard_records(output: Path) -> dict[int, dict[str, Any]]:
    records = {}
    for path in sorted((output / LEDGER / "shards").glob("part-*.json")):
        record = json.loads(path.read_text())
        records[record["shard"]] = record
    return records


# ----- fault injection for the kill tests ----------------------------------------------------------------


FAILPOINT_ENV = "MEDREC_FAILPOINT"  # name of the point where the process kills itself with SIGKILL
FAILPOINT_MARK_ENV = "MEDREC_FAILPOINT_MARK"  # a file created when it fires, so it fires once


def failpoint(name: str) -> None:
    """Kill this process (driver or worker) with SIGKILL at the named point, once, when the
    environment asks for it: how the resume tests stop a run at a chosen moment."""
    if os.environ.get(FAILPOINT_ENV) != name:
        return
    mark = os.environ.get(FAILPOINT_MARK_ENV)
    if mark:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
