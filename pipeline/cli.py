"""The `medrec` command: `medrec COMMAND key=value ...` with Hydra overrides.

  medrec synth output=DIR n_documents=N seed=S [include_bad_files=true] [synth_style=printed|noisy] [hard_cases=true]
  medrec manifest input=DIR output=FILE.parquet [facility_id=ID]
  medrec run input=DIR_OR_MANIFEST output=DIR [--dry-run] [ocr.…=… resources.…=…]
  medrec status OUT [input=DIR_OR_MANIFEST] [overrides ...]   # what a run would process, per stage, and why
  medrec demo [output=DIR n_documents=N]
  medrec index build [sources=embedded|shared] [output=DIR] [terminology.sources.loinc_table=FILE ...]
  medrec evaluate input=GOLD_DIR output=RUN_DIR
  medrec plan [resources=gpu_24gb|gpu_48gb|gpu_96gb|gpu_node] [ocr=paddle_gpu] [extract=vllm]
  medrec models check [ocr=paddle_gpu] [extract=vllm] [ocr.model_dir=DIR]   # exit 1: the configured models are missing
  medrec bench [pages=N] [corpus=DIR_OR_MANIFEST] [scaling=1,2] [output=DIR] [overrides ...]
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pipeline.offline import use_offline_environment

COMMANDS = ("synth", "manifest", "run", "status", "demo", "index", "evaluate", "plan", "models", "bench")


def _synth(cfg) -> dict:
    from pipeline.synth.corpus import generate_corpus

    if not cfg.output:
        raise ValueError("synth needs output=FOLDER")
    return generate_corpus(Path(cfg.output), cfg.n_documents, cfg.seed, dpi=cfg.render.dpi,
                           include_bad_files=cfg.include_bad_files, style=cfg.synth_style, hard_cases=cfg.hard_cases)


def _print_run(report) -> None:
    from pipeline.report import render_markdown

    print(render_markdown(report))
    print(f"output: {report.output}")


def _print_scores(run_dir: Path, gold_dir: Path) -> None:
    from pipeline.evaluate import evaluate_run, render_scores

    print("entity precision and recall against the gold:")
    print(render_scores(evaluate_run(run_dir, gold_dir)))


def _print_plan(cfg) -> int:
    """The VRAM plan for the GPUs found here, else for the resources profile's GPUs."""
    import os

    from pipeline.plan import DEFAULT_LLM_MODEL_FILE, detect_gpus, llm_spec_for, make_plan, plan_for_config
    from pipeline.plan import OcrDemand, other_pool_cpus, profile_from_detected, render_plan

    llm = llm_spec_for(cfg, fallback=DEFAULT_LLM_MODEL_FILE)
    if cfg.extract.backend != "vllm":
        print(f"extract={cfg.extract.backend} runs on CPU; the LLM below is planned from conf/extract/{DEFAULT_LLM_MODEL_FILE.name} "
              "for sizing (`medrec run` plans it with extract=vllm)")
    detected = detect_gpus()
    if cfg.resources.gpu is not None:
        if detected:
            print(f"this node has {len(detected)} GPU(s) ({', '.join(name for name, _ in detected)}); "
                  "planning the resources profile as asked")
        print(render_plan(plan_for_config(cfg, llm), "resources profile"))
        return 0
    if not detected:
        print("no GPU found on this node (nvidia-smi absent or empty) and the resources profile describes none: "
              "pass resources=gpu_24gb|gpu_48gb|gpu_96gb|gpu_node", file=sys.stderr)
        return 2
    ocr = OcrDemand(gpu_memory_gb=cfg.ocr.gpu_memory_gb_per_actor, cpus=cfg.resources.ocr.cpus_per_actor)
    gpu = profile_from_detected(detected, os.cpu_count() or 1)
    print(render_plan(make_plan(gpu, ocr, llm, other_pool_cpus(cfg)), "GPUs detected by nvidia-smi"))
    return 0


