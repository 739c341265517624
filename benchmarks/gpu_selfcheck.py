"""GPU self-check: one GPU node, a few pages through every engine installed, in under 10 minutes.

Run on the GPU node, from the checkout (README "GPU"):

    python benchmarks/gpu_selfcheck.py [--pages 6] [--override key=value ...] [--out benchmarks/results]

It reads the node's cards from nvidia-smi and prints the plan for them (what it leaves out and
why, and the members per card), then for each OCR engine it finds usable (ONNX Runtime's CUDA
provider: `ocr=onnx_gpu`; paddlepaddle-gpu with its model dirs staged: `ocr=paddle_gpu`),
with vLLM when it is installed and its model staged (`extract=vllm`), it runs `medrec run` on a
small synthetic corpus with the pools placed per the plan. While a run goes, it samples the GPU
memory of every process (`nvidia-smi --query-compute-apps`) and matches processes to the placed
pool members by their actor names. It reports, per run: pages/s per stage (pages over the
stage's busy seconds per worker), and per member: its card, the GPU memory it held at most, the
plan's budget for it, and whether it stayed within. Exit status: 0 all within the plan and
pages conserved, 1 otherwise, 2 without a GPU or without any GPU engine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TIME_BUDGET_S = 540.0  # the runs stop being started past this: the check stays under 10 minutes
# vLLM's Ray executor names its worker class so; a tensor-parallel engine's GPU memory is theirs.
VLLM_WORKER_CLASS = "RayWorkerWrapper"


def find_engines() -> tuple[list[str], bool, list[str]]:
    """(usable OCR configs, vLLM usable, why the others are not)."""
    from pipeline.config import expand, load_config
    from pipeline.ocr_models import missing_paddle_model_files

    usable, skipped = [], []
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        from pipeline.ocr_onnx import CUDA_PROVIDER, preload_cuda_libraries

        preload_cuda_libraries(onnxruntime)
        if CUDA_PROVIDER in onnxruntime.get_available_providers():
            usable.append("onnx_gpu")
        else:
            skipped.append("ocr=onnx_gpu: onnxruntime has no CUDA provider (install onnxruntime-gpu, README)")
    if importlib.util.find_spec("paddle") is None:
        skipped.append("ocr=paddle_gpu: paddlepaddle-gpu is not installed")
    else:
        ocr = load_config(["ocr=paddle_gpu"]).ocr
        missing = (missing_paddle_model_files(expand(ocr.det_model_dir), ocr.det_model_name)
                   + missing_paddle_model_files(expand(ocr.rec_model_dir), ocr.rec_model_name))
        if missing:
            skipped.append(f"ocr=paddle_gpu: model files missing ({len(missing)}; `medrec models check ocr=paddle_gpu`)")
        else:
            usable.append("paddle_gpu")
    vllm = importlib.util.find_spec("vllm") is not None
    if not vllm:
        skipped.append("extract=vllm: vLLM is not installed")
    else:
        model = expand(load_config(["extract=vllm"]).extract.model_path)
        vllm = (model / "config.json").is_file()
        if not vllm:
            skipped.append("extract=vllm: no model staged at extract.model_path (`medrec models check extract=vllm`)")
    return usable, vllm, skipped


def node_overrides(cpus: int) -> tuple[list[str], str]:
    """Overrides that describe this node's plannable cards, and the lines on what is left out."""
    from pipeline.plan import detect_gpus, plannable_gpus, render_refused

    node = plannable_gpus(detect_gpus())
    if not node.planned:
        raise SystemExit("gpu_selfcheck: no card on this node can be planned:\n" + render_refused(node))
    card = node.planned[0]
    return ([f"resources.gpu.name='{card.name}'", f"resources.gpu.memory_gb={card.memory_gb}",
             f"resources.gpu.per_node={len(node.planned)}", "resources.gpu.nodes=1",
             f"resources.gpu.cpus_per_node={cpus}"], render_refused(node))


