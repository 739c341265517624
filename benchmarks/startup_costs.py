"""What each pooled stage costs before its first batch: CPU seconds to import and set up one actor.

  python -m benchmarks.startup_costs [--output DIR] [any medrec override]

Each stage of the configured graph is built and set up in its own fresh process (as a Ray
actor is), timed by that process's CPU time (`time.process_time`): the shared machine moves
wall-clock start-up by tens of seconds, CPU time far less. "import" is the stage's package
imports before `setup`; "setup" is the stage's own `setup` (models, indexes, heavy imports).
Models and the index are prepared first, untimed, as `medrec run` does on the driver.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def measure_stage(overrides: list[str], position: int) -> dict:
    """Import, build and set up the stage at `position` of the graph in this fresh process."""
    started = time.process_time()
    from pipeline.config import load_config
    from pipeline.graph import stage_factories
    from pipeline.offline import use_offline_environment

    use_offline_environment()
    stage = stage_factories(load_config(overrides))[position]()
    imported = time.process_time()
    stage.setup()
    done = time.process_time()
    return {"stage": stage.name, "pooled": bool(stage.resources.concurrency),
            "actors": stage.resources.concurrency or 0,
            "import_cpu_s": round(imported - started, 2), "setup_cpu_s": round(done - imported, 2),
            "total_cpu_s": round(done - started, 2)}


def run(overrides: list[str], output: Path) -> dict:
    from pipeline.config import load_config
    from pipeline.graph import stage_factories
    from pipeline.run import prepare_models

    cfg = load_config(overrides)
    prepare_models(cfg)
    count = len(stage_factories(cfg))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        stages = [pool.submit(measure_stage, overrides, i).result() for i in range(count)]
    figures = {"method": "CPU time (time.process_time) of a fresh process per stage: package imports + "
                         "stage construction, then setup(); models prepared beforehand, untimed",
               "overrides": overrides, "stages": stages,
               "pooled_actor_cpu_s": round(sum(s["total_cpu_s"] * s["actors"] for s in stages if s["pooled"]), 2)}
    lines = ["| stage | actors | import CPU s | setup CPU s | total CPU s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {s['stage']} | {s['actors'] or 'tasks'} | {s['import_cpu_s']} | {s['setup_cpu_s']} | "
              f"{s['total_cpu_s']} |" for s in stages]
    lines.append(f"\nAll pooled actors together: {figures['pooled_actor_cpu_s']} CPU s before their first batch.")
    output.mkdir(parents=True, exist_ok=True)
    (output / "startup_costs.json").write_text(json.dumps(figures, indent=1))
    (output / "startup_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=Path(f"benchmarks/results/startup_costs-{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    run(args.overrides, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
