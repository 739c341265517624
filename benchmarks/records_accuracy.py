"""Extraction accuracy on records nobody here wrote: the eval kit's Synthea and MTSamples documents.

Run from the checkout, with `../shared/eval/records/` beside it:

    python -m benchmarks.records_accuracy [--synthea 120] [--mtsamples 30] [--seed 11]
        [--terminology shared,embedded] [--synthetic-documents 18] [--work-dir DIR] [--out benchmarks/results]

The kit (`../shared/eval/records/`, read in place) renders clinical documents from Synthea
patients (classic, two-column and boxed-form layouts; scans and born-digital PDFs) and from
MTSamples transcriptions (scans), with exact gold. This benchmark renders one corpus at fixed
seeds, runs `medrec run` on it once per terminology configuration, and scores each output
folder with the kit's black-box scorer (`score.py`, which reads only `fhir/`, `tables/`,
`quarantine.parquet` and `report.json`). Beside it, the synthetic-generator benchmark
(`benchmarks.extraction_accuracy`, printed pages) runs on our own generator's corpus, so both
kinds of figure are printed side by side. JSON and Markdown go to --out.

The kit pins its own libraries (pandas, rapidfuzz, numpy) apart from medrec's: its scripts run
in their own virtual environment, made once from the kit's requirements.txt under
~/.cache/medrec/records-kit-venv (or --kit-python).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_KIT = CHECKOUT.parent / "shared" / "eval" / "records"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_KIT_VENV = Path.home() / ".cache" / "medrec" / "records-kit-venv"

# (scorer key, label, F1 target with terminology=shared) as issue 10 sets them.
ENTITY_ROWS = (
    ("conditions_text", "conditions (text)", 0.85),
    ("medications_ingredient", "medications (ingredient)", 0.85),
    ("medications_rxnorm", "medications (RxNorm code)", None),
    ("observations_code", "observations (LOINC code)", None),
    ("observations_code_value", "observations (LOINC code + value)", 0.85),
    ("allergies_text", "allergies (text)", 0.85),
    ("procedures_text", "procedures (text)", 0.70),
)
PATIENT_FIELDS = ("given", "family", "birthDate", "gender", "mrn", "encounter_date")
PATIENT_TARGET = 0.95
OCR_WORD_BAG_TARGET = 0.99


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, default=DEFAULT_KIT, help="the eval kit folder (../shared/eval/records)")
    parser.add_argument("--kit-python", type=Path, default=None,
                        help="a Python with the kit's requirements (default: a venv made once under ~/.cache/medrec)")
    parser.add_argument("--synthea", type=int, default=120, help="Synthea documents to render")
    parser.add_argument("--mtsamples", type=int, default=30, help="MTSamples documents to render")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--terminology", default="shared,embedded",
                        help="comma-separated terminology configs to run (conf/terminology/*.yaml)")
    parser.add_argument("--synthetic-documents", type=int, default=18,
                        help="documents of the synthetic-generator benchmark run beside it (0: skip)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the rendered corpus and the runs here (default: benchmarks/results/records-work)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--override", action="append", default=[], help="extra medrec override for every run")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="run into the output folders a previous run left: the store reuses their committed OCR, "
                             "so after a change to extraction only extraction runs again (same figures as a fresh "
                             "run; the run time is then not a full run's)")
    return parser.parse_args(argv)


def kit_python(kit: Path, given: Path | None) -> Path:
    """A Python that has the kit's pinned requirements, made once when none is given."""
    if given is not None:
        return given
    python = DEFAULT_KIT_VENV / "bin" / "python"
    stamp = DEFAULT_KIT_VENV / "requirements.txt"
    wanted = (kit / "requirements.txt").read_text()
    if not python.is_file() or not stamp.is_file() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_KIT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(kit / "requirements.txt")],
                       check=True)
        stamp.write_text(wanted)
    return python


