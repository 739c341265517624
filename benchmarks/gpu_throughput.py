"""GPU throughput: what a site's GPU node gives, end to end and per stage, at the planned pool sizes.

Run on the GPU node, from the checkout, with the GPU stack installed and the models staged
(README "GPU"):

    python benchmarks/gpu_throughput.py [--input RECORDS_OR_MANIFEST | --documents 200]
        [--resources gpu_node] [--override ocr=paddle_gpu --override extract=vllm ...]
        [--sample-seconds 1.0] [--out benchmarks/results]

It prints the plan, runs `medrec run` on the input (a synthetic corpus when none is given)
while sampling every GPU's utilisation (pynvml when installed, else `nvidia-smi`), and
reports:

- pages/hour end to end (pages over processing time, the run report's own clock);
- pages/hour per stage: pages over the stage's busy seconds divided by its pool size, i.e.
  what the stage alone would sustain at the planned number of actors;
- GPU busy fraction: the mean of `utilization.gpu` (share of time a kernel ran) per GPU;
- tokens per page: the mean of every `*_tokens` column the LLM stage wrote to
  `tables/pages.parquet` (absent with the lexicon backend).

Without an NVIDIA GPU it stops at once with a message and exit status 2. The JSON and
Markdown reports go to --out; the exit status is 1 when pages are not conserved.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.store import output_table

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_OVERRIDES = ("ocr=paddle_gpu",)


class NoGpuError(RuntimeError):
    """This node has no NVIDIA GPU the benchmark can measure."""


class GpuSampler:
    """Samples `utilization.gpu` of every GPU in a background thread."""

    def __init__(self, interval_seconds: float):
        self.interval = interval_seconds
        self.samples: list[list[float]] = []  # one list of per-GPU percentages per sample
        self.source = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._read = self._reader()

    def _reader(self):
        try:
            import pynvml
        except ImportError:
            self.source = "nvidia-smi (pynvml not installed)"
            return read_nvidia_smi_utilization
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            self.source = f"nvidia-smi (pynvml failed to start: {error})"
            return read_nvidia_smi_utilization
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.source = "pynvml"
        return lambda: [float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self._read())

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def read_nvidia_smi_utilization() -> list[float]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True)
    return [float(value) for value in out.stdout.split()]


def require_gpus() -> list[Any]:
    """The node's GPUs, or NoGpuError saying why the benchmark cannot run here."""
    from pipeline.plan import detect_gpus

    if shutil.which("nvidia-smi") is None:
        raise NoGpuError("no NVIDIA GPU: nvidia-smi is not on PATH. This benchmark measures a GPU node; "
                         "run it there (`medrec plan resources=...` shows the plan for a node you describe).")
    gpus = detect_gpus()
    if not gpus:
        raise NoGpuError("no NVIDIA GPU: nvidia-smi lists none (driver not loaded or no device visible).")
    return gpus


def busy_fractions(samples: Sequence[Sequence[float]]) -> list[float]:
    """Mean utilisation per GPU over the samples, as a fraction of time a kernel ran."""
    if not samples:
        return []
    return [round(sum(sample[gpu] for sample in samples) / len(samples) / 100, 3) for gpu in range(len(samples[0]))]


def stage_rates(pages: int, busy_seconds: dict[str, float], pool_sizes: dict[str, int | None]) -> list[dict[str, Any]]:
    """Pages/hour each stage sustains alone: pages over busy seconds per worker of its pool."""
    rows = []
    for stage, seconds in busy_seconds.items():
        workers = pool_sizes.get(stage)
        per_worker = seconds / workers if workers else None
        rows.append({"stage": stage, "pool_size": workers, "busy_seconds": round(seconds, 2),
                     "pages_per_hour": round(pages / per_worker * 3600, 1) if per_worker else None})
    return rows


