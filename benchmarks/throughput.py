"""`medrec bench`: pages per minute of the naive baseline, the pipeline and the OCR stage
alone, on one corpus in one run, with per-stage utilisation, scaling over OCR actors and
peak memory at N and 4N pages. Writes JSON, Markdown and PNG plots; prints the table.

  medrec bench [pages=N] [corpus=DIR_OR_MANIFEST] [scaling=1,2] [output=DIR] [any medrec override]

Every measured figure comes from this run; rates are pages / wall seconds of the timed part.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.memory import MemorySampler
from pipeline.config import MedrecConfig, expand, load_config
from pipeline.store import output_table
from pipeline.manifest import write_manifest
from pipeline.manifest_source import conform_manifest
from pipeline.report import render_stage_table, stage_figures
from pipeline.tables import PageTableWriter, StageTiming

BENCH_KEYS = ("pages", "corpus", "scaling")
PAGES_PER_DOCUMENT_ESTIMATE = 1.4  # synthetic documents average ~1.6 pages; generate a few extra
GOALS = {"pipeline_over_baseline": 1.8, "pipeline_over_ocr_only": 0.9, "memory_4n_over_n_max": 1.2,
         "steady_pipeline_over_ocr_only": 0.95, "first_ocr_output_seconds_max": 10.0}


@dataclass(frozen=True)
class BenchOptions:
    pages: int = 24
    corpus: str | None = None  # a records folder or a manifest; None: generate a synthetic one
    scaling: tuple[int, ...] = ()  # OCR actor counts; empty: 1 .. max(2, cores)


def split_bench_args(argv: list[str]) -> tuple[BenchOptions, list[str]]:
    """`pages=`, `corpus=`, `scaling=` are the bench's own; the rest are medrec overrides."""
    mine: dict[str, Any] = {}
    rest = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in BENCH_KEYS:
            rest.append(arg)
        elif key == "pages":
            mine["pages"] = int(value)
            if mine["pages"] < 4:
                raise ValueError("bench needs pages=4 or more (the memory check runs on pages/4)")
        elif key == "scaling":
            mine["scaling"] = tuple(sorted({int(v) for v in value.split(",")}))
            if not mine["scaling"] or min(mine["scaling"]) < 1:
                raise ValueError("scaling= takes OCR actor counts >= 1, e.g. scaling=1,2")
        else:
            mine["corpus"] = value
    return BenchOptions(**mine), rest


def head_manifest(manifest: Path, pages: int, path: Path) -> Path:
    """The first `pages` rows of a manifest (manifests are small: paths, not pixels)."""
    table = pq.read_table(manifest)
    if table.num_rows < pages:
        raise ValueError(f"the corpus has {table.num_rows} pages, the bench asked for {pages}")
    pq.write_table(table.slice(0, pages), path)
    return path


def prepare_corpus(cfg: MedrecConfig, options: BenchOptions, work: Path) -> Path:
    """A manifest of exactly `options.pages` pages: from `corpus=` or a generated synthetic corpus."""
    from pipeline.synth.corpus import generate_corpus

    full = work / "corpus-manifest.parquet"
    if options.corpus:
        source = expand(options.corpus)
        if source.suffix == ".parquet":
            shutil.copyfile(source, full)
        else:
            write_manifest(source, full, cfg.facility_id)
    else:
        documents = math.ceil(options.pages / PAGES_PER_DOCUMENT_ESTIMATE)
        while True:
            shutil.rmtree(work / "corpus", ignore_errors=True)
            summary = generate_corpus(work / "corpus", documents, cfg.seed, dpi=cfg.render.dpi)
            if summary["pages"] >= options.pages:
                break
            documents *= 2
        write_manifest(Path(summary["records"]), full, cfg.facility_id)
    return head_manifest(full, options.pages, work / f"manifest-{options.pages}.parquet")