def _check_models(overrides: list[str]) -> int:
    """Every OCR backend's model dirs and the vllm extract config's model; fails when the
    configured OCR backend's dirs or the LLM's are missing."""
    from pipeline.config import CONF_DIR, expand, load_config
    from pipeline.graph import staged_ocr_dirs
    from pipeline.models_check import check_llm_dir, check_onnx_dirs, check_paddle_dir, render_check

    cfg = load_config(overrides)
    statuses, required = [], []
    for option in sorted(path.stem for path in (CONF_DIR / "ocr").glob("*.yaml")):
        ocr = load_config([*overrides, f"ocr={option}"]).ocr
        staged = staged_ocr_dirs(ocr)
        if staged is None:
            checked = check_onnx_dirs(expand(ocr.model_dir), None)
        else:
            checked = [check_paddle_dir(f"ocr {option} det", staged.det_model_name, staged.det_model_dir),
                       check_paddle_dir(f"ocr {option} rec", staged.rec_model_name, staged.rec_model_dir)]
        statuses += checked
        if ocr == cfg.ocr:
            required += checked
    extract = cfg.extract.model_dump()
    if extract.get("backend") == "vllm":
        statuses.append(check_llm_dir(extract["model_name"], expand(extract["model_path"])))
        required.append(statuses[-1])
    print(render_check(statuses))
    return 0 if all(status.staged for status in required) else 1


def _bench(overrides: list[str]) -> int:
    from benchmarks.throughput import run_bench, split_bench_args
    from pipeline.config import expand

    options, overrides = split_bench_args(overrides)
    # `output=` names the results folder; the runs inside it get their own output folders.
    outputs = [o.split("=", 1)[1] for o in overrides if o.startswith("output=")]
    overrides = [o for o in overrides if not o.startswith("output=")]
    results = expand(outputs[-1] if outputs else f"benchmarks/results/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    run_bench(options, overrides, results)
    print(f"results: {results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    use_offline_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command, overrides = argv[0], argv[1:]
    if command == "index":
        if not overrides or overrides[0] != "build":
            print("usage: medrec index build [sources=embedded|shared] [output=DIR]", file=sys.stderr)
            return 2
        # `sources=` names a terminology config group; `output=` is the index folder.
        overrides = [f"terminology={o.split('=', 1)[1]}" if o.startswith("sources=") else o for o in overrides[1:]]
    if command == "models":
        if not overrides or overrides[0] != "check":
            print("usage: medrec models check [ocr.model_dir=DIR]", file=sys.stderr)
            return 2
        return _check_models(overrides[1:])

    from pipeline.config import expand, load_config

    if command == "bench":
        return _bench(overrides)
    if command == "status" or "--dry-run" in overrides:
        from pipeline.run import status

        if command == "status" and overrides and "=" not in overrides[0]:
            overrides[0] = f"output={overrides[0]}"  # `medrec status OUT`
        print(status(load_config([o for o in overrides if o != "--dry-run"])))
        return 0

    if command == "demo" and not any(o.startswith("output=") for o in overrides):
        overrides.append(f"output=medrec-demo/{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = load_config(overrides)

    if command == "synth":
        print(json.dumps(_synth(cfg), indent=1))
    elif command == "manifest":
        from pipeline.manifest import write_manifest

        if not cfg.input or not cfg.output:
            raise ValueError("manifest needs input=FOLDER output=FILE.parquet")
        table = write_manifest(expand(cfg.input), expand(cfg.output), cfg.facility_id)
        print(f"{table.num_rows} pages -> {expand(cfg.output)}")
    elif command == "index":
        from terminology_index.build import build_index

        record = build_index(cfg.terminology.sources, expand(cfg.output or cfg.terminology.index_path))
        print(json.dumps(record, indent=1))
    elif command == "run":
        from pipeline.run import run_pipeline

        report = run_pipeline(cfg)
        _print_run(report)
        return 0 if report.conserved else 1
    elif command == "demo":
        from pipeline.run import run_pipeline

        root = expand(cfg.output)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"demo writes into a fresh folder; {root} is not empty")
        corpus = _synth(cfg.model_copy(update={"output": str(root / "corpus"), "include_bad_files": True}))
        print(f"synthetic corpus: {corpus['documents']} documents, {corpus['pages']} pages, "
              f"{corpus['facilities']} facilities, {len(corpus['bad_files'])} bad files -> {root / 'corpus'}")
        report = run_pipeline(cfg.model_copy(update={"input": corpus["records"], "output": str(root / "output")}))
        _print_run(report)
        _print_scores(root / "output", Path(corpus["gold"]))
        return 0 if report.conserved else 1
    elif command == "plan":
        return _print_plan(cfg)
    elif command == "evaluate":
        if not cfg.input or not cfg.output:
            raise ValueError("evaluate needs input=GOLD_DIR output=RUN_DIR")
        _print_scores(expand(cfg.output), expand(cfg.input))
    return 0


if __name__ == "__main__":
    sys.exit(main())