class GpuMemorySampler:
    """The most GPU memory (MiB) each process held, sampled from nvidia-smi in a thread."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.peak_mib: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "GpuMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30)
            for pid, mib in parse_compute_apps(out.stdout).items():
                self.peak_mib[pid] = max(mib, self.peak_mib.get(pid, 0.0))
            self._stop.wait(self.interval_s)


def parse_compute_apps(text: str) -> dict[int, float]:
    """pid -> MiB from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`."""
    usage: dict[int, float] = {}
    for line in text.strip().splitlines():
        pid, mib = (part.strip() for part in line.split(","))
        if pid.isdigit() and mib.replace(".", "", 1).isdigit():
            usage[int(pid)] = usage.get(int(pid), 0.0) + float(mib)
    return usage


def placed_members() -> dict[int, tuple[str, str]]:
    """pid -> (role, cards) of this job's placed pool members and vLLM workers, from their actor names.

    From the GCS actor table: the state API (`ray.util.state`) needs the dashboard, which
    `medrec run` does not start."""
    from ray._private import state

    from pipeline.placement import NAME_PREFIX, SLOT_NAME_SEPARATOR

    members = {}
    for actor in state.actors().values():
        name = actor.get("Name") or ""
        if name.startswith(NAME_PREFIX + SLOT_NAME_SEPARATOR):
            _, role, cards, *_ = name.split(SLOT_NAME_SEPARATOR)
            members[actor["Pid"]] = (role, cards)
        elif actor.get("ActorClassName", "").endswith(VLLM_WORKER_CLASS):
            members[actor["Pid"]] = ("llm worker", "")
    return members


def memory_by_member(peak_mib: dict[int, float], members: dict[int, tuple[str, str]]) -> dict[int, float]:
    """Peak MiB per member pid, a child process's counted to the member that started it (vLLM's
    engine core runs in a child of the actor)."""
    import psutil

    owned: dict[int, float] = {}
    for pid, mib in peak_mib.items():
        try:
            chain = [pid, *(parent.pid for parent in psutil.Process(pid).parents())]
        except psutil.NoSuchProcess:
            chain = [pid]
        owner = next((candidate for candidate in chain if candidate in members), None)
        if owner is not None:
            owned[owner] = owned.get(owner, 0.0) + mib
    return owned


def memory_rows(peak_mib: dict[int, float], members: dict[int, tuple[str, str]],
                budget_gb: dict[str, float]) -> list[dict[str, Any]]:
    """One row per placed member seen on a GPU: its peak memory against the plan's budget."""
    owned = memory_by_member(peak_mib, members)
    rows = []
    for pid, (role, cards) in sorted(members.items(), key=lambda item: item[1]):
        if pid not in owned:
            continue  # a tensor-parallel engine actor holds no GPU memory: its workers do
        used_gb = round(owned[pid] / 1024, 2)
        planned = budget_gb.get(role.split()[0])
        rows.append({"role": role, "cards": cards, "pid": pid, "gpu_memory_gb": used_gb, "planned_gb": planned,
                     "within_plan": planned is None or used_gb <= planned})
    return rows


def run_engine(ocr: str, vllm: bool, pages: int, node: list[str], overrides: list[str], work: Path) -> dict[str, Any]:
    """`medrec run` of `pages` synthetic pages with one OCR engine (and vLLM), memory sampled."""
    from pipeline.config import load_config
    from pipeline.graph import gpu_layout, gpu_plan, stage_factories
    from pipeline.placement import release_reserved
    from pipeline.plan import render_plan
    from pipeline.run import run_pipeline
    from pipeline.synth.corpus import generate_corpus

    from benchmarks.gpu_throughput import stage_rates

    records = generate_corpus(work / "corpus", max(1, pages // 2), seed=11)["records"]
    chosen = ["resources=gpu_node", f"ocr={ocr}", *(["extract=vllm"] if vllm else []), *node, *overrides]
    cfg = load_config([*chosen, f"input={records}", f"output={work / 'output'}"])
    plan, layout = gpu_plan(cfg), gpu_layout(cfg)
    pool_sizes = {stage.name: stage.resources.concurrency for stage in (f() for f in stage_factories(cfg))}
    with GpuMemorySampler() as sampler:
        report = run_pipeline(cfg)
        members = placed_members()  # before the next run's placement replaces them
    release_reserved()
    budget = {"ocr": cfg.ocr.gpu_memory_gb_per_actor}
    if plan.llm:
        budget["llm"] = round(plan.llm.gpu_memory_utilization * plan.gpu.memory_gb, 2)
    rows = memory_rows(sampler.peak_mib, members, budget)
    seconds = report.stage_busy_seconds
    return {
        "overrides": chosen, "plan": render_plan(plan, "this node"), "layout": layout.render() if layout else "",
        "pages_in": report.pages_in, "pages_processed": report.pages_processed,
        "pages_quarantined": report.pages_quarantined, "conserved": report.conserved,
        "stages": [{**row, "pages_per_second": round(row["pages_per_hour"] / 3600, 3) if row["pages_per_hour"] else None}
                   for row in stage_rates(report.pages_processed, seconds, pool_sizes)],
        "memory": rows,
    }


def render_markdown(result: dict[str, Any]) -> str:
    lines = ["# GPU self-check", "", f"- {result['date']}; {result['host']}; {result['seconds']} s",
             *[f"- not checked: {why}" for why in result["skipped"]]]
    for run in result["runs"]:
        lines += ["", f"## {' '.join(run['overrides'][:3])}", "",
                  f"- pages {run['pages_in']} = processed {run['pages_processed']} + quarantined "
                  f"{run['pages_quarantined']} ({'conserved' if run['conserved'] else 'NOT CONSERVED'})", "",
                  "| stage | pool size | busy seconds | pages/s alone |", "|---|---:|---:|---:|",
                  *[f"| {row['stage']} | {row['pool_size'] or 'tasks'} | {row['busy_seconds']} | "
                    f"{row['pages_per_second'] if row['pages_per_second'] is not None else 'n/a'} |"
                    for row in run["stages"]],
                  "", "| member | cards | GPU memory GiB (peak) | plan GiB | within |", "|---|---|---:|---:|---|",
                  *[f"| {row['role']} | {row['cards']} | {row['gpu_memory_gb']} | {row['planned_gb']} | "
                    f"{'yes' if row['within_plan'] else 'NO'} |" for row in run["memory"]],
                  "", "```", run["plan"], run["layout"], "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=6, help="synthetic pages per engine (about; whole documents)")
    parser.add_argument("--override", action="append", default=[], help="extra key=value config overrides")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.plan import detect_gpus

    args = parse_args(argv)
    if not detect_gpus():
        print("gpu_selfcheck: no NVIDIA GPU here (nvidia-smi absent or lists none); run it on the GPU node",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    node, refused = node_overrides(os.cpu_count() or 1)
    if refused:
        print(refused)
    ocr_engines, vllm, skipped = find_engines()
    for why in skipped:
        print(f"not checked: {why}")
    if not ocr_engines:
        print("gpu_selfcheck: no GPU OCR engine is usable here (see above)", file=sys.stderr)
        return 2
    runs = []
    with tempfile.TemporaryDirectory(prefix="medrec-gpu-selfcheck-") as work:
        for ocr in ocr_engines:
            if time.monotonic() - started > TIME_BUDGET_S:
                skipped.append(f"ocr={ocr}: not started, past the {TIME_BUDGET_S:g} s budget")
                continue
            runs.append(run_engine(ocr, vllm, args.pages, node, args.override, Path(work) / ocr))
            print(runs[-1]["plan"] + "\n" + runs[-1]["layout"], flush=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": os.uname().nodename,
              "seconds": round(time.monotonic() - started, 1), "skipped": skipped, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu_selfcheck-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    markdown = render_markdown(result)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    ok = all(run["conserved"] and all(row["within_plan"] for row in run["memory"]) for run in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
