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
  medrec review OUT [OUT ...] [review.port=8765 review.host=127.0.0.1 review.users_file=FILE]
  medrec apply-review OUT [OUT ...]
  medrec review-user add NAME reviewer|supervisor|auditor [review.users_file=FILE]   # password on stdin or prompted
  medrec deidentify OUT to=RESEARCH [key_file=FILE] [deid.dates.mode=year deid.images=redacted ...]   # exit 1: identifiers left
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pipeline.offline import use_offline_environment

COMMANDS = ("synth", "manifest", "run", "status", "demo", "index", "evaluate", "plan", "models", "bench", "review",
            "apply-review", "review-user", "deidentify")


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
    from pipeline.plan import OcrDemand, other_pool_cpus, plannable_gpus, profile_from_detected, render_plan
    from pipeline.plan import render_refused

    llm = llm_spec_for(cfg, fallback=DEFAULT_LLM_MODEL_FILE)
    if cfg.extract.backend != "vllm":
        print(f"extract={cfg.extract.backend} runs on CPU; the LLM below is planned from conf/extract/{DEFAULT_LLM_MODEL_FILE.name} "
              "for sizing (`medrec run` plans it with extract=vllm)")
    detected = detect_gpus()
    if cfg.resources.gpu is not None:
        if detected:
            print(f"this node has {len(detected)} GPU(s) ({', '.join(gpu.name for gpu in detected)}); "
                  "planning the resources profile as asked")
        plan = plan_for_config(cfg, llm)
        print(render_plan(plan, "resources profile"))
        _print_layout(plan, cfg)
        return 0
    if not detected:
        print("no GPU found on this node (nvidia-smi absent or empty) and the resources profile describes none: "
              "pass resources=gpu_24gb|gpu_48gb|gpu_96gb|gpu_node", file=sys.stderr)
        return 2
    node = plannable_gpus(detected)
    if not node.planned:
        print("no GPU on this node can be planned:\n" + render_refused(node), file=sys.stderr)
        return 2
    ocr = OcrDemand(gpu_memory_gb=cfg.ocr.gpu_memory_gb_per_actor, cpus=cfg.resources.ocr.cpus_per_actor)
    plan = make_plan(profile_from_detected(node, os.cpu_count() or 1), ocr, llm, other_pool_cpus(cfg))
    print(render_plan(plan, "GPUs detected by nvidia-smi"))
    if node.refused:
        print(render_refused(node))
    _print_layout(plan, cfg)
    return 0


def _print_layout(plan, cfg) -> None:
    """The members per card the placement reserves (pipeline.placement)."""
    from pipeline.placement import layout_for_plan

    layout = layout_for_plan(plan, llm_cpus=getattr(cfg.extract, "cpus_per_replica", 1.0),
                             ocr_memory_mb=cfg.resources.ocr.memory_mb)
    if layout is not None:
        print("  placement (one Ray bundle per card):")
        print(layout.render())


def _check_models(overrides: list[str]) -> int:
    """Every OCR backend's model dirs and the vllm extract config's model; fails when the
    configured OCR backend's dirs or the LLM's are missing."""
    from pipeline.config import CONF_DIR, expand, load_config
    from pipeline.graph import staged_ocr_dirs
    from pipeline.models_check import check_llm_dir, check_onnx_dirs, check_paddle_dir, render_check

    cfg = load_config(overrides)
    statuses, required = [], []
    onnx_checked: dict = {}  # model_dir -> statuses: onnx_gpu runs the CPU default's files
    for option in sorted(path.stem for path in (CONF_DIR / "ocr").glob("*.yaml")):
        ocr = load_config([*overrides, f"ocr={option}"]).ocr
        staged = staged_ocr_dirs(ocr)
        if staged is None and expand(ocr.model_dir) in onnx_checked:
            checked = onnx_checked[expand(ocr.model_dir)]
        else:
            if staged is None:
                checked = onnx_checked[expand(ocr.model_dir)] = check_onnx_dirs(expand(ocr.model_dir), None)
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


