"""De-identification residual risk on a rendered corpus: what the research copy still holds.

Run from the checkout, on a folder `medrec run` wrote and the gold files of its records:

    python benchmarks/deid_residual.py --run OUT --gold GOLD_DIR [GOLD_DIR ...] --key KEY_FILE
        [--research DIR] [--out benchmarks/results]

It writes the research copy (`medrec deidentify`'s own code, default config), then reports
(1) the command's residual check: identifier terms of the identified copy, found there, left
in the research copy, per type; (2) an independent check from the gold files: every patient's
name parts, MRN, birth date (ISO and US forms), address and source file name, searched as
lower-case strings on word bounds in every file name and string of the research copy; (3) CPU seconds
of the de-identification (process time: wall time is meaningless on a shared machine). The
goal is 0 left on both checks; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config import load_config
from pipeline.deid.deidentify import deidentify
from pipeline.deid.keys import SiteKey


def _date_forms(iso: str) -> list[str]:
    d = date.fromisoformat(iso)
    return [iso, f"{d.month:02d}/{d.day:02d}/{d.year}", f"{d.month}/{d.day}/{d.year}"]


def gold_identifiers(gold: dict) -> dict[str, list[str]]:
    """Identifiers of one gold file (synthetic corpus or the records kit), by type."""
    patient = gold.get("patient") or {}
    given = patient.get("given")
    names = [*(given if isinstance(given, list) else [given]), patient.get("family"), patient.get("name_as_written")]
    born = patient.get("birth_date") or patient.get("birthDate")
    source = gold.get("file")
    return {
        "names": [n for n in names if n],
        "record_numbers": [patient["mrn"]] if patient.get("mrn") else [],
        "birth_dates": _date_forms(born) if born else [],
        "addresses": [patient["address"]] if patient.get("address") else [],
        "file_names": [Path(source).name] if source else [],
    }


def folder_text(folder: Path) -> str:
    """Every file name and every string of a folder (Parquet cells as JSON), lower-cased."""
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts.append(str(path.relative_to(folder)))
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        elif path.suffix in (".ndjson", ".json", ".md"):
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts).lower()


def gold_check(research: Path, identified: Path, gold_dirs: list[Path]) -> dict[str, dict[str, int]]:
    """Per type: gold identifiers checked, present in the identified copy, left in the research copy."""
    research_text, identified_text = folder_text(research), folder_text(identified)
    table: dict[str, dict[str, int]] = {}
    for gold_dir in gold_dirs:
        for path in sorted(gold_dir.glob("*.json")):
            for kind, values in gold_identifiers(json.loads(path.read_text())).items():
                row = table.setdefault(kind, {"checked": 0, "in_identified_copy": 0, "left": 0})
                for value in {v.lower() for v in values}:
                    # on word bounds: a family name "Lee" is not in "sleep"
                    pattern = re.compile(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])")
                    row["checked"] += 1
                    row["in_identified_copy"] += bool(pattern.search(identified_text))
                    row["left"] += bool(pattern.search(research_text))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="an output folder of `medrec run`")
    parser.add_argument("--gold", type=Path, nargs="+", required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--research", type=Path, help="where the research copy goes (default: RUN-research)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    research = args.research or args.run.with_name(args.run.name + "-research")
    documents = sum(len(list(g.glob("*.json"))) for g in args.gold)
    started = time.process_time()
    report = deidentify(args.run, research, load_config([]).deid, SiteKey.from_file(args.key))
    cpu = time.process_time() - started
    gold = gold_check(research, args.run, args.gold)
    result = {"documents": documents, "patients": report.patients, "deidentify_cpu_seconds": round(cpu, 1),
              "residual_check": report.residual.as_json() if report.residual else None,
              "gold_check": gold, "changes_by_identifier_type": dict(report.changes),
              "passed": report.passed and all(row["left"] == 0 for row in gold.values())}
    lines = [f"# De-identification residual risk ({documents} documents, {report.patients} patients)", "",
             f"de-identification CPU seconds: {result['deidentify_cpu_seconds']}", "",
             "Residual check of the command (identifier terms of the identified copy):", "",
             "| type | searched | found in identified copy | left in research copy |", "|---|---:|---:|---:|"]
    residual = report.residual
    lines += [f"| {k} | {residual.searched[k]} | {residual.found_identified[k]} | {residual.left[k]} |"
              for k in sorted(residual.searched)] if residual else []
    lines += ["", "Gold identifiers (plain strings, every file name and string of the research copy):", "",
              "| type | checked | in identified copy | left in research copy |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['checked']} | {v['in_identified_copy']} | {v['left']} |" for k, v in sorted(gold.items())]
    lines += ["", f"result: {'PASSED' if result['passed'] else 'FAILED'}"]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "deid_residual.json").write_text(json.dumps(result, indent=1))
    (args.out / "deid_residual.md").write_text(markdown)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