def _run_figures(pages_in: int, processed: int, quarantined: int, seconds: float,
                 first_output: float | None, stages: dict, memory: MemorySampler, **extra: Any) -> dict:
    return {
        "pages_in": pages_in, "pages_processed": processed, "pages_quarantined": quarantined,
        "seconds": round(seconds, 2), "pages_per_minute": round(pages_in / seconds * 60, 2),
        "first_output_seconds": round(first_output, 2) if first_output is not None else None,
        "stages": stages, "memory": asdict(memory.peaks), **extra,
    }


def run_baseline(cfg: MedrecConfig, manifest: Path, output: Path) -> tuple[dict, list[float]]:
    """The first program a team writes: one process, page by page through the same stage
    classes (same models, settings and threads per model), each page written as it is done."""
    from pipeline.graph import stage_factories

    stages = [factory() for factory in stage_factories(cfg)]
    tables = PageTableWriter(output / "tables", output / "quarantine.parquet")
    written_at: list[float] = []
    with MemorySampler() as memory:
        started, epoch = time.perf_counter(), time.time()
        for row in pq.ParquetFile(manifest).iter_batches(batch_size=1):
            page = conform_manifest(pa.Table.from_batches([row]))
            for stage in stages:  # models load on the first page, as they would in the script
                page = stage.process_batch(page)
            tables.write_batch(page)
            written_at.append(time.perf_counter() - started)
        tables.close_pages()
        tables.quarantine.close()
        seconds = time.perf_counter() - started
    figures = _run_figures(pq.read_metadata(manifest).num_rows, tables.pages.rows, tables.quarantine.rows,
                           seconds, written_at[0] if written_at else None,
                           stage_figures(tables.stage_timings, epoch, seconds, {}), memory)
    return figures, written_at


def run_ocr_only(cfg: MedrecConfig, manifest: Path) -> tuple[dict, list[float]]:
    """The OCR pool alone, same pool size and batch size, on the same pages rendered beforehand
    into Ray's object store: the most pages per minute OCR gives on this machine."""
    import ray
    import ray.data

    from pipeline.graph import stage_factories
    from pipeline.ray_adapter import apply_stage
    from pipeline.run import init_ray

    init_ray(cfg)
    # The first Ray Data job on a new cluster waits for cold worker processes; run a trivial
    # one first so this run starts, like the pipeline runs after it, on a warm cluster.
    ray.data.range(4, override_num_blocks=2).materialize()
    render, ocr = stage_factories(cfg)[:2]
    renderer = render()
    refs = []  # the driver holds object refs; the pixels live in the object store
    for rows in pq.ParquetFile(manifest).iter_batches(batch_size=cfg.resources.ocr.batch_size):
        refs.append(ray.put(renderer.process_batch(conform_manifest(pa.Table.from_batches([rows])))))
    pages_in = pq.read_metadata(manifest).num_rows
    done_at: list[float] = []
    processed = quarantined = 0
    timing = StageTiming()
    pages = ray.data.from_arrow_refs(refs)  # block metadata is read here, before the clock starts
    with MemorySampler() as memory:
        started, epoch = time.perf_counter(), time.time()
        for batch in apply_stage(pages, ocr).iter_batches(
                batch_format="pyarrow", batch_size=None):
            for row in batch.select(["error_stage", "timings"]).to_pylist():
                quarantined += int(bool(row["error_stage"]))
                for entry in row["timings"] or []:
                    if entry["stage"] == "ocr":
                        timing.add(entry, failed_here=row["error_stage"] == "ocr")
            processed += batch.num_rows
            done_at.extend([time.perf_counter() - started] * batch.num_rows)
        seconds = time.perf_counter() - started
    del refs, pages
    stages = stage_figures({"ocr": timing}, epoch, seconds, {"ocr": cfg.resources.ocr.actors})
    return _run_figures(pages_in, processed - quarantined, quarantined, seconds, done_at[0] if done_at else None,
                        stages, memory, ocr_actors=cfg.resources.ocr.actors), done_at


