"""OCR engine options: pages per CPU-minute and accuracy against the eval kit's gold, in one run.

  python -m benchmarks.ocr_engines --kit DIR [DIR ...] [--pages N] [--options a,b] [--jobs J] [--output DIR]

`--kit` names folders rendered by the eval kit (`../shared/eval/records/render_*.py --out DIR`):
each holds `docs/` and `gold/`. Its scanned pages go through the render stage as in the
pipeline, then through an `OcrStage` built with each option in a fresh process, one thread
(`--jobs` such processes at a time).

Method: the machine is shared, so wall-clock rates say more about the neighbours than about
the engine. Each option is timed by the CPU time of its process (`time.process_time`, all
its threads) over the same pages after one warm-up page; with one inference thread that is
pages per minute per core. The first option is measured again at the end: the gap between its
two figures is the run's noise. Accuracy is the eval kit's: CER = Levenshtein / gold length
after whitespace normalisation (micro), and the order-free word-bag F1, page text being the
stage's lines joined in reading order.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import unicodedata
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.manifest import build_manifest
from pipeline.offline import use_offline_environment
from pipeline.stages.ocr import OcrStage
from pipeline.stages.render import RenderStage

DEFAULT_MODEL_DIR = "~/.cache/medrec/models"
F1_BOUND = 0.005  # the most word-bag F1 an adopted option may lose against today's
CER_BOUND = 0.005  # the most CER it may add

# Option name -> OcrStage arguments. "ort_default" is the stage as it ran before this benchmark.
OPTIONS: dict[str, dict[str, Any]] = {
    "ort_default": {},
    "ort_opt_basic": {"graph_optimization_level": 1},
    "ort_opt_off": {"graph_optimization_level": 0},
    "ort_arena_off": {"enable_cpu_mem_arena": False},
    "ort_parallel": {"execution_mode": "parallel"},
    "ort_rec_batch_1": {"rec_batch_size": 1},
    "ort_rec_batch_16": {"rec_batch_size": 16},
    "ort_det_736": {"det_limit_side_len": 736},
    "ort_det_1280": {"det_limit_side_len": 1280},
    "openvino_f32": {"runtime": "openvino"},
    "openvino_f32_w128": {"runtime": "openvino", "rec_width_step": 128},
    "openvino_bf16": {"runtime": "openvino", "precision": "bf16"},
    "openvino_bf16_w128": {"runtime": "openvino", "precision": "bf16", "rec_width_step": 128},
    "openvino_bf16_w128_det_736": {"runtime": "openvino", "precision": "bf16", "rec_width_step": 128,
                                   "det_limit_side_len": 736},
    "openvino_bf16_rec_batch_1": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1},
    # One line per call, widths padded to a multiple of 32 or 64: OpenVINO prepares kernels per
    # input shape, and a line width it has not seen costs about 2.5x one it has.
    "openvino_bf16_rec_batch_1_w32": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1,
                                      "rec_width_step": 32},
    "openvino_bf16_rec_batch_1_w64": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1,
                                      "rec_width_step": 64},
    # The recognition head cut to Latin-script characters (pipeline.ocr_charset).
    "openvino_bf16_latin": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1, "rec_charset": "latin"},
    "openvino_bf16_latin_w32": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1,
                                "rec_charset": "latin", "rec_width_step": 32},
    "openvino_bf16_latin_w64": {"runtime": "openvino", "precision": "bf16", "rec_batch_size": 1,
                                "rec_charset": "latin", "rec_width_step": 64},
    "ort_latin_rec_batch_1": {"rec_batch_size": 1, "rec_charset": "latin"},
    "ort_int8_rec": {"precision": "int8"},
    "ort_int8_rec_batch_1": {"precision": "int8", "rec_batch_size": 1},
    "ort_int8_rec_batch_1_det_736": {"precision": "int8", "rec_batch_size": 1, "det_limit_side_len": 736},
}


@dataclass(frozen=True)
class KitPage:
    """One scanned page of the kit, rendered as the pipeline renders it, with its gold text."""

    row: dict[str, Any]
    gold_text: str


@dataclass(frozen=True)
class OptionResult:
    option: str
    settings: dict[str, Any]
    pages: int
    cpu_seconds: float
    pages_per_cpu_minute: float
    setup_cpu_seconds: float
    word_bag_f1: float
    cer: float


def load_kit_pages(kit_dirs: list[Path], limit: int | None) -> list[KitPage]:
    """The OCR pages (no usable text layer) of the kit folders, in a fixed order; with `limit`,
    an equal share of it from each folder."""
    render = RenderStage()
    pages: list[KitPage] = []
    share = -(-limit // len(kit_dirs)) if limit else None
    for kit in kit_dirs:
        taken = 0
        gold = {path.stem: json.loads(path.read_text("utf-8")) for path in sorted((kit / "gold").glob("*.json"))}
        for row in sorted(build_manifest(kit / "docs").to_pylist(), key=lambda r: (r["source_uri"], r["page_index"])):
            document = gold.get(Path(row["source_uri"]).stem)
            if document is None:
                continue
            rendered = render.process_page(dict(row))
            if rendered.get("error_stage") or rendered["text_source"] != "ocr":
                continue
            text = next(p["text"] for p in document["pages"] if p["page"] == row["page_index"] + 1)
            pages.append(KitPage(rendered, text))
            taken += 1
            if taken == share:
                break
    pages = pages[:limit] if limit else pages
    if not pages:
        raise ValueError("no scanned pages with gold found under the kit folders (docs/ and gold/ expected)")
    return pages


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


def accuracy(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """(word-bag F1, micro CER) as the eval kit's score.py computes them."""
    from rapidfuzz.distance import Levenshtein

    edits = chars = common = hyp_words = ref_words = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp, ref = _normalised(hyp), _normalised(ref)
        edits += Levenshtein.distance(hyp, ref)
        chars += len(ref)
        common += sum((Counter(hyp.split()) & Counter(ref.split())).values())
        hyp_words += len(hyp.split())
        ref_words += len(ref.split())
    return 2 * common / max(1, hyp_words + ref_words), edits / max(1, chars)


