"""`medrec bench` on a tiny generated corpus: every figure present and consistent with the others.

Runs the real OCR model and local Ray (minutes on a busy two-core machine): marked slow.
No assertion is about speed; they check pages are conserved and ratios are the quotients
of the measured rates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.throughput import (BenchOptions, pipeline_steady_rate, run_bench, scaling_overrides, split_bench_args,
                                   steady_pages_per_minute)
from pipeline.config import load_config

PAGES = 4


def test_bench_arguments_are_split_from_medrec_overrides():
    options, rest = split_bench_args(["pages=12", "scaling=2,1,2", "corpus=/data/records", "ocr.det_limit_side_len=736"])
    assert options == BenchOptions(pages=12, corpus="/data/records", scaling=(1, 2))
    assert rest == ["ocr.det_limit_side_len=736"]
    with pytest.raises(ValueError, match="pages=4"):
        split_bench_args(["pages=2"])
    with pytest.raises(ValueError, match="scaling"):
        split_bench_args(["scaling=0"])


def test_scaling_keeps_threads_and_the_pool_cpu_budget():
    cfg = load_config([])
    pool = cfg.resources.ocr
    for actors in (1, pool.actors, 2 * pool.actors):
        scaled = load_config(scaling_overrides(cfg, actors)).resources.ocr
        assert scaled.actors == actors and scaled.threads == pool.threads
        assert scaled.actors * scaled.cpus_per_actor <= max(pool.actors, actors) * pool.cpus_per_actor + 1e-6
        assert scaled.cpus_per_actor <= pool.cpus_per_actor


def test_steady_rate_counts_pages_between_first_and_last_output():
    assert steady_pages_per_minute([10.0, 11.0, 12.0, 16.0]) == 30.0  # 3 pages in the 6 s after the first
    assert steady_pages_per_minute([5.0]) is None
    assert steady_pages_per_minute([5.0, 5.0]) is None


def test_the_pipeline_has_a_steady_rate_only_when_its_final_stage_ran_beside_ocr():
    overlapping = {"ocr": [5.0, 8.0, 11.0, 14.0], "validate": [6.0, 9.0, 12.0, 15.0]}
    assert pipeline_steady_rate(overlapping) == (20.0, "validate: 3 pages between 6.0 s and 15.0 s")
    drained = {"ocr": [5.0, 8.0, 11.0, 14.0], "validate": [20.0, 20.5, 21.0, 21.5]}
    rate, why = pipeline_steady_rate(drained)
    assert rate is None and "too short" in why and "after ocr's last" in why
    rate, why = pipeline_steady_rate({"ocr": [5.0], "validate": [9.0]})
    assert rate is None and "too short" in why


@pytest.mark.slow
def test_tiny_bench_writes_consistent_figures(tmp_path: Path, terminology_index_path: Path):
    import ray

    results = tmp_path / "results"
    overrides = [f"terminology.index_path={terminology_index_path}", "terminology.sources.embed_kinds=[]",
                 "writer.progress=false"]
    try:
        returned = run_bench(BenchOptions(pages=PAGES, scaling=(1, 2)), overrides, results)
    finally:
        ray.shutdown()

    figures = json.loads((results / "bench.json").read_text())
    assert figures == json.loads(json.dumps(returned))
    runs = figures["runs"]
    for name, run in runs.items():
        expected = PAGES // 4 if name == "pipeline_quarter" else PAGES
        assert run["pages_in"] == expected, name
        assert run["pages_processed"] + run["pages_quarantined"] == run["pages_in"], name
        assert run["pages_per_minute"] == pytest.approx(run["pages_in"] / run["seconds"] * 60, rel=0.01), name
        assert run["memory"]["driver_rss_mib"] > 0 and run["memory"]["samples"] >= 2, name
    for name in ("pipeline", "ocr_only", "pipeline_quarter"):
        assert runs[name]["memory"]["workers_rss_mib"] > 0, name  # the Ray workers were sampled
    assert runs["baseline"]["memory"]["workers_rss_mib"] == 0  # one process, no workers

    # Ratios are the quotients of the measured rates.
    ratios = figures["ratios"]
    assert ratios["pipeline_over_baseline"] == pytest.approx(
        runs["pipeline"]["pages_per_minute"] / runs["baseline"]["pages_per_minute"], abs=1e-3)
    assert ratios["pipeline_over_ocr_only"] == pytest.approx(
        runs["pipeline"]["pages_per_minute"] / runs["ocr_only"]["pages_per_minute"], abs=1e-3)
    memory = figures["memory"]
    for who in ("driver_rss_mib", "workers_rss_mib", "worker_max_rss_mib"):
        assert memory[who]["n"] == runs["pipeline_quarter"]["memory"][who]
        assert memory[who]["four_n"] == runs["pipeline"]["memory"][who]
        assert memory[who]["four_n_over_n"] == pytest.approx(memory[who]["four_n"] / memory[who]["n"], abs=1e-3)
    steady = (runs["pipeline"]["steady_pages_per_minute"], runs["ocr_only"]["steady_pages_per_minute"])
    if None in steady:  # a run that wrote all its pages at one instant has no steady rate
        assert ratios["steady_pipeline_over_ocr_only"] is None
    else:
        assert ratios["steady_pipeline_over_ocr_only"] == pytest.approx(steady[0] / steady[1], abs=1e-3)
    assert figures["ocr_engine"]["pages_per_cpu_minute"] > 0
    for name, goal in figures["goals"].items():
        at_most = name in ("memory_4n_over_n", "first_ocr_output_seconds")
        measured = goal["measured"]
        assert goal["met"] == (measured is not None and (measured <= goal["goal"] if at_most else measured >= goal["goal"]))

    # Per-stage figures: every stage saw every page (the tiny corpus has no bad files).
    stages = runs["pipeline"]["stages"]
    assert list(stages) == ["render", "ocr", "classify", "extract", "code", "validate"]
    assert stages["render"]["pages_in"] == PAGES and stages["validate"]["pages_out"] == runs["pipeline"]["pages_processed"]
    for stage in stages.values():
        assert stage["busy_seconds"] >= 0 and 0 <= stage["utilisation"]
        assert stage["first_output_seconds"] <= stage["last_output_seconds"] <= runs["pipeline"]["seconds"] + 0.01
    assert runs["ocr_only"]["stages"]["ocr"]["pages_in"] == PAGES
    assert [s["ocr_actors"] for s in figures["scaling"]] == [1, 2]
    assert figures["scaling"][1]["pages_per_minute"] == runs["pipeline"]["pages_per_minute"]

    # The normal run report of the pipeline run carries the same per-stage figures.
    report = json.loads((Path(runs["pipeline"]["output"]) / "report.json").read_text())
    assert report["stages"] == stages and report["conserved"]

    markdown = (results / "bench.md").read_text()
    assert f"| pipeline | {PAGES} |" in markdown and str(ratios["pipeline_over_baseline"]) in markdown
    for plot in ("throughput.png", "utilisation.png"):
        assert (results / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
