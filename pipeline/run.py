"""`medrec run`: manifest -> graph on Ray -> tables -> FHIR NDJSON -> run report."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

import pipeline
from pipeline.config import MedrecConfig, TaskConfig, expand
from pipeline.file_hashes import FileHashes
from pipeline.incremental import (
    fingerprints,
    model_dir_files,
    plan_documents,
    plan_pages,
    render_status,
    with_input_shas,
)
from pipeline.manifest import build_manifest
from pipeline.manifest_source import conform_manifest
from pipeline.report import RunReport, write_report
from pipeline.store import (
    HASHES_FILE,
    LEDGER,
    Fingerprints,
    compact_ledger,
    digest,
    failpoint,
    read_ledger,
    read_shard_records,
    shard_of,
    shard_record_path,
    write_parquet_atomic,
    write_text_atomic,
)
from pipeline.store_writes import OUTPUT_TABLES, finalize_documents, merge_timing, write_shard
from pipeline.tables import StageTiming
from terminology_index.build import ensure_index

log = logging.getLogger(__name__)


@dataclass
class _Progress:
    """Prints pages done every few seconds: long runs must show they are moving."""

    total: int
    enabled: bool
    started: float = field(default_factory=time.perf_counter)
    last: float = 0.0
    done: int = 0
    quarantined: int = 0
    first_output_s: float | None = None

    def update(self, ok: int, failed: int) -> None:
        self.done += ok + failed
        self.quarantined += failed
        now = time.perf_counter()
        if self.first_output_s is None and self.done:
            self.first_output_s = now - self.started
        if self.enabled and (now - self.last > 5 or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.started, 1e-9) * 60
            print(f"[medrec] pages {self.done}/{self.total}  quarantined {self.quarantined}  "
                  f"{rate:.1f} pages/min", flush=True)


def resolve_manifest(cfg: MedrecConfig, output: Path, hashes: FileHashes | None = None) -> Path:
    """The manifest to run: the given .parquet, or one built from the input folder."""
    if not cfg.input:
        raise ValueError("run needs input=FOLDER_OR_MANIFEST")
    source = expand(cfg.input)
    if source.is_file() and source.suffix == ".parquet":
        return source
    manifest = output / "manifest.parquet"
    # Renamed into place: a run killed while listing the input leaves the previous manifest.
    write_parquet_atomic(build_manifest(source, cfg.facility_id, hashes), manifest)
    return manifest


@dataclass(frozen=True)
class PreparedModels:
    """What `prepare_models` built or checked, so the plan does not check it again."""

    index_version: str
    ocr_model_files: list[Path]  # what the OCR fingerprint hashes


def prepare_models(cfg: MedrecConfig, hashes: FileHashes | None = None) -> PreparedModels:
    """Build the terminology index and the OCR model dirs once, on the driver, before any
    actor starts, so actors only open them. `hashes`: release files' hashes remembered
    from an earlier run."""
    from pipeline.graph import staged_ocr_dirs
    from pipeline.ocr_models import ensure_ocr_model_dirs, require_staged_model_dirs
    from pipeline.ocr_charset import ensure_charset_rec_dir
    from pipeline.ocr_quantize import ensure_int8_rec_dir

    from pipeline.lexicon import ensure_lexicons
    from pipeline.terminology import TERM_MAPS
    from terminology_index.build import VECTORS_TABLE
    from terminology_index.embeddings import ensure_query_encoder

    index_path = expand(cfg.terminology.index_path)
    record = ensure_index(cfg.terminology.sources, index_path, hashes)
    # Built with the index; again here after a code change, so actors only load them.
    TERM_MAPS.ensure(index_path)
    ensure_lexicons(index_path)
    if (index_path / f"{VECTORS_TABLE}.lance").is_dir():
        ensure_query_encoder(index_path)  # exported once with torch; the code actors load it without
    staged = staged_ocr_dirs(cfg.ocr)
    if staged is None:
        dirs = ensure_ocr_model_dirs(expand(cfg.ocr.model_dir), expand(cfg.ocr.source_dir) if cfg.ocr.source_dir else None)
        rec_dir = ensure_charset_rec_dir(dirs, cfg.ocr.rec_charset)
        if cfg.ocr.precision == "int8":
            # a minute of calibration, here once rather than in every actor
            ensure_int8_rec_dir(replace(dirs, rec_model_dir=rec_dir))
    else:
        dirs = require_staged_model_dirs(staged)  # fails here, naming the dirs, not in every actor
    return PreparedModels(record["version"], model_dir_files(dirs))


def stage_pool_sizes(cfg: MedrecConfig) -> dict[str, int]:
    """Actors per pooled stage, by stage name (render runs as tasks and has no pool)."""
    res = cfg.resources
    return {"ocr": res.ocr.actors, "classify": res.classify.actors, "extract": res.extract.actors,
            "code": res.code.actors, "validate": res.validate_pool.actors}


# Ray ends a task worker idle for 1 s once the node runs more worker processes than it has CPUs,
# and the pools' actors alone are more on a small node: render tasks after a pause each started a
# new Python process that imported the stack again, beside the OCR actors' start-up (issue 15).
LOCAL_RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def init_ray(cfg: MedrecConfig) -> None:
    import ray

    from pipeline.offline import OFFLINE_ENV, use_offline_environment

    use_offline_environment()
    if not ray.is_initialized():
        # RAY_ADDRESS (e.g. `auto` on a cluster.yaml head) joins a running cluster, whose nodes
        # declared their own CPUs and GPUs; otherwise a local Ray of our own with this node's
        # CPUs (`address="local"`: never another job's cluster that happens to run on this host).
        # A local Ray's processes inherit this process's environment (OFFLINE_ENV is set above);
        # a job runtime_env there would also keep Ray's pre-started workers, which have none,
        # from taking the run's first actors, so each started a new process (issue 12). A joined
        # cluster's workers were started by their own nodes: they get the variables from the job.
        joining = bool(os.environ.get("RAY_ADDRESS"))
        ray.init(address=None if joining else "local",
                 num_cpus=None if joining else cfg.resources.num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env={"env_vars": OFFLINE_ENV} if joining else None, log_to_driver=False,
                 configure_logging=False,
                 _system_config=None if joining else LOCAL_RAY_SYSTEM_CONFIG)
    ray.data.DataContext.get_current().enable_progress_bars = False


@dataclass
class PageTotals:
    """What `RunReport.build` reads from a table writer, gathered from the store's summaries."""

    rows: int = 0  # pages processed (the pages table's rows over the whole output)


