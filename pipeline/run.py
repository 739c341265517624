"""`medrec run`: manifest -> graph on Ray -> tables -> FHIR NDJSON -> run report."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

import pipeline
from pipeline.config import MedrecConfig, expand
from pipeline.manifest import write_manifest
from pipeline.report import RunReport, write_report
from pipeline.stages.validate import RuleEngine
from pipeline.tables import PageTableWriter, finish_entity_tables
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


def resolve_manifest(cfg: MedrecConfig, output: Path) -> Path:
    """The manifest to run: the given .parquet, or one built from the input folder."""
    if not cfg.input:
        raise ValueError("run needs input=FOLDER_OR_MANIFEST")
    source = expand(cfg.input)
    if source.is_file() and source.suffix == ".parquet":
        return source
    manifest = output / "manifest.parquet"
    write_manifest(source, manifest, cfg.facility_id)
    return manifest


def prepare_models(cfg: MedrecConfig) -> str:
    """Build the terminology index and the OCR model dirs once, on the driver, before any
    actor starts, so actors only open them. Returns the index version."""
    from pipeline.graph import staged_ocr_dirs
    from pipeline.ocr_models import ensure_ocr_model_dirs, require_staged_model_dirs
    from pipeline.ocr_quantize import ensure_int8_rec_dir

    record = ensure_index(cfg.terminology.sources, expand(cfg.terminology.index_path))
    staged = staged_ocr_dirs(cfg.ocr)
    if staged is None:
        dirs = ensure_ocr_model_dirs(expand(cfg.ocr.model_dir))
        if cfg.ocr.precision == "int8":
            ensure_int8_rec_dir(dirs)  # a minute of calibration, here once rather than in every actor
    else:
        require_staged_model_dirs(staged)  # fails here, naming the dirs, not in every actor
    return record["version"]


def stage_pool_sizes(cfg: MedrecConfig) -> dict[str, int]:
    """Actors per pooled stage, by stage name (render runs as tasks and has no pool)."""
    res = cfg.resources
    return {"ocr": res.ocr.actors, "classify": res.classify.actors, "extract": res.extract.actors,
            "code": res.code.actors, "validate": res.validate_pool.actors}


def init_ray(cfg: MedrecConfig) -> None:
    import ray

    from pipeline.offline import OFFLINE_ENV, use_offline_environment

    use_offline_environment()
    if not ray.is_initialized():
        # RAY_ADDRESS (e.g. `auto` on a cluster.yaml head) joins a running cluster, whose nodes
        # declared their own CPUs and GPUs; otherwise a local Ray of our own with this node's
        # CPUs (`address="local"`: never another job's cluster that happens to run on this host).
        joining = bool(os.environ.get("RAY_ADDRESS"))
        ray.init(address=None if joining else "local",
                 num_cpus=None if joining else cfg.resources.num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env={"env_vars": OFFLINE_ENV}, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def run_pipeline(cfg: MedrecConfig) -> RunReport:
    """Run the whole job into `cfg.output`; returns the report that was written there."""
    import ray.data

    from pipeline.assemble.grouped import assemble_group
    from pipeline.graph import build_graph, gpu_layout, gpu_plan
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
    manifest = resolve_manifest(cfg, output)
    pages_in = pq.read_metadata(manifest).num_rows
    index_version = prepare_models(cfg)
    init_ray(cfg)
    log.info("run: %d pages, terminology %s", pages_in, index_version)
    # One-off set-up (manifest, index and model builds, Ray start) is timed apart from processing.
    processing_started = time.perf_counter()
    graph_started = time.time()  # epoch, the clock the stages stamp their batches with
    setup_seconds = processing_started - started

    rules = RuleEngine.from_config(cfg.validate_rules)  # the same rules the validate stage loads
    tables = PageTableWriter(output / "tables", output / "quarantine.parquet", rules)
    progress = _Progress(pages_in, cfg.writer.progress)
    for batch in build_graph(cfg, str(manifest)).iter_batches(batch_format="pyarrow", batch_size=None):
        progress.update(*tables.write_batch(batch))
    tables.close_pages()
    graph_seconds = time.perf_counter() - processing_started

    assembly_input, entity_counts = finish_entity_tables(output / "tables", tables.documents, rules,
                                                         cfg.faults.max_document_error_rate)
    version = f"{cfg.writer.pipeline_version_tag} {pipeline.__version__}"
    fhir_dir = output / "fhir"
    fhir_dir.mkdir(exist_ok=True)
    resources: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    failures = 0
    handles = {}
    if pq.read_metadata(assembly_input).num_rows:
        assembled = (
            ray.data.read_parquet(str(assembly_input))
            .groupby("patient_key", num_partitions=cfg.resources.tasks.assembly_partitions)
            .map_groups(assemble_group, batch_format="pyarrow",
                        fn_kwargs={"pipeline_version": version, "terminology_version": index_version,
                                   "recorded": cfg.writer.fhir_recorded})
        )
        try:
            for batch in assembled.iter_batches(batch_format="pyarrow", batch_size=None):
                failed_rows = []
                for row in batch.to_pylist():
                    if row["json"]:
                        kind = row["resource_type"]
                        if kind not in handles:
                            handles[kind] = (fhir_dir / f"{kind}.ndjson").open("w", encoding="utf-8")
                        handles[kind].write(row["json"] + "\n")
                        resources[kind] += 1
                    elif row["error_type"]:
                        failed_rows.append({
                            "facility_id": row["facility_id"], "document_id": row["document_id"],
                            "page_index": row["page_index"], "source_uri": None, "stage": "assemble",
                            "error_type": row["error_type"], "message": row["message"],
                            "resource_type": row["resource_type"]})
                    for reason, count in row["skipped"] or []:
                        skipped[reason] += count
                tables.quarantine.write(failed_rows)
                failures += len(failed_rows)
        finally:
            for handle in handles.values():
                handle.close()
    tables.quarantine.close()
    assembly_input.unlink()
    (fhir_dir / "manifest.json").write_text(json.dumps({
        "transactionTime": cfg.writer.fhir_recorded,
        "terminology_version": index_version,
        "pipeline_version": version,
        "output": [{"type": kind, "url": f"{kind}.ndjson", "count": count} for kind, count in sorted(resources.items())],
    }, indent=1))

    report = RunReport.build(
        pages_in=pages_in, tables=tables, entity_counts=entity_counts, resources=dict(resources),
        resource_failures=failures, skipped=dict(skipped), wall_seconds=time.perf_counter() - started,
        setup_seconds=setup_seconds, processing_seconds=time.perf_counter() - processing_started,
        graph_seconds=graph_seconds, first_output_seconds=progress.first_output_s,
        pipeline_version=version, terminology_version=index_version, output=output,
        graph_started=graph_started, stage_workers=stage_pool_sizes(cfg),
        max_page_error_rate=cfg.faults.max_page_error_rate)
    write_report(report, output)
    return report
