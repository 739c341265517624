"""Re-runs into the output store: what a second run costs, in one bench run.

  python -m benchmarks.store_rerun [--pages N] [--results DIR] [--no-memory] [medrec overrides ...]

Measures, on N scanned pages: the full run, a re-run with nothing changed, and a re-run
after a terminology change (a new index version: OCR output reused, extraction onward run
again), as ratios to the full run; then the driver's peak memory (its own peak RSS) on N and
10N born-digital pages. Each run is a fresh `medrec run` process, so the peaks are the
driver's alone and the Ray start-up is counted in every run, as a user pays it.
Writes JSON and Markdown under benchmarks/results/ and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"full_over_terminology_rerun_min": 10.0, "nothing_changed_over_full_max": 0.10,
         "driver_peak_10n_over_n_max": 1.2}
PAGES_PER_DOCUMENT_ESTIMATE = 1.4


def _peak_rss_mib() -> float:
    """This process's peak RSS since it started (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over from the forking parent (here the bench, holding a freshly built index)."""
    status = Path("/proc/self/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def _one_run(args: list[str]) -> None:
    """Child mode: one run in this process; prints its figures as JSON on the last line."""
    from pipeline.config import load_config
    from pipeline.run import run_pipeline

    started, cpu = time.perf_counter(), time.process_time()
    report = run_pipeline(load_config(args))
    out = Path(report.output)
    figures = {
        "wall_seconds": round(time.perf_counter() - started, 2),
        "driver_cpu_seconds": round(time.process_time() - cpu, 2),
        "driver_peak_rss_mib": _peak_rss_mib(),
        "pages_in": report.pages_in,
        "conserved": report.conserved,
        "work": json.loads((out / "ledger" / "last_run.json").read_text()),
        # Busy seconds of the stage actors on this run's pages: the per-page work, without the
        # start-up (Ray, actor pools, models) that every run pays whatever it processes.
        "busy_seconds": {stage: figures["busy_seconds"] for stage, figures in report.stages.items()},
    }
    print(json.dumps(figures))


def _run(args: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # each run starts its own local Ray
    done = subprocess.run([sys.executable, "-m", "benchmarks.store_rerun", "--one-run", *args], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    # The figures are the child's one JSON line; Ray may print after it on the way out.
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"wall_seconds"')]
    if not lines:
        raise RuntimeError(f"run printed no figures: {done.stdout[-2000:]}")
    return json.loads(lines[-1])


def _corpus(root: Path, pages: int, born_digital: bool) -> Path:
    from pipeline.synth.corpus import generate_corpus

    documents = max(2, round(pages / PAGES_PER_DOCUMENT_ESTIMATE))
    corpus = generate_corpus(root, n_documents=documents, seed=5, born_digital_share=1.0 if born_digital else 0.0,
                             style="printed")
    return Path(corpus["records"])


def _tiny_loinc(path: Path) -> Path:
    """A LOINC table with one code: an index built with it has a new version."""
    path.write_text('"LOINC_NUM","COMPONENT","LONG_COMMON_NAME","CLASSTYPE","STATUS"\n'
                    '"99999-9","Bench analyte","Bench analyte [Mass/volume] in Serum","1","ACTIVE"\n')
    return path


def run_bench(pages: int, results: Path, overrides: list[str], memory: bool = True) -> dict:
    """The figures; `memory` False leaves out the driver-memory runs (N and 10N born-digital)."""
    from pipeline.config import expand, load_config
    from pipeline.run import prepare_models
    from terminology_index.build import build_index

    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="medrec-store-bench-"))  # corpora and outputs: not results
    cfg = load_config(overrides)
    index = expand(cfg.terminology.index_path)
    # Built before any clock starts: the index with what is kept beside it, the OCR model dirs.
    prepare_models(cfg)
    changed_index = work / "index-changed"
    loinc = _tiny_loinc(work / "Loinc.csv")
    changed_sources = dataclasses.replace(cfg.terminology.sources, loinc_table=str(loinc))
    # The first index's vectors are reused: embedding every diagnosis again takes minutes.
    build_index(changed_sources, changed_index, previous=index)

    scanned = _corpus(work / "scanned", pages, born_digital=False)
    out = work / "out-scanned"
    base = [*overrides, "writer.progress=false", f"input={scanned}", f"output={out}"]
    full = _run(base)
    unchanged = _run(base)
    terminology = _run([*base, f"terminology.index_path={changed_index}", f"terminology.sources.loinc_table={loinc}"])

    figures = {
        "pages_scanned": full["pages_in"],
        "full_run_seconds": full["wall_seconds"],
        "nothing_changed_seconds": unchanged["wall_seconds"],
        "terminology_rerun_seconds": terminology["wall_seconds"],
        "nothing_changed_over_full": round(unchanged["wall_seconds"] / full["wall_seconds"], 3),
        "full_over_terminology_rerun": round(full["wall_seconds"] / terminology["wall_seconds"], 2),
        "terminology_rerun_ocr_pages": terminology["work"]["ocr_pages"],
        "terminology_rerun_extract_pages": terminology["work"]["extract_pages"],
        "nothing_changed_work": unchanged["work"],
        # Its phases (plan, pages, documents, shards): where the re-run's fixed cost goes.
        "terminology_rerun_work": terminology["work"],
        "driver_peak_mib_scanned_n": full["driver_peak_rss_mib"],
        "driver_cpu_seconds": {"full": full["driver_cpu_seconds"], "nothing_changed": unchanged["driver_cpu_seconds"],
                               "terminology": terminology["driver_cpu_seconds"]},
        "full_busy_seconds": full["busy_seconds"],
        "terminology_rerun_busy_seconds": terminology["busy_seconds"],
    }
    runs = [full, unchanged, terminology]
    if memory:
        digital_n = _corpus(work / "digital-n", pages, born_digital=True)
        digital_10n = _corpus(work / "digital-10n", pages * 10, born_digital=True)
        memory_n = _run([*overrides, "writer.progress=false", f"input={digital_n}", f"output={work / 'out-digital-n'}"])
        memory_10n = _run([*overrides, "writer.progress=false", f"input={digital_10n}",
                           f"output={work / 'out-digital-10n'}"])
        runs += [memory_n, memory_10n]
        figures.update({
            "pages_digital_n": memory_n["pages_in"],
            "pages_digital_10n": memory_10n["pages_in"],
            "driver_peak_mib_digital_n": memory_n["driver_peak_rss_mib"],
            "driver_peak_mib_digital_10n": memory_10n["driver_peak_rss_mib"],
            "driver_peak_10n_over_n": round(memory_10n["driver_peak_rss_mib"] / memory_n["driver_peak_rss_mib"], 3),
        })
        figures["driver_cpu_seconds"].update(digital_n=memory_n["driver_cpu_seconds"],
                                             digital_10n=memory_10n["driver_cpu_seconds"])
    figures["all_conserved"] = all(r["conserved"] for r in runs)
    shutil.rmtree(work, ignore_errors=True)
    # What the ratio tends to as pages grow: the full run's busy seconds per page over the
    # terminology re-run's (its start-up is fixed, its per-page work is extraction onward).
    full_busy, rerun_busy = sum(full["busy_seconds"].values()), sum(terminology["busy_seconds"].values())
    figures["busy_ratio_full_over_terminology_rerun"] = round(full_busy / rerun_busy, 1) if rerun_busy else None
    figures["goals"] = {
        "full_over_terminology_rerun >= 10": figures["full_over_terminology_rerun"] >= GOALS["full_over_terminology_rerun_min"],
        "nothing_changed_over_full <= 0.10": figures["nothing_changed_over_full"] <= GOALS["nothing_changed_over_full_max"],
    }
    if memory:
        figures["goals"]["driver_peak_10n_over_n <= 1.2"] = (figures["driver_peak_10n_over_n"]
                                                             <= GOALS["driver_peak_10n_over_n_max"])
    return figures


def render(figures: dict) -> str:
    rows = [
        ("full run, scanned pages", f"{figures['pages_scanned']} pages", f"{figures['full_run_seconds']} s"),
        ("re-run, nothing changed", f"{figures['nothing_changed_over_full']} x full",
         f"{figures['nothing_changed_seconds']} s"),
        ("re-run, terminology changed", f"full is {figures['full_over_terminology_rerun']} x this "
         f"(OCR pages {figures['terminology_rerun_ocr_pages']}, extracted {figures['terminology_rerun_extract_pages']})",
         f"{figures['terminology_rerun_seconds']} s"),
        ("stage busy seconds, full / terminology re-run (the ratio as pages grow)",
         f"{figures['busy_ratio_full_over_terminology_rerun']} x",
         f"{round(sum(figures['full_busy_seconds'].values()), 1)} s / "
         f"{round(sum(figures['terminology_rerun_busy_seconds'].values()), 1)} s"),
        ("driver peak RSS, N scanned (full run)", f"{figures['pages_scanned']} pages",
         f"{figures['driver_peak_mib_scanned_n']} MiB"),
    ]
    if "driver_peak_10n_over_n" in figures:
        rows[-1:-1] = [
            ("driver peak RSS, N born-digital", f"{figures['pages_digital_n']} pages",
             f"{figures['driver_peak_mib_digital_n']} MiB"),
            ("driver peak RSS, 10N born-digital", f"{figures['pages_digital_10n']} pages "
             f"({figures['driver_peak_10n_over_n']} x N)", f"{figures['driver_peak_mib_digital_10n']} MiB"),
        ]
    lines = ["| measurement | scale | figure |", "|---|---|---:|", *[f"| {a} | {b} | {c} |" for a, b, c in rows], "",
             "| goal | met |", "|---|---|", *[f"| {goal} | {'yes' if met else 'NO'} |" for goal, met in figures["goals"].items()]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--one-run":
        _one_run(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--results", type=Path, default=None)
    # At a large N the 10N born-digital run takes longer than the scanned runs measured.
    parser.add_argument("--no-memory", action="store_true", help="leave out the driver-memory runs (N, 10N born-digital)")
    options, overrides = parser.parse_known_args(argv)
    results = options.results or Path("benchmarks/results") / f"store-rerun-{time.strftime('%Y%m%d-%H%M%S')}"
    figures = run_bench(options.pages, results.resolve(), overrides, memory=not options.no_memory)
    table = render(figures)
    (results / "store_rerun.json").write_text(json.dumps(figures, indent=1))
    (results / "store_rerun.md").write_text("# Store re-runs\n\n" + table + "\n")
    print(table)
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