@dataclass
class StoreTotals:
    pages: PageTotals
    documents: list[str]
    stage_timings: dict[str, StageTiming] = field(default_factory=dict)
    llm_pages: Counter[str] = field(default_factory=Counter)
    llm_output_tokens: int = 0
    blank_pages: int = 0  # processed pages with no text and no check box


def _consume(dataset, batch_rows) -> None:
    """Drain a dataset of summary rows; the rows are handed over batch by batch, never collected."""
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        batch_rows(batch.to_pylist())


def _drop_legacy_outputs(output: Path) -> None:
    """Single-file outputs of the pre-store layout, which the part folders replace."""
    for legacy in (output / "quarantine.parquet", *(output / "tables" / f"{n}.parquet" for n in OUTPUT_TABLES)):
        if legacy.is_file():
            legacy.unlink()
        elif legacy.is_dir() and legacy.name != "quarantine.parquet":  # part folders once named <n>.parquet
            shutil.rmtree(legacy)
    for legacy in (output / "fhir").glob("*.ndjson"):
        if legacy.name.count(".") == 1:  # <Type>.ndjson, not <Type>.part-NNNN.ndjson
            legacy.unlink()


def _sweep(output: Path, records: dict[int, dict]) -> None:
    """Remove what no shard record lists (parts of shards that no longer exist) and the
    temporary files of killed writers, so the folder holds exactly what the manifest lists."""
    live = {f"part-{shard:04d}" for shard in records}
    parts = [*(output / "fhir").glob("*.part-*.ndjson"), *(output / "quarantine.parquet").glob("part-*.parquet"),
             *(output / "tables").glob("*/part-*.parquet")]
    for path in parts:
        part = next(p for p in path.name.split(".") if p.startswith("part-"))
        if part not in live:
            path.unlink(missing_ok=True)
    for shard in set(read_shard_records(output)) - set(records):
        shard_record_path(output, shard).unlink(missing_ok=True)
    # Where writers put temporary files (not a walk of the whole store: it holds a file per batch).
    folders = [output, output / "fhir", output / "quarantine.parquet", *(output / "tables" / n for n in OUTPUT_TABLES),
               output / LEDGER, output / LEDGER / "entries", output / LEDGER / "shards",
               *(output / "store" / stage for stage in ("ocr", "pages", "documents"))]
    for tmp in (t for folder in folders for t in folder.glob(".tmp-*")):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def load_manifest(cfg: MedrecConfig, output: Path, hashes: FileHashes | None = None) -> pa.Table:
    """The run's manifest with a fresh content hash for unreadable files."""
    return with_input_shas(conform_manifest(pq.read_table(resolve_manifest(cfg, output, hashes))))