def _review(command: str, args: list[str]) -> int:
    """`review`, `apply-review` and `review-user`: folders and names are positional, the rest overrides."""
    from pipeline.config import expand, load_config

    positional = [a for a in args if "=" not in a]
    cfg = load_config([a for a in args if "=" in a])
    if command == "review-user":
        import getpass

        from pipeline.review.users import add_user

        if len(positional) != 3 or positional[0] != "add":
            print("usage: medrec review-user add NAME reviewer|supervisor|auditor [review.users_file=FILE]", file=sys.stderr)
            return 2
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                print("passwords differ", file=sys.stderr)
                return 2
        else:
            password = sys.stdin.readline().rstrip("\n")
        add_user(expand(cfg.review.users_file), positional[1], positional[2], password)
        print(f"user {positional[1]} ({positional[2]}) -> {expand(cfg.review.users_file)}")
        return 0
    if not positional:
        print(f"usage: medrec {command} OUT [OUT ...]", file=sys.stderr)
        return 2
    outputs = [expand(p) for p in positional]
    if command == "apply-review":
        from pipeline.review.apply import apply_review

        for output in outputs:
            print(json.dumps({"output": str(output), **apply_review(output).to_dict()}, indent=1))
        return 0
    from pipeline.review.app import serve

    serve(outputs, cfg)
    return 0


def _deidentify_overrides(args: list[str]) -> list[str]:
    """`OUT to=RESEARCH key_file=KEY` -> `input=OUT output=RESEARCH deid.key_file=KEY`."""
    renamed = {"to": "output", "key_file": "deid.key_file"}
    overrides = []
    for arg in args:
        if "=" not in arg:
            overrides.append(f"input={arg}")
        else:
            name, value = arg.split("=", 1)
            overrides.append(f"{renamed.get(name, name)}={value}")
    return overrides


def _deidentify(cfg) -> int:
    from pipeline.config import expand
    from pipeline.deid.deidentify import copy_key_guard, deidentify
    from pipeline.deid.keys import SiteKey

    if not cfg.input or not cfg.output or not cfg.deid.key_file:
        raise ValueError("deidentify needs OUT to=RESEARCH and key_file=FILE (or MEDREC_DEID_KEY_FILE)")
    key_file, target = expand(cfg.deid.key_file), expand(cfg.output)
    copy_key_guard(key_file, target)
    report = deidentify(expand(cfg.input), target, cfg.deid, SiteKey.from_file(key_file, cfg.deid.pseudonym_chars),
                        render=cfg.render)
    print(report.render_markdown())
    print(f"research copy: {target}")
    return 0 if report.passed or not cfg.deid.residual.fail and not report.fhir_invalid else 1


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

    if command in ("review", "apply-review", "review-user"):
        return _review(command, overrides)

    from pipeline.config import expand, load_config

    if command == "bench":
        return _bench(overrides)
    if command == "status" or "--dry-run" in overrides:
        from pipeline.run import status

        if command == "status" and overrides and "=" not in overrides[0]:
            overrides[0] = f"output={overrides[0]}"  # `medrec status OUT`
        print(status(load_config([o for o in overrides if o != "--dry-run"])))
        return 0
    if command == "deidentify":
        return _deidentify(load_config(_deidentify_overrides(overrides)))

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
        return 0 if report.passed else 1  # pages lost, or more failed than faults.max_page_error_rate
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
        print("review the doubtful fields in the workbench (add yourself once, then open it):\n"
              "  medrec review-user add YOUR_NAME supervisor\n"
              f"  medrec review {root / 'output'}")
        return 0 if report.passed else 1  # pages lost, or more failed than faults.max_page_error_rate
    elif command == "plan":
        return _print_plan(cfg)
    elif command == "evaluate":
        if not cfg.input or not cfg.output:
            raise ValueError("evaluate needs input=GOLD_DIR output=RUN_DIR")
        _print_scores(expand(cfg.output), expand(cfg.input))
    return 0


if __name__ == "__main__":
    sys.exit(main())
