"""What a run has to do, from the manifest, the ledger and the stages' fingerprints.

`plan_pages` splits the manifest's pages into: done (their validated result is committed under
the current fingerprints), OCR stored (extraction onward runs on the stored OCR output) and
to OCR. `plan_documents` lists the documents whose every page has a result but whose document
result is not committed. Each page and document carries the reason it is processed, which
`medrec status` prints before a run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

import pipeline
from pipeline.config import MedrecConfig, expand
from pipeline.file_hashes import FileHashes
from pipeline.ocr_models import OcrModelDirs
from pipeline.store import DOCUMENTS, OCR, PAGES, Fingerprints, digest, document_key, input_sha, ocr_key, result_key

PACKAGE = Path(pipeline.__file__).resolve().parent
# Code whose change changes OCR output (render, OCR, the check boxes found on the image).
OCR_CODE = ("stages/render.py", "stages/ocr.py", "checkboxes.py", "ocr_models.py", "ocr_onnx.py", "ocr_runtime.py",
            "ocr_quantize.py", "ocr_charset.py")
ASSEMBLY_CODE = ("assemble/*.py",)
# Code that does not change what a page or document yields: orchestration, the store itself,
# reports, benchmarks' helpers and the other commands. Everything else in the package counts
# as extraction code, so a new extraction module is fingerprinted without being listed.
NOT_RESULT_CODE = ("run.py", "cli.py", "config.py", "graph.py", "ray_adapter.py", "attempts.py", "placement.py",
                   "plan.py", "report.py",
                   "evaluate.py", "manifest.py", "manifest_source.py", "models_check.py", "offline.py", "store.py",
                   "store_writes.py", "incremental.py", "file_hashes.py", "beside_index.py", "__init__.py",
                   "synth/*", "review/*", "deid/*")


def _extraction_code() -> tuple[str, ...]:
    """Every package file that is not OCR, assembly or non-result code, relative to the package."""
    excluded = {p for pattern in OCR_CODE + ASSEMBLY_CODE + NOT_RESULT_CODE for p in PACKAGE.glob(pattern)}
    return tuple(sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                        if p.is_file() and p.suffix in (".py", ".yaml", ".tsv", ".json") and p not in excluded
                        and "__pycache__" not in p.parts))
OCR_ENGINE_PACKAGES = ("paddleocr", "paddlex", "onnxruntime", "openvino", "onnx", "pymupdf", "rapidocr",
                       "paddlepaddle-gpu")


def _files_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def _code_digest(patterns: tuple[str, ...]) -> str:
    return _files_digest([p for pattern in patterns for p in PACKAGE.glob(pattern) if p.is_file()])


def _versions(packages: tuple[str, ...]) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ",".join(found)


def model_dir_files(dirs: OcrModelDirs) -> list[Path]:
    """The files of the det and (full) rec model dirs: what the OCR fingerprint hashes."""
    return [p for d in (dirs.det_model_dir, dirs.rec_model_dir) for p in Path(d).iterdir() if p.is_file()]


def ocr_model_files(cfg: MedrecConfig) -> list[Path]:
    """The model files OCR loads: the embedded dirs (built if absent) or the staged paddle dirs."""
    from pipeline.graph import staged_ocr_dirs
    from pipeline.ocr_models import ensure_ocr_model_dirs

    source = expand(cfg.ocr.source_dir) if cfg.ocr.source_dir else None
    return model_dir_files(staged_ocr_dirs(cfg.ocr) or ensure_ocr_model_dirs(expand(cfg.ocr.model_dir), source))


def fingerprints(cfg: MedrecConfig, terminology_version: str, ocr_files: list[Path] | None = None,
                 hashes: FileHashes | None = None) -> Fingerprints:
    """The stages' fingerprints for this config: model files by content, code by content,
    and the config values that change results (not paths, pool sizes or progress output).

    `ocr_files`: the model files `prepare_models` checked (None: check the dirs here);
    `hashes`: their digest remembered from an earlier run while the files are unchanged."""
    ocr = cfg.ocr
    files = sorted(ocr_model_files(cfg) if ocr_files is None else ocr_files)
    # One digest over the files, as before the hashes were remembered: the stores' OCR keys stay valid.
    model_digest = (hashes.remember("ocr-models:" + "|".join(map(str, files)), files, lambda: _files_digest(files))
                    if hashes else _files_digest(files))
    ocr_part = digest(ocr.backend, _versions(OCR_ENGINE_PACKAGES), model_digest,
                      ocr.det_limit_side_len, ocr.det_model_name, ocr.rec_model_name,
                      # the runtime, its precision and line batching change the text read (README)
                      ocr.runtime, ocr.precision, ocr.rec_batch_size, ocr.rec_width_step,
                      ocr.rec_charset,
                      cfg.render.model_dump_json(), _code_digest(OCR_CODE))
    extract = cfg.extract.model_dump(exclude={"replicas", "batch_size", "cpus_per_replica", "timeout_s",
                                              "max_retries", "backoff_s", "concurrency", "base_url", "api_key_env",
                                              "tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs"})
    rules = cfg.validate_rules
    rules_file = Path(expand(rules.rules_path)) if rules.rules_path else PACKAGE / "data" / "validation_rules.yaml"
    # validate.today=null means the run date: it is left out, so re-runs on later days reuse
    # results (pin validate.today where date-relative rules must be re-evaluated).
    # The document error rate decides which documents are held back from FHIR when a document
    # is finalised: it is part of the documents' keys through this fingerprint.
    extract_part = digest(pipeline.__version__, sorted(extract.items()), _code_digest(_extraction_code()),
                          _files_digest([rules_file]), rules.model_dump_json(), cfg.code.model_dump_json(),
                          cfg.faults.max_document_error_rate)
    assembly = digest(_code_digest(ASSEMBLY_CODE), cfg.writer.pipeline_version_tag, cfg.writer.fhir_recorded,
                      pipeline.__version__)
    return Fingerprints(ocr=ocr_part, extract=extract_part, terminology=terminology_version, assembly=assembly)


@dataclass
class StageWork:
    """Pages and documents one stage will process, counted by reason."""

    pages: Counter[str] = field(default_factory=Counter)
    documents: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, reason: str, document_id: str) -> None:
        self.pages[reason] += 1
        self.documents[reason].add(document_id)

    @property
    def total_pages(self) -> int:
        return sum(self.pages.values())

    @property
    def total_documents(self) -> int:
        return len(set().union(*self.documents.values())) if self.documents else 0


@dataclass
class PagePlan:
    pages_in: int
    documents_in: int
    to_ocr: pa.Table  # manifest rows to render and OCR
    ocr_stored: pa.Table  # manifest rows + ocr_location: extraction onward on stored OCR output
    ocr: StageWork
    extract: StageWork


# What `why` compares an entry with: the rest of an entry is never read from these maps.
_WHY_COLUMNS = ["sha256", "ocr_fingerprint", "terminology_version", "extract_fingerprint"]


def _of_stage(ledger: pa.Table, stage: str) -> pa.Table:
    return ledger.filter(pa.compute.equal(ledger.column("stage"), stage))


def _locations(ledger: pa.Table, stage: str) -> dict[str, str]:
    """key -> data location of a stage's committed entries."""
    entries = _of_stage(ledger, stage)
    return dict(zip(entries.column("key").to_pylist(), entries.column("location").to_pylist()))