def run_pipeline(cfg: MedrecConfig) -> RunReport:
    """Run the job into the store at `cfg.output`: only pages, documents and patient shards
    whose inputs or fingerprints changed are processed; returns the report written there."""
    import ray.data

    from pipeline.graph import build_store_graph, gpu_layout, gpu_plan
    from pipeline.plan import render_plan

    if not cfg.output:
        raise ValueError("run needs output=FOLDER")
    output = expand(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    plan = gpu_plan(cfg)
    if plan is not None:
        print(render_plan(plan, "resources profile"), flush=True)
        layout = gpu_layout(cfg)
        if layout is not None:
            print("  placement (one Ray bundle per card):\n" + layout.render(), flush=True)
    started = time.perf_counter()
    # Content hashes of the inputs, release and model files, remembered between runs in the output.
    hashes = FileHashes.load(output / LEDGER / HASHES_FILE)
    manifest = load_manifest(cfg, output, hashes)
    models = prepare_models(cfg, hashes)
    index_version = models.index_version
    fp = fingerprints(cfg, index_version, models.ocr_model_files, hashes)
    hashes.save()
    pages = plan_pages(manifest, read_ledger(output), fp)
    log.info("run: %d pages, %d to OCR, %d to extract, terminology %s", pages.pages_in, pages.ocr.total_pages,
             pages.extract.total_pages, index_version)
    processing_started = time.perf_counter()
    graph_started = time.time()  # epoch, the clock the stages stamp their batches with
    setup_seconds = processing_started - started
    totals = StoreTotals(PageTotals(), [])
    progress = _Progress(pages.extract.total_pages, cfg.writer.progress)
    to_ocr_path = output / LEDGER / "run-to-ocr.parquet"  # the read tasks' input, removed after the graph
    if pages.extract.total_pages:
        to_ocr = None
        if pages.to_ocr.num_rows:
            to_ocr = str(to_ocr_path)
            write_parquet_atomic(pages.to_ocr, to_ocr_path)

        def pages_committed(rows: list[dict]) -> None:
            if not warm:  # the pools are up: the assembly steps' workers start in their shadow
                warm.extend(warm_assembly_workers(cfg))
            for row in rows:
                progress.update(row["pages_ok"], row["pages_failed"])
                for timing in row["timings"]:
                    merge_timing(totals.stage_timings, timing)
                for source, count in row["llm_pages"] or []:
                    totals.llm_pages[source] += count
                totals.llm_output_tokens += row["llm_output_tokens"]

        init_ray(cfg)
        warm: list = []
        _consume(build_store_graph(cfg, str(output), fp, to_ocr, pages.ocr_stored), pages_committed)
        ray.get(warm)
    graph_seconds = time.perf_counter() - processing_started

    if to_ocr_path.exists():
        to_ocr_path.unlink()
    documents = plan_documents(manifest, read_ledger(output), fp)
    documents_done = documents.work.total_documents
    documents_started = time.perf_counter()
    if documents.to_finalize:
        init_ray(cfg)
        assembly_step(
            documents.to_finalize, finalize_documents, cfg.resources.tasks,
            batch_size=documents_per_task(len(documents.to_finalize), cfg.resources.tasks),
            fn_kwargs={"output": str(output), "fp": fp, "validate": cfg.validate_rules,
                       "max_document_error_rate": cfg.faults.max_document_error_rate},
            on_rows=lambda rows: failpoint("driver_documents"))
        documents = plan_documents(manifest, read_ledger(output), fp)
    if documents.to_finalize or documents.waiting:
        raise RuntimeError(f"{len(documents.to_finalize) + documents.waiting} documents have no committed result "
                           "after the run (a page left the graph uncommitted): run again to finish them")

    version = f"{cfg.writer.pipeline_version_tag} {pipeline.__version__}"
    shards_started = time.perf_counter()
    shards = shard_plan(documents.committed, fp, cfg.writer.patient_shards)
    records = {s: r for s, r in read_shard_records(output).items() if s in shards}
    stale = [{"shard": s, "key": key, "documents": locations} for s, (key, locations) in sorted(shards.items())
             if records.get(s, {}).get("key") != key]
    _drop_legacy_outputs(output)
    if stale:
        # The manifest goes first: while shards are rewritten no manifest lists files that may change.
        (output / "fhir" / "manifest.json").unlink(missing_ok=True)
        init_ray(cfg)

        def shards_written(rows: list[dict]) -> None:
            for row in rows:
                records[row["shard"]] = json.loads(row["record"])
            failpoint("driver_shards")

        assembly_step(
            stale, write_shard, cfg.resources.tasks, batch_size=1,
            fn_kwargs={"output": str(output), "pipeline_version": version, "terminology_version": index_version,
                       "recorded": cfg.writer.fhir_recorded,
                       "max_document_error_rate": cfg.faults.max_document_error_rate},
            on_rows=shards_written)
    _sweep(output, records)
    write_text_atomic(json.dumps({
        "transactionTime": cfg.writer.fhir_recorded,
        "terminology_version": index_version,
        "pipeline_version": version,
        "output": [{"type": f["type"], "url": f["url"], "count": f["count"]}
                   for shard in sorted(records) for f in records[shard]["files"]],
    }, indent=1), output / "fhir" / "manifest.json")

    resources: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    entity_counts: Counter[str] = Counter()
    for record in records.values():
        resources.update(record["resources"])
        skipped.update(record["skipped"])
        entity_counts.update(record["entity_counts"])
        entity_counts.update({"flags": record["flags"], "review_queue": record["review_queue"]})
    totals.pages.rows = sum(r["pages_ok"] for r in records.values())
    totals.blank_pages = sum(r.get("pages_blank", 0) for r in records.values())
    totals.documents = [e["key"] for e in documents.committed]
    report = RunReport.build(
        pages_in=pages.pages_in, tables=totals, entity_counts=dict(entity_counts), resources=dict(resources),
        resource_failures=sum(r["resource_failures"] for r in records.values()), skipped=dict(skipped),
        wall_seconds=time.perf_counter() - started, setup_seconds=setup_seconds,
        processing_seconds=time.perf_counter() - processing_started, graph_seconds=graph_seconds,
        first_output_seconds=progress.first_output_s, pipeline_version=version, terminology_version=index_version,
        output=output, graph_started=graph_started, stage_workers=stage_pool_sizes(cfg),
        max_page_error_rate=cfg.faults.max_page_error_rate)
    write_report(report, output)
    write_text_atomic(json.dumps({
        "pages_in": pages.pages_in, "ocr_pages": pages.ocr.total_pages, "ocr_reasons": dict(pages.ocr.pages),
        "extract_pages": pages.extract.total_pages, "extract_reasons": dict(pages.extract.pages),
        "documents_finalized": documents_done, "shards_written": len(stale),
        "shards": len(records), "wall_seconds": round(time.perf_counter() - started, 2),
        "seconds": {"setup_and_plan": round(setup_seconds, 2), "pages": round(graph_seconds, 2),
                    "documents": round(shards_started - documents_started, 2),
                    "shards": round(time.perf_counter() - shards_started, 2)},
    }, indent=1), output / LEDGER / "last_run.json")
    compact_ledger(output)
    return report


def assembly_step(items: list[dict], fn: Callable[..., pa.Table], tasks: TaskConfig, batch_size: int,
                  fn_kwargs: dict, on_rows: Callable[[list[dict]], None]) -> None:
    """A step after the graph (document rules, patient shards): `fn` over `items` in batches of
    `batch_size`, each a Ray task of `tasks.assembly_cpus`, all the cluster fits at once, spread
    over the nodes; `on_rows` receives each task's summary rows as it ends.

    Plain tasks, not a Ray Data dataset: the step is one map with no stage after it, and each
    dataset is an execution of its own (planning, its stats and coordinator actors), which cost
    the terminology re-run about a second per step on 2 cores (issue 12). A task whose worker
    dies is retried by Ray (`max_retries`), as Ray Data retries a map task; each item commits
    alone, so a retry redoes at most that task's uncommitted items."""
    import ray

    remote = ray.remote(num_cpus=tasks.assembly_cpus, scheduling_strategy="SPREAD", max_retries=3)(fn)
    shared = {name: ray.put(value) for name, value in fn_kwargs.items()}  # sent once, not once a task
    pending = [remote.remote(pa.Table.from_pylist(items[start:start + batch_size]), **shared)
               for start in range(0, len(items), batch_size)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        on_rows(ray.get(done[0]).to_pylist())


def assembly_slots(tasks: TaskConfig) -> int:
    """Document-rules or shard tasks the cluster runs at once."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // tasks.assembly_cpus))


def warm_assembly_workers(cfg: MedrecConfig) -> list:
    """Start a task worker per assembly slot while the graph runs, for the document and shard
    tasks after it (`warm_worker`): zero CPUs, so they never wait for the pools' tokens, and
    spread over the nodes, where those tasks will run."""
    import ray

    from pipeline.store_writes import warm_worker

    task = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(warm_worker)
    return [task.remote() for _ in range(assembly_slots(cfg.resources.tasks))]


def documents_per_task(documents: int, tasks: TaskConfig) -> int:
    """Documents per document-rules task: the documents spread over the tasks the cluster runs
    at once, at least `tasks.batch_size`. Each task pays a Ray round trip and its rules'
    load, and each document commits alone, so a larger task redoes no more after a kill."""
    return max(tasks.batch_size, math.ceil(documents / assembly_slots(tasks)))


def shard_plan(committed: list[dict], fp: Fingerprints, shards: int) -> dict[int, tuple[str, list[str]]]:
    """Patient shard -> (its key: the documents it holds and the assembly fingerprint, the
    document folders), for the documents of the current input."""
    members: dict[int, list[dict]] = {}
    for entry in committed:
        members.setdefault(shard_of(entry["patient_key"], shards), []).append(entry)
    plan = {}
    for shard, entries in members.items():
        entries.sort(key=lambda e: (e["facility_id"], e["document_id"]))
        plan[shard] = (digest("shard", fp.assembly, fp.terminology, *(e["key"] for e in entries)),
                       [e["location"] for e in entries])
    return plan


def status(cfg: MedrecConfig) -> str:
    """`medrec status OUT [input=...]`: what a run would process, per stage, and why; runs nothing."""
    from terminology_index.build import index_version

    if not cfg.output:
        raise ValueError("status needs the output folder")
    output = expand(cfg.output)
    if cfg.input:
        source = expand(cfg.input)
        table = pq.read_table(source) if source.is_file() else build_manifest(source, cfg.facility_id)
    elif (output / "manifest.parquet").is_file():
        table = pq.read_table(output / "manifest.parquet")
    else:
        raise ValueError(f"{output} has no manifest.parquet from an earlier run: pass input=FOLDER_OR_MANIFEST")
    manifest = with_input_shas(conform_manifest(table))
    fp = fingerprints(cfg, index_version(cfg.terminology.sources))
    ledger = read_ledger(output)
    pages = plan_pages(manifest, ledger, fp)
    documents = plan_documents(manifest, ledger, fp)
    shards = shard_plan(documents.committed, fp, cfg.writer.patient_shards)
    records = read_shard_records(output)
    stale = {s for s, (key, _) in shards.items() if records.get(s, {}).get("key") != key}
    # A document processed again leaves the shard its last result went to (it may join another).
    redone = {(document_id, reason) for reason, ids in documents.work.documents.items() for document_id in ids}
    previous = {e["document_id"]: e["patient_key"] for e in ledger.to_pylist() if e["stage"] == "documents"}
    stale |= {shard_of(previous[d], cfg.writer.patient_shards) for d, _ in redone if d in previous}
    return render_status(pages, documents, len(stale), len(set(shards) | set(records)))