def render(python: Path, kit: Path, work: Path, synthea: int, mtsamples: int, seed: int) -> dict[str, Any]:
    """Render both sets (skipped when this work dir already holds the same render) and merge
    their trees into one medrec input folder (first level = facility)."""
    stamp = work / "render.json"
    wanted = {"synthea": synthea, "mtsamples": mtsamples, "seed": seed}
    if not (stamp.is_file() and json.loads(stamp.read_text()).get("params") == wanted):
        shutil.rmtree(work / "corpus", ignore_errors=True)
        stats = {}
        for name, script, count in (("synthea", "render_synthea.py", synthea),
                                    ("mtsamples", "render_mtsamples.py", mtsamples)):
            if count:
                done = subprocess.run([str(python), str(kit / script), "--out", str(work / "corpus" / name),
                                       "--n-docs", str(count), "--seed", str(seed)],
                                      check=True, capture_output=True, text=True, cwd=kit)
                stats[name] = json.loads(done.stdout.strip().splitlines()[-1])
        stamp.write_text(json.dumps({"params": wanted, "stats": stats}, indent=1))
    inputs = work / "corpus" / "input"
    if not inputs.is_dir():
        for name in ("synthea", "mtsamples"):
            docs = work / "corpus" / name / "docs"
            if docs.is_dir():
                shutil.copytree(docs, inputs, dirs_exist_ok=True)
    return json.loads(stamp.read_text())["stats"]


def gold_dirs(work: Path) -> list[Path]:
    return [d for d in (work / "corpus" / "synthea" / "gold", work / "corpus" / "mtsamples" / "gold") if d.is_dir()]


def run_and_score(python: Path, kit: Path, work: Path, terminology: str, overrides: list[str],
                  keep_outputs: bool = False) -> dict[str, Any]:
    """`medrec run` into a fresh output folder (or the kept one), then the kit's scorer on it."""
    output = work / f"out-{terminology}"
    if not keep_outputs:
        shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "run", f"input={work / 'corpus' / 'input'}",
                    f"output={output}", f"terminology={terminology}", "writer.progress=false", *overrides],
                   check=True, cwd=CHECKOUT)
    run_seconds = time.perf_counter() - started
    scored = work / f"score-{terminology}.json"
    subprocess.run([str(python), str(kit / "score.py"), "--gold", *map(str, gold_dirs(work)), "--out", str(output),
                    "--json", str(scored)], check=True, cwd=kit, capture_output=True, text=True)
    return summarise(json.loads(scored.read_text()), terminology, run_seconds)


def summarise(scored: dict[str, Any], terminology: str, run_seconds: float) -> dict[str, Any]:
    """The figures issue 10 sets targets for, from the scorer's full result."""
    entities = scored.get("entities", {})
    scores = entities.get("scores", {})
    ocr = (scored.get("ocr") or {}).get("groups", {}).get("all", {})
    conservation = scored.get("conservation", {})
    return {
        "terminology": terminology,
        "run_seconds": round(run_seconds, 1),
        "linking": (entities.get("linking") or {}).get("mode"),
        "entities": {key: scores.get(key) for key, _, _ in ENTITY_ROWS},
        "medication_timing": scores.get("medications_timing"),
        "patient": {k: (entities.get("demographics") or {}).get(k) for k in PATIENT_FIELDS},
        "ocr": {k: ocr.get(k) for k in ("word_bag_f1", "cer_micro", "cer_micro_found_pages", "wer_micro")},
        "fhir_validity": {k: (scored.get("fhir_validity") or {}).get(k) for k in ("lines", "invalid", "json_errors")},
        "pages_unaccounted": conservation.get("pages_unaccounted"),
    }


