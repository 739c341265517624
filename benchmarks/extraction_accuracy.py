"""Extraction accuracy: the whole pipeline (real OCR) against the synthetic gold.

Run from the checkout:

    python -m benchmarks.extraction_accuracy [--documents 18] [--seed 11] [--out benchmarks/results]
        [--work-dir DIR] [--styles printed,noisy]

It generates one synthetic corpus with the hard cases (two-column notes, abbreviations,
negations, family history, lab tables with flags, ranges and a missing cell, check-box
intake forms with Yes/No rows) twice: as clean printed page images and as noisy scans of
the same documents (`scan_noise`: skew, blur, speckle, low contrast, JPEG). Each copy goes
through `medrec run` (render -> OCR -> classify -> extract -> code -> validate -> tables),
and the entities are scored with `pipeline.evaluate`: precision, recall and F1 per entity
kind, per field (value, unit, range, flag, dose, route, frequency, assertion, ...) and the
confusion table of assertions. JSON and Markdown go to --out; the table is printed; the
exit status is 1 when a printed-page kind misses the F1 goal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.evaluate import evaluate_fields, evaluate_run, render_confusion
from pipeline.synth.corpus import GOLD_DIR, RECORDS_DIR, generate_corpus

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
F1_GOAL = 0.95  # per entity kind, on printed pages
GOAL_STYLE = "printed"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=18,
                        help="documents per copy (18 at seed 11: ~30 pages, ~10 minutes for both copies on 2 cores)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--styles", default="printed,noisy", help="comma-separated scan styles to run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep corpora and runs here (default: a temp dir)")
    return parser.parse_args(argv)


def measure_style(style: str, root: Path, documents: int, seed: int) -> dict[str, Any]:
    """Generate one copy of the corpus, run the pipeline on it, score it."""
    from pipeline.run import run_pipeline  # Ray and the model stack load only when a run starts

    corpus = generate_corpus(root / style / "corpus", documents, seed, style=style, hard_cases=True)
    output = root / style / "output"
    cfg = load_config([f"input={root / style / 'corpus' / RECORDS_DIR}", f"output={output}"])
    started = time.perf_counter()
    report = run_pipeline(cfg)
    gold = root / style / "corpus" / GOLD_DIR
    fields = evaluate_fields(output, gold)
    return {"style": style, "documents": corpus["documents"], "pages": corpus["pages"],
            "pages_processed": report.pages_processed, "pages_quarantined": report.pages_quarantined,
            "pages_per_minute": report.pages_per_minute,
            "run_seconds": round(time.perf_counter() - started, 1),
            "kinds": evaluate_run(output, gold), "fields": fields.scores(), "assertion_confusion": fields.confusion_table()}


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for result in results:
        if result["style"] != GOAL_STYLE:
            continue
        for kind, s in result["kinds"].items():
            if s["gold"]:
                out.append({"goal": f"{kind} F1 >= {F1_GOAL} ({GOAL_STYLE})", "value": s["f1"], "passed": s["f1"] >= F1_GOAL})
    return out


def _side_by_side(results: list[dict[str, Any]], key: str, label: str) -> list[str]:
    names = sorted({name for r in results for name in r[key]})
    header = f"| {label} | " + " | ".join(f"{r['style']} gold | {r['style']} P | {r['style']} R | {r['style']} F1"
                                         for r in results) + " |"
    lines = [header, "|---|" + "---:|" * (4 * len(results))]
    for name in names:
        cells = []
        for r in results:
            s = r[key].get(name)
            cells.append(" | ".join(["-"] * 4) if s is None else
                         f"{s['gold']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    meta, results = report["metadata"], report["results"]
    lines = [f"# Extraction accuracy ({meta['date']})", "",
             f"Corpus: {meta['documents']} synthetic documents, seed {meta['seed']}, hard cases on; "
             + ", ".join(f"{r['style']}: {r['pages']} pages, run {r['run_seconds']} s" for r in results)
             + f". Machine: {meta['cpus']} CPUs, {meta['platform']}.", "", "## Entity kinds", ""]
    lines += _side_by_side(results, "kinds", "kind")
    lines += ["", "## Fields (entity paired with its gold fact by code)", ""]
    lines += _side_by_side(results, "fields", "kind.field")
    for r in results:
        lines += ["", f"## Assertion confusion ({r['style']}; rows gold, columns predicted)", "",
                  render_confusion(r["assertion_confusion"])]
    lines += ["", "## Goals", "", "| goal | value | passed |", "|---|---:|---|"]
    lines += [f"| {g['goal']} | {g['value']:.3f} | {'yes' if g['passed'] else 'NO'} |" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the reports, print the tables; 1 when a goal fails."""
    args = parse_args(argv)
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medrec-extraction-") as temp:
        root = args.work_dir or Path(temp)
        results = [measure_style(style, root, args.documents, args.seed) for style in styles]
    report = {
        "metadata": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "documents": args.documents,
                     "seed": args.seed, "styles": styles, "cpus": os.cpu_count(), "platform": platform.platform(),
                     "wall_seconds": round(time.perf_counter() - started, 1)},
        "results": results,
    }
    report["goals"] = goals(results)
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extraction_accuracy.json").write_text(json.dumps(report, indent=1))
    (args.out / "extraction_accuracy.md").write_text(markdown)
    print(markdown)
    return 0 if all(g["passed"] for g in report["goals"]) else 1


if __name__ == "__main__":
    sys.exit(main())