def measure_option(name: str, settings: dict[str, Any], pages: list[KitPage], model_dir: str) -> OptionResult:
    """OCR every page with one option, timed by this process's CPU time after a warm-up page."""
    stage = OcrStage(model_dir=model_dir, cpu_threads=1, **settings)
    started = time.process_time()
    stage.setup()
    stage.process_pages([dict(pages[0].row)])  # first-call costs (allocations, kernel choice)
    setup_seconds = time.process_time() - started
    texts = []
    started = time.process_time()
    for page in pages:
        done = stage.process_pages([dict(page.row)])[0]
        if done.get("error_stage"):
            raise RuntimeError(f"option {name} failed a page ({done['error_type']})")
        texts.append("\n".join(line["text"] for line in done["lines"]))
    cpu = time.process_time() - started
    f1, cer = accuracy(texts, [page.gold_text for page in pages])
    return OptionResult(name, settings, len(pages), round(cpu, 2), round(len(pages) / cpu * 60, 2),
                        round(setup_seconds, 2), round(f1, 4), round(cer, 4))


def choose_default(results: list[OptionResult], baseline: OptionResult) -> OptionResult:
    """The fastest option within the accuracy bounds of the baseline."""
    eligible = [r for r in results if r.word_bag_f1 >= baseline.word_bag_f1 - F1_BOUND
                and r.cer <= baseline.cer + CER_BOUND]
    return max(eligible, key=lambda r: r.pages_per_cpu_minute)


def render_markdown(figures: dict) -> str:
    lines = [
        f"# OCR engine options: {figures['pages']} scanned kit pages",
        "",
        f"Method: {figures['method']}",
        "",
        "| option | pages/min per core | vs ort_default | word-bag F1 | CER | setup + warm-up CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = figures["results"][0]["pages_per_cpu_minute"]
    for r in figures["results"]:
        lines.append(f"| {r['option']} | {r['pages_per_cpu_minute']} | {r['pages_per_cpu_minute'] / base:.2f}x | "
                     f"{r['word_bag_f1']} | {r['cer']} | {r['setup_cpu_seconds']} |")
    noise = figures["noise"]
    lines += ["", f"Noise: {noise['option']} measured first {noise['first']} and last {noise['last']} "
              f"pages/min per core ({noise['spread_percent']}% apart).",
              f"Fastest within F1 -{F1_BOUND} and CER +{CER_BOUND} of {figures['results'][0]['option']}: "
              f"**{figures['chosen']}**."]
    return "\n".join(lines) + "\n"


def run(kit_dirs: list[Path], limit: int | None, option_names: list[str], model_dir: str, output: Path,
        jobs: int = 1) -> dict:
    use_offline_environment()
    unknown = [name for name in option_names if name not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {sorted(OPTIONS)}")
    pages = load_kit_pages(kit_dirs, limit)
    print(f"[ocr engines] {len(pages)} scanned pages; options: {', '.join(option_names)}", flush=True)
    # One fresh process per option: no option inherits another's allocations or thread pools.
    runs = [*option_names, option_names[0]]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(measure_option, name, OPTIONS[name], pages, model_dir) for name in runs]
        measured = []
        for future in futures:
            measured.append(future.result())
            print(f"[ocr engines] {json.dumps(asdict(measured[-1]))}", flush=True)
    results, repeat = measured[:-1], measured[-1]
    first, last = results[0].pages_per_cpu_minute, repeat.pages_per_cpu_minute
    figures = {
        "pages": len(pages),
        "method": ("CPU time of the measuring process (time.process_time, one fresh process per option) per page, "
                   "one inference thread, "
                   "after one warm-up page: pages/min per core; accuracy = eval-kit CER (micro) and word-bag F1 "
                   "against the gold page text."),
        "results": [asdict(r) for r in results],
        "noise": {"option": option_names[0], "first": first, "last": last,
                  "spread_percent": round(abs(first - last) / max(first, last) * 100, 1)},
        "chosen": choose_default(results, results[0]).option,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "ocr_engines.json").write_text(json.dumps(figures, indent=1))
    markdown = render_markdown(figures)
    (output / "ocr_engines.md").write_text(markdown)
    print(markdown)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", nargs="+", type=Path, required=True, help="folders rendered by the eval kit")
    parser.add_argument("--pages", type=int, default=None, help="first N scanned pages (default: all)")
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated; the first is the baseline")
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--jobs", type=int, default=1, help="options measured at once, each in its own process")
    parser.add_argument("--output", type=Path,
                        default=Path(f"benchmarks/results/ocr_engines-{time.strftime('%Y%m%d-%H%M%S')}"))
    args = parser.parse_args(argv)
    run(args.kit, args.pages, args.options.split(","), args.model_dir, args.output, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