def synthetic_figures(documents: int, seed: int, work: Path) -> dict[str, Any] | None:
    """The synthetic-generator benchmark (printed pages) and its own goals."""
    if not documents:
        return None
    from benchmarks.extraction_accuracy import goals, measure_style

    result = measure_style("printed", work / "synthetic", documents, seed)
    return {"kinds": result["kinds"], "goals": goals([result]), "pages": result["pages"]}


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Targets hold with terminology=shared (issue 10)."""
    shared = next((r for r in results if r["terminology"] == "shared"), None)
    if shared is None:
        return []
    out = []
    for key, label, target in ENTITY_ROWS:
        value = (shared["entities"].get(key) or {}).get("f1")
        if target is not None and value is not None:
            out.append({"goal": f"{label} F1 >= {target}", "value": value, "passed": value >= target})
    for field_name in PATIENT_FIELDS[:5]:
        value = shared["patient"].get(field_name)
        if value is not None:
            out.append({"goal": f"patient {field_name} >= {PATIENT_TARGET}", "value": value,
                        "passed": value >= PATIENT_TARGET})
    bag = shared["ocr"].get("word_bag_f1")
    if bag is not None:
        out.append({"goal": f"OCR word-bag F1 >= {OCR_WORD_BAG_TARGET}", "value": bag,
                    "passed": bag >= OCR_WORD_BAG_TARGET})
    return out


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    meta, results, synthetic = report["metadata"], report["results"], report["synthetic"]
    names = [r["terminology"] for r in results]
    lines = [f"# Extraction accuracy on outside records ({meta['date']})", "",
             f"Kit corpus: {meta['synthea']} Synthea + {meta['mtsamples']} MTSamples documents, seed {meta['seed']} "
             f"({meta['render']}); scored black-box by the kit's score.py. Machine: {meta['cpus']} CPUs.", "",
             "| kind | " + " | ".join(f"{n} P | {n} R | {n} F1" for n in names) + " | target |",
             "|---|" + "---:|" * (3 * len(names)) + "---:|"]
    for key, label, target in ENTITY_ROWS:
        cells = []
        for r in results:
            s = r["entities"].get(key) or {}
            cells.append(f"{_f(s.get('precision'))} | {_f(s.get('recall'))} | {_f(s.get('f1'))}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target or ''} |")
    lines += ["", "| patient field / OCR | " + " | ".join(names) + " | target |", "|---|" + "---:|" * len(names) + "---:|"]
    for field_name in PATIENT_FIELDS:
        lines.append(f"| {field_name} | " + " | ".join(_f(r["patient"].get(field_name)) for r in results)
                     + f" | {PATIENT_TARGET if field_name != 'encounter_date' else ''} |")
    timing = [(r.get("medication_timing") or {}).get("accuracy") for r in results]
    lines.append("| medication timing (accuracy) | " + " | ".join(map(_f, timing)) + " | |")
    for key, label in (("word_bag_f1", "OCR word-bag F1"), ("cer_micro", "OCR CER (micro)")):
        lines.append(f"| {label} | " + " | ".join(_f(r["ocr"].get(key)) for r in results)
                     + f" | {OCR_WORD_BAG_TARGET if key == 'word_bag_f1' else ''} |")
    lines.append("| run seconds | " + " | ".join(str(r["run_seconds"]) for r in results) + " | |")
    if synthetic:
        lines += ["", f"## Beside it: the synthetic-generator benchmark (printed, {synthetic['pages']} pages)", "",
                  "| kind | gold | P | R | F1 |", "|---|---:|---:|---:|---:|"]
        for kind, s in sorted(synthetic["kinds"].items()):
            lines.append(f"| {kind} | {s['gold']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |")
        lines.append(f"\nSynthetic goals passed: {sum(g['passed'] for g in synthetic['goals'])}/{len(synthetic['goals'])}")
    lines += ["", "## Goals (terminology=shared)", "", "| goal | value | passed |", "|---|---:|---|"]
    lines += [f"| {g['goal']} | {g['value']:.3f} | {'yes' if g['passed'] else 'NO'} |" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.kit / "score.py").is_file():
        print(f"the eval kit is not at {args.kit}: put ../shared beside the checkout or pass --kit", file=sys.stderr)
        return 2
    started = time.perf_counter()
    work = args.work_dir or args.out / "records-work"
    work.mkdir(parents=True, exist_ok=True)
    python = kit_python(args.kit, args.kit_python)
    render_stats = render(python, args.kit, work, args.synthea, args.mtsamples, args.seed)
    names = [n.strip() for n in args.terminology.split(",") if n.strip()]
    results = [run_and_score(python, args.kit, work, name, args.override, args.keep_outputs) for name in names]
    synthetic = synthetic_figures(args.synthetic_documents, args.seed, work)
    report = {
        "metadata": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "synthea": args.synthea,
                     "mtsamples": args.mtsamples, "seed": args.seed, "render": render_stats,
                     "kept_outputs": args.keep_outputs, "cpus": os.cpu_count(),
                     "platform": platform.platform(), "wall_seconds": round(time.perf_counter() - started, 1)},
        "results": results,
        "synthetic": synthetic,
    }
    report["goals"] = goals(results)
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "records_accuracy.json").write_text(json.dumps(report, indent=1))
    (args.out / "records_accuracy.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