def run_pipeline_measured(overrides: list[str], manifest: Path, output: Path) -> dict:
    """`run_pipeline` as `medrec run` runs it, with memory sampled; rates over the graph
    (manifest in -> page tables written, the same work as the baseline)."""
    from pipeline.run import run_pipeline

    cfg = load_config(overrides + [f"input={manifest}", f"output={output}"])
    with MemorySampler() as memory:
        report = run_pipeline(cfg)
    return _run_figures(
        report.pages_in, report.pages_processed, report.pages_quarantined, report.graph_seconds,
        report.first_output_seconds, report.stages, memory, ocr_actors=cfg.resources.ocr.actors,
        processing_seconds=report.processing_seconds,
        pages_per_minute_with_assembly=report.pages_per_minute, conserved=report.conserved,
        output=str(output))


def stage_completion_times(pages_table: Path, stages: dict[str, dict]) -> dict[str, list[float]]:
    """Seconds after the graph started at which each stage finished each page, read back from
    the written pages table after the run (for the plot; the run itself keeps only sums)."""
    ended: dict[str, list[float]] = {}
    for batch in pq.read_table(pages_table, columns=["timings"]).to_batches():  # a file or a folder of parts
        for timings in batch.column("timings").to_pylist():
            for timing in timings or []:
                ended.setdefault(timing["stage"], []).append(timing["ended"])
    completion = {}
    for stage, times in ended.items():
        # The report gives the stage's first output in seconds after the graph started.
        origin = min(times) - stages[stage]["first_output_seconds"]
        completion[stage] = sorted(t - origin for t in times)
    return completion


def steady_pages_per_minute(done_at: list[float]) -> float | None:
    """Pages per minute between the first and the last output: the rate once every pool is up."""
    if len(done_at) < 2 or done_at[-1] <= done_at[0]:
        return None
    return round((len(done_at) - 1) / (done_at[-1] - done_at[0]) * 60, 2)


def pipeline_steady_rate(completion: dict[str, list[float]], bottleneck: str = "ocr") -> tuple[float | None, str]:
    """The pipeline's steady rate: pages per minute between the first and the last output of its
    final stage, with why there is none. A final stage whose first output comes after the
    bottleneck's last never ran beside it: its window is the drain of a queue, not a steady
    state (issue 15: a fused pool that set up late gave 3739 pages/min on 24 pages)."""
    final = max(completion, key=lambda stage: completion[stage][-1])
    times = completion[final]
    if bottleneck in completion and final != bottleneck and times[0] >= completion[bottleneck][-1]:
        return None, (f"run too short for a steady state: {final}'s first output ({times[0]:.1f} s) came after "
                      f"{bottleneck}'s last ({completion[bottleneck][-1]:.1f} s)")
    rate = steady_pages_per_minute(times)
    if rate is None:
        return None, f"run too short for a steady state: {final} wrote every page at one instant"
    return rate, f"{final}: {len(times) - 1} pages between {times[0]:.1f} s and {times[-1]:.1f} s"


def ocr_engine_cpu_rate(cfg: MedrecConfig, manifest: Path, sample_pages: int = 8) -> dict:
    """The OCR engine's pages per CPU-minute (= pages/min per core) on the bench's first scanned
    pages, in this process after one warm-up page: a figure the neighbours on a shared machine
    do not move as they move wall-clock rates."""
    from pipeline.graph import stage_factories

    factories = stage_factories(cfg)
    render, ocr = factories[0](), factories[1]()
    rows = []
    for row in pq.read_table(manifest).to_pylist():
        rendered = render.process_page(row)
        if not rendered.get("error_stage") and rendered["text_source"] == "ocr":
            rows.append(rendered)
        if len(rows) > sample_pages:
            break
    if len(rows) < 2:
        return {"pages": 0, "pages_per_cpu_minute": None}
    ocr.setup()
    ocr.process_pages([dict(rows[0])])
    started = time.process_time()
    for row in rows[1:]:
        ocr.process_pages([dict(row)])
    cpu = time.process_time() - started
    return {"pages": len(rows) - 1, "cpu_seconds": round(cpu, 2),
            "pages_per_cpu_minute": round((len(rows) - 1) / cpu * 60, 2), "threads": cfg.resources.ocr.threads,
            "runtime": cfg.ocr.runtime, "precision": cfg.ocr.precision}


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def scaling_actor_counts(options: BenchOptions) -> tuple[int, ...]:
    return options.scaling or tuple(range(1, max(2, os.cpu_count() or 1) + 1))