def tokens_per_page(pages_table: Path) -> dict[str, float]:
    """Mean of every `*_tokens` column over pages that have a value."""
    table = pq.read_table(pages_table)
    means = {}
    for name in table.column_names:
        if name.endswith("_tokens"):
            values = [value for value in table.column(name).to_pylist() if value is not None]
            if values:
                means[name] = round(sum(values) / len(values), 1)
    return means


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# GPU throughput",
        "",
        f"- {result['metadata']['date']}; {result['metadata']['gpus']}; overrides {result['metadata']['overrides']}",
        f"- pages {result['pages_in']} = processed {result['pages_processed']} + quarantined "
        f"{result['pages_quarantined']} ({'conserved' if result['conserved'] else 'NOT CONSERVED'})",
        f"- end to end: {result['pages_per_hour']} pages/hour over {result['processing_seconds']} s of processing",
        f"- GPU busy fraction ({result['gpu_sampling']}): "
        + (", ".join(f"GPU{i} {fraction:.0%}" for i, fraction in enumerate(result["gpu_busy_fraction"])) or "no samples"),
        "- tokens per page: " + (", ".join(f"{k} {v}" for k, v in result["tokens_per_page"].items())
                                 or "no LLM token columns in this run"),
        "",
        "| stage | pool size | busy seconds | pages/hour alone |",
        "|---|---:|---:|---:|",
        *[f"| {row['stage']} | {row['pool_size'] or 'tasks'} | {row['busy_seconds']} | "
          f"{row['pages_per_hour'] if row['pages_per_hour'] is not None else 'n/a'} |" for row in result["stages"]],
        "",
        "```",
        result["plan"],
        "```",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="records folder or manifest .parquet; default: a synthetic corpus")
    parser.add_argument("--documents", type=int, default=200, help="synthetic documents when --input is not given")
    parser.add_argument("--resources", default="gpu_node", help="the resources profile (conf/resources/)")
    parser.add_argument("--override", action="append", default=[], help="extra key=value config overrides")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace, gpus: list[Any], work_dir: Path) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.graph import gpu_plan, stage_factories
    from pipeline.plan import render_plan
    from pipeline.run import run_pipeline
    from pipeline.synth.corpus import generate_corpus

    records = args.input or generate_corpus(work_dir / "corpus", args.documents, seed=7)["records"]
    overrides = [*DEFAULT_OVERRIDES, f"resources={args.resources}", *args.override,
                 f"input={records}", f"output={work_dir / 'output'}"]
    cfg = load_config(overrides)
    plan = gpu_plan(cfg)
    plan_text = render_plan(plan, f"resources={args.resources}") if plan else "no GPU profile"
    pool_sizes = {stage.name: stage.resources.concurrency for stage in (f() for f in stage_factories(cfg))}
    with GpuSampler(args.sample_seconds) as sampler:
        report = run_pipeline(cfg)
    return {
        "metadata": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
                     "gpus": ", ".join(f"{gpu.name} {gpu.memory_gb:g} GiB" for gpu in gpus), "overrides": overrides[:-2]},
        "plan": plan_text,
        "pages_in": report.pages_in, "pages_processed": report.pages_processed,
        "pages_quarantined": report.pages_quarantined, "conserved": report.conserved,
        "processing_seconds": report.processing_seconds,
        "pages_per_hour": round(report.pages_in / report.processing_seconds * 3600, 1) if report.processing_seconds else 0.0,
        "stages": stage_rates(report.pages_processed, report.stage_busy_seconds, pool_sizes),
        "gpu_sampling": sampler.source, "gpu_samples": len(sampler.samples),
        "gpu_busy_fraction": busy_fractions(sampler.samples),
        "tokens_per_page": tokens_per_page(output_table(work_dir / "output" / "tables", "pages")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        gpus = require_gpus()
    except NoGpuError as no_gpu:
        print(f"gpu_throughput: {no_gpu}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="medrec-gpu-bench-") as work:
        result = run_benchmark(args, gpus, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_throughput-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    markdown = render_markdown(result)
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"results: {args.out / stem}.json / .md")
    return 0 if result["conserved"] else 1


if __name__ == "__main__":
    sys.exit(main())