def _latest(ledger: pa.Table, stage: str) -> dict[tuple[str, str, int | None], dict[str, Any]]:
    """The newest entry of a stage for each (facility, document, page) lineage, with the
    columns `why` reads: one per lineage, picked in Arrow, however many runs the ledger holds."""
    lineage = ["facility_id", "document_id", "page_index"]
    # Single-threaded, the "last" aggregate follows the table's order: the newest commit.
    newest = (_of_stage(ledger, stage).sort_by("committed_at").select([*lineage, *_WHY_COLUMNS])
              .group_by(lineage, use_threads=False).aggregate([(c, "last") for c in _WHY_COLUMNS]))
    keys = zip(*(newest.column(c).to_pylist() for c in lineage))
    values = zip(*(newest.column(f"{c}_last").to_pylist() for c in _WHY_COLUMNS))
    return {key: dict(zip(_WHY_COLUMNS, value)) for key, value in zip(keys, values)}


def why(previous: dict[str, Any] | None, row: dict[str, Any], fp: Fingerprints, stage: str) -> str:
    """The reason a page (or document) is processed again, from the last entry for its lineage."""
    if previous is None:
        return "new input"
    if previous["sha256"] != row["sha256"]:
        return "changed input"
    if previous["ocr_fingerprint"] != fp.ocr:
        return "OCR engine/model/config changed"
    if stage != OCR:
        if previous["terminology_version"] != fp.terminology:
            return "terminology index changed"
        if previous["extract_fingerprint"] != fp.extract:
            return "extractor/rules/config changed"
    return "not committed (interrupted run)"


def with_input_shas(manifest: pa.Table) -> pa.Table:
    """The manifest with a fresh content hash for each file it could not read (see `input_sha`)."""
    shas, fresh = manifest.column("sha256").to_pylist(), {}
    for index, (document_id, sha) in enumerate(zip(manifest.column("document_id").to_pylist(), shas)):
        if not sha:
            shas[index] = fresh.setdefault(document_id, input_sha({"sha256": sha}))
    return manifest.set_column(manifest.schema.get_field_index("sha256"), "sha256", pa.array(shas, pa.string()))


