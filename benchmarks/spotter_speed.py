"""Term spotter cost: build time and memory per actor, and CPU milliseconds per page of text.

    python -m benchmarks.spotter_speed [--index embedded|shared] [--index-path DIR] [--out benchmarks/results]
        [--pages 100]

Builds (or reuses) the index of a `terminology` config group, builds one `TermSpotter` per
index kind from every term of that kind, and spots the CodiEsp dev case reports (a page of
narrative each) with the diagnosis spotter. Times are CPU seconds (`time.process_time`): the
machine is shared, and wall time measures the neighbours. Memory is what `tracemalloc` counts
as allocated by the build and still held. Exit status 1 when a goal fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.coding_accuracy import DEFAULT_CACHE, default_codiesp_dir, index_sources
from pipeline.spotter import TermSpotter
from pipeline.terminology import TerminologyIndex
from terminology_index.build import ensure_index

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
KINDS = ("diagnosis", "lab", "medication")
MAX_MS_PER_PAGE = 50.0  # a page of narrative in milliseconds, not seconds
MAX_MEGABYTES = 400.0  # every kind's spotter together, per actor


def measure_kind(index: TerminologyIndex, kind: str) -> tuple[TermSpotter, dict[str, Any]]:
    """One spotter built from the index's terms of `kind`, with its build CPU time and memory."""
    tracemalloc.start()
    started = time.process_time()
    spotter = TermSpotter(index.spotter_terms(kind))
    seconds = time.process_time() - started
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return spotter, {"kind": kind, "cores": spotter.cores, "vocabulary": len(spotter.vocabulary),
                     "build_cpu_seconds": round(seconds, 2), "megabytes": round(held / 2**20, 1)}


def measure_pages(spotter: TermSpotter, pages: list[str]) -> dict[str, Any]:
    """CPU milliseconds per page and mentions found."""
    started = time.process_time()
    mentions = sum(len(spotter.spot(page)) for page in pages)
    seconds = time.process_time() - started
    return {"pages": len(pages), "characters_per_page": round(sum(map(len, pages)) / max(len(pages), 1)),
            "mentions": mentions, "cpu_ms_per_page": round(1000 * seconds / max(len(pages), 1), 2)}


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Term spotter ({report['index']} index)", "", "| kind | cores | vocabulary | build CPU s | MB |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {k['kind']} | {k['cores']:,} | {k['vocabulary']:,} | {k['build_cpu_seconds']} | {k['megabytes']} |"
              for k in report["kinds"]]
    p = report["pages"]
    lines += ["", f"Diagnosis spotting: {p['pages']} pages of {p['characters_per_page']} characters, "
                  f"{p['mentions']} mentions, {p['cpu_ms_per_page']} CPU ms per page.", "", "## Goals", ""]
    lines += [f"- {'PASS' if g['passed'] else 'FAIL'} {g['goal']}" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", choices=("embedded", "shared"), default="shared")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--pages", type=int, default=100, help="CodiEsp dev case reports spotted")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--index-path", type=Path, default=None, help="an index already built (skips the build)")
    args = parser.parse_args(argv)
    path = args.index_path or args.cache_dir / args.index
    if args.index_path is None:
        ensure_index(index_sources(args.index), path)
    index = TerminologyIndex(path)
    built = [measure_kind(index, kind) for kind in KINDS]
    texts = default_codiesp_dir() / "dev" / "text_files_en"
    if not texts.is_dir():
        print(f"no CodiEsp dev texts under {texts}: nothing to spot", file=sys.stderr)
        return 1
    pages = [p.read_text(encoding="utf-8") for p in sorted(texts.glob("*.txt"))[: args.pages]]
    timing = measure_pages(built[0][0], pages)
    megabytes = sum(k["megabytes"] for _, k in built)
    goals = [{"goal": f"{timing['cpu_ms_per_page']} CPU ms per page <= {MAX_MS_PER_PAGE}",
              "passed": timing["cpu_ms_per_page"] <= MAX_MS_PER_PAGE},
             {"goal": f"{megabytes:.0f} MB for every kind's spotter <= {MAX_MEGABYTES:.0f}",
              "passed": megabytes <= MAX_MEGABYTES}]
    report = {"index": args.index, "kinds": [k for _, k in built], "pages": timing, "goals": goals}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spotter_speed.json").write_text(json.dumps(report, indent=1))
    markdown = render_markdown(report)
    (args.out / "spotter_speed.md").write_text(markdown)
    print(markdown)
    return 0 if all(g["passed"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