def scaling_overrides(cfg: MedrecConfig, actors: int) -> list[str]:
    """Overrides for an OCR pool of `actors`: each actor keeps its threads, and the pool never
    asks for more logical CPUs than the configured pool does (so the other stages still fit)."""
    pool = cfg.resources.ocr
    cpus = min(pool.cpus_per_actor, pool.cpus_per_actor * pool.actors / actors)
    return [f"resources.ocr.actors={actors}", f"resources.ocr.cpus_per_actor={cpus:.4g}",
            f"resources.ocr.threads_per_actor={pool.threads}"]


def run_bench(options: BenchOptions, overrides: list[str], results: Path) -> dict:
    """Every measurement of `medrec bench`; writes JSON, Markdown and plots into `results`."""
    from pipeline.run import prepare_models

    cfg = load_config(overrides)
    results.mkdir(parents=True, exist_ok=True)
    work = results / "work"
    started = time.perf_counter()
    prepare_models(cfg)  # terminology index and OCR model dirs: one-off set-up, never timed
    manifest = prepare_corpus(cfg, options, work)
    quarter_pages = options.pages // 4
    quarter = head_manifest(manifest, quarter_pages, work / f"manifest-{quarter_pages}.parquet")
    _say(f"corpus ready: {options.pages} pages; baseline (one process, page by page)")
    baseline, baseline_done = run_baseline(cfg, manifest, work / "baseline")
    _say(f"baseline {baseline['pages_per_minute']} pages/min; OCR stage alone")
    ocr_only, ocr_done = run_ocr_only(cfg, manifest)
    _say(f"OCR alone {ocr_only['pages_per_minute']} pages/min; pipeline")
    pipeline = run_pipeline_measured(overrides, manifest, work / "pipeline")
    _say(f"pipeline {pipeline['pages_per_minute']} pages/min; OCR engine CPU time per page")
    completion = stage_completion_times(output_table(work / "pipeline" / "tables", "pages"), pipeline["stages"])
    baseline["steady_pages_per_minute"] = steady_pages_per_minute(baseline_done)
    ocr_only["steady_pages_per_minute"] = steady_pages_per_minute(ocr_done)
    pipeline["steady_pages_per_minute"], pipeline["steady_window"] = pipeline_steady_rate(completion)
    engine = ocr_engine_cpu_rate(cfg, manifest)
    _say(f"OCR engine {engine['pages_per_cpu_minute']} pages per CPU-minute")
    scaling = []
    for actors in scaling_actor_counts(options):
        run = pipeline
        if actors != cfg.resources.ocr.actors:
            _say(f"scaling: pipeline with {actors} OCR actors")
            run = run_pipeline_measured(overrides + scaling_overrides(cfg, actors), manifest,
                                        work / f"pipeline-{actors}-ocr-actors")
        scaling.append({"ocr_actors": actors, "pages_per_minute": run["pages_per_minute"],
                        "seconds": run["seconds"], "ocr_utilisation": run["stages"]["ocr"]["utilisation"],
                        "workers_rss_mib": run["memory"]["workers_rss_mib"]})
    _say(f"memory: pipeline on the first {quarter_pages} pages")
    small = run_pipeline_measured(overrides, quarter, work / "pipeline-quarter")
    memory = {
        "n_pages": quarter_pages, "four_n_pages": options.pages,
    }
    for who in ("driver_rss_mib", "workers_rss_mib", "worker_max_rss_mib"):
        n, four_n = small["memory"][who], pipeline["memory"][who]
        memory[who] = {"n": n, "four_n": four_n, "four_n_over_n": ratio(four_n, n)}
    ratios = {"pipeline_over_baseline": ratio(pipeline["pages_per_minute"], baseline["pages_per_minute"]),
              "pipeline_over_ocr_only": ratio(pipeline["pages_per_minute"], ocr_only["pages_per_minute"]),
              # None when the run is too short to have a steady state (`pipeline_steady_rate`).
              "steady_pipeline_over_ocr_only": ratio(pipeline["steady_pages_per_minute"],
                                                     ocr_only["steady_pages_per_minute"] or 0)
              if pipeline["steady_pages_per_minute"] is not None else None}
    figures = {
        "pages": options.pages, "cpus": os.cpu_count(),
        "settings": {"ocr_actors": cfg.resources.ocr.actors, "ocr_threads_per_actor": cfg.resources.ocr.threads,
                     "ocr_batch_size": cfg.resources.ocr.batch_size, "det_limit_side_len": cfg.ocr.det_limit_side_len,
                     "render_dpi": cfg.render.dpi},
        "runs": {"baseline": baseline, "pipeline": pipeline, "ocr_only": ocr_only, "pipeline_quarter": small},
        "ratios": ratios, "scaling": scaling, "memory": memory, "ocr_engine": engine,
        "goals": {
            "pipeline_over_baseline": {"goal": GOALS["pipeline_over_baseline"], "measured": ratios["pipeline_over_baseline"]},
            "pipeline_over_ocr_only": {"goal": GOALS["pipeline_over_ocr_only"], "measured": ratios["pipeline_over_ocr_only"]},
            "steady_pipeline_over_ocr_only": {"goal": GOALS["steady_pipeline_over_ocr_only"],
                                              "measured": ratios["steady_pipeline_over_ocr_only"]},
            "first_ocr_output_seconds": {"goal": GOALS["first_ocr_output_seconds_max"],
                                         "measured": pipeline["stages"]["ocr"].get("first_output_seconds")},
            "memory_4n_over_n": {"goal": GOALS["memory_4n_over_n_max"],
                                 "measured": max(memory["driver_rss_mib"]["four_n_over_n"] or 0,
                                                 memory["workers_rss_mib"]["four_n_over_n"] or 0)},
        },
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    for name, goal in figures["goals"].items():
        met = goal["measured"] is not None and (goal["measured"] <= goal["goal"] if name.startswith(("memory", "first"))
                                                else goal["measured"] >= goal["goal"])
        goal["met"] = met
    write_results(figures, results, completion, baseline_done, ocr_done)
    return figures


def _say(message: str) -> None:
    print(f"[medrec bench] {message}", flush=True)


def render_markdown(figures: dict) -> str:
    runs = figures["runs"]
    settings = ", ".join(f"{k} {v}" for k, v in figures["settings"].items())
    lines = [
        f"# medrec bench: {figures['pages']} pages, {figures['cpus']} CPUs",
        "",
        f"Settings: {settings}. Bench wall time {figures['bench_seconds']} s.",
        "",
        "| run | pages in | processed | quarantined | seconds | pages/min | steady pages/min | first output s "
        "| driver peak MiB | workers peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['pages_in']} | {run['pages_processed']} | {run['pages_quarantined']} | "
                     f"{run['seconds']} | {run['pages_per_minute']} | {run.get('steady_pages_per_minute')} | "
                     f"{run['first_output_seconds']} | "
                     f"{run['memory']['driver_rss_mib']} | {run['memory']['workers_rss_mib']} |")
    engine = figures["ocr_engine"]
    pipeline = runs["pipeline"]
    lines += ["", "Steady pages/min: pages between the first and the last output, per minute (the pipeline's: "
              f"of its final stage; {pipeline.get('steady_window')}).", "",
              "| steady state | pages/min |", "|---|---:|",
              f"| pipeline (final stage) | {pipeline.get('steady_pages_per_minute')} |",
              f"| OCR alone | {runs['ocr_only'].get('steady_pages_per_minute')} |",
              f"| pipeline / OCR alone | {figures['ratios']['steady_pipeline_over_ocr_only']} |",
              f"| OCR engine, pages/min per core | {engine['pages_per_cpu_minute']} |",
              "", f"OCR engine per core: CPU time of the OCR stage in one process over {engine['pages']} scanned "
              f"pages after a warm-up page, {engine.get('runtime')}/{engine.get('precision')}."]
    lines += ["", "| goal | target | measured | met |", "|---|---:|---:|---|"]
    for name, goal in figures["goals"].items():
        target = f"<= {goal['goal']}" if name.startswith(("memory", "first")) else f">= {goal['goal']}"
        lines.append(f"| {name} | {target} | {goal['measured']} | {'yes' if goal['met'] else 'no'} |")
    lines += ["", "Pipeline stages:", "", *render_stage_table(runs["pipeline"]["stages"]),
              "", "Baseline stages (one process):", "", *render_stage_table(runs["baseline"]["stages"]),
              "", "| OCR actors | seconds | pages/min | OCR utilisation | workers peak MiB |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['ocr_actors']} | {s['seconds']} | {s['pages_per_minute']} | {s['ocr_utilisation']} | "
              f"{s['workers_rss_mib']} |" for s in figures["scaling"]]
    memory = figures["memory"]
    lines += ["", f"| peak RSS MiB | N = {memory['n_pages']} pages | 4N = {memory['four_n_pages']} pages | 4N / N |",
              "|---|---:|---:|---:|"]
    lines += [f"| {who} | {m['n']} | {m['four_n']} | {m['four_n_over_n']} |"
              for who, m in (("driver", memory["driver_rss_mib"]), ("Ray workers (sum)", memory["workers_rss_mib"]),
                             ("largest Ray worker", memory["worker_max_rss_mib"]))]
    return "\n".join(lines) + "\n"


def write_results(figures: dict, results: Path, completion: dict[str, list[float]],
                  baseline_done: list[float], ocr_done: list[float]) -> None:
    """bench.json, bench.md, throughput.png (pages completed over time), utilisation.png."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    (results / "bench.json").write_text(json.dumps(figures, indent=1))
    markdown = render_markdown(figures)
    (results / "bench.md").write_text(markdown)
    print(markdown)

    figure, axes = plt.subplots(figsize=(8, 5))
    for stage, times in completion.items():
        axes.step(times, range(1, len(times) + 1), where="post", label=f"pipeline: {stage}")
    for label, times, style in (("baseline: written", baseline_done, "--"), ("OCR alone", ocr_done, ":")):
        axes.step(times, range(1, len(times) + 1), style, where="post", label=label)
    axes.set(xlabel="seconds after the run started", ylabel="pages completed",
             title=f"Pages completed over time ({figures['pages']} pages)")
    axes.legend(fontsize="small")
    figure.savefig(results / "throughput.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    stages = list(figures["runs"]["pipeline"]["stages"])
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.4
    for offset, run in ((-width / 2, "pipeline"), (width / 2, "baseline")):
        values = [figures["runs"][run]["stages"].get(stage, {}).get("utilisation") or 0 for stage in stages]
        axes.bar([i + offset for i in range(len(stages))], values, width, label=run)
    axes.set_xticks(range(len(stages)), stages)
    axes.set(ylabel="busy / (workers x wall seconds)", title="Utilisation per stage")
    axes.legend()
    figure.savefig(results / "utilisation.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