def plan_pages(manifest: pa.Table, ledger: pa.Table, fp: Fingerprints) -> PagePlan:
    """Split the manifest's pages by what is already committed under the current fingerprints."""
    committed = {stage: _locations(ledger, stage) for stage in (OCR, PAGES)}
    last_ocr, last_result = _latest(ledger, OCR), _latest(ledger, PAGES)
    to_ocr, stored, locations, keys = [], [], [], []
    ocr_work, extract_work = StageWork(), StageWork()
    rows = manifest.to_pylist()
    for row in rows:
        lineage = (row["facility_id"], row["document_id"], row["page_index"])
        if result_key(fp, row) in committed[PAGES]:
            continue
        extract_work.add(why(last_result.get(lineage) or last_ocr.get(lineage), row, fp, PAGES), row["document_id"])
        key = ocr_key(fp, row["sha256"], row["page_index"])
        location = committed[OCR].get(key)
        if location is None:
            ocr_work.add(why(last_ocr.get(lineage) or last_result.get(lineage), row, fp, OCR), row["document_id"])
            to_ocr.append(row)
        else:
            stored.append(row)
            locations.append(location)
            keys.append(key)
    schema = manifest.schema
    stored_table = pa.Table.from_pylist(stored, schema=schema).append_column(
        "ocr_location", pa.array(locations, pa.string())).append_column("ocr_key", pa.array(keys, pa.string()))
    return PagePlan(pages_in=len(rows), documents_in=len({(r["facility_id"], r["document_id"]) for r in rows}),
                    to_ocr=pa.Table.from_pylist(to_ocr, schema=schema), ocr_stored=stored_table,
                    ocr=ocr_work, extract=extract_work)


@dataclass
class DocumentPlan:
    to_finalize: list[dict[str, Any]]  # descriptors for the finalize step
    committed: list[dict[str, Any]]  # ledger entries of the documents already final
    waiting: int  # documents with pages still lacking a result (quarantined nowhere yet)
    work: StageWork


def plan_documents(manifest: pa.Table, ledger: pa.Table, fp: Fingerprints) -> DocumentPlan:
    """Documents whose every page has a committed result but no committed document result."""
    results = _locations(ledger, PAGES)
    documents = _of_stage(ledger, DOCUMENTS).sort_by("committed_at").to_pylist()  # oldest first: the last wins below
    final = {e["key"]: e for e in documents}
    last_final = {(e["facility_id"], e["document_id"]): e for e in documents}
    pages: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in manifest.to_pylist():
        pages[(row["facility_id"], row["document_id"])].append(row)
    plan = DocumentPlan([], [], 0, StageWork())
    for (facility_id, document_id), rows in pages.items():
        key = document_key(fp, rows[0], len(rows))
        if key in final:
            plan.committed.append(final[key])
            continue
        plan.work.add(why(last_final.get((facility_id, document_id)), {**rows[0], "page_index": None}, fp, DOCUMENTS),
                      document_id)
        keys = [result_key(fp, row) for row in rows]
        if not all(k in results for k in keys):
            plan.waiting += 1
            continue
        first = rows[0]
        plan.to_finalize.append({
            "document_key": key, "facility_id": facility_id, "document_id": document_id, "sha256": first["sha256"],
            "source_uri": first["source_uri"], "media_type": first["media_type"], "mrn": first.get("mrn"),
            "document_type": first.get("document_type"), "result_keys": keys,
            "locations": [results[k] for k in keys]})
    return plan


def render_status(pages: PagePlan, documents: DocumentPlan, shards_stale: int, shards_total: int) -> str:
    """`medrec status`: per stage, what a run would process and why."""
    lines = [f"input: {pages.pages_in} pages in {pages.documents_in} documents",
             "| stage | documents | pages | why |", "|---|---:|---:|---|"]
    for name, work in (("render + ocr", pages.ocr), ("classify, extract, code, validate", pages.extract)):
        reasons = "; ".join(f"{reason}: {len(work.documents[reason])} docs / {count} pages"
                            for reason, count in sorted(work.pages.items())) or "nothing: all committed"
        lines.append(f"| {name} | {work.total_documents} | {work.total_pages} | {reasons} |")
    reasons = "; ".join(f"{reason}: {len(docs)} docs" for reason, docs in sorted(documents.work.documents.items()))
    lines.append(f"| document rules | {documents.work.total_documents} | | {reasons or 'nothing: all committed'} |")
    lines.append(f"| tables + FHIR (patient shards) | | | {shards_stale} of {shards_total} shards rewritten"
                 + (" (and any a reprocessed document's patient moves to)" if documents.work.total_documents else "")
                 + " |")
    return "\n".join(lines)
