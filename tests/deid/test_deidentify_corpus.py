"""`medrec run` then `medrec deidentify` on born-digital records: the synthetic corpus and, where
../shared is present, documents rendered with the kit in ../shared/eval/records. No name, MRN,
birth date or address of any patient of the gold files may be left anywhere in the research copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from benchmarks.deid_residual import gold_check
from pipeline.config import load_config
from pipeline.deid.deidentify import deidentify
from pipeline.deid.keys import SiteKey
from pipeline.run import run_pipeline
from pipeline.synth.corpus import generate_corpus

pytestmark = pytest.mark.slow

# ../shared beside the checkout, or $MEDREC_SHARED_DIR (as tests/conftest.py reads it).
KIT = Path(os.environ.get("MEDREC_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared") / "eval" / "records"


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, terminology_index_path: Path):
    import ray

    root = tmp_path_factory.mktemp("deid_corpus")
    corpus = generate_corpus(root / "synth", n_documents=4, seed=11, born_digital_share=1.0)
    records, golds = Path(corpus["records"]), [Path(corpus["gold"])]
    if (KIT / "render_synthea.py").is_file():
        subprocess.run([sys.executable, str(KIT / "render_synthea.py"), "--out", str(root / "kit"), "--n-docs", "3",
                        "--seed", "5", "--scanned-fraction", "0"], check=True, cwd=KIT, capture_output=True)
        for facility in (root / "kit" / "docs").iterdir():
            shutil.copytree(facility, records / f"kit-{facility.name}")
        golds.append(root / "kit" / "gold")
    cfg = load_config([f"input={records}", f"output={root / 'out'}", f"terminology.index_path={terminology_index_path}",
                       "terminology.sources.embed_kinds=[]", f"ocr.model_dir={root / 'models'}", "writer.progress=false",
                       "validate.today=2026-11-01"])
    run_pipeline(cfg)
    ray.shutdown()
    deid_cfg = load_config(["deid.reference_date=2026-11-01"]).deid
    reports = {name: deidentify(root / "out", root / name, deid_cfg, SiteKey(key * 8))
               for name, key in (("a", b"site-a"), ("a2", b"site-a"), ("b", b"site-b"))}
    yield root, golds, reports


def test_no_gold_identifier_is_left(corpus_run) -> None:
    root, golds, reports = corpus_run
    assert reports["a"].passed, reports["a"].as_json()
    assert reports["a"].residual.found_identified["names"] > 0  # the identified copy had names to find
    table = gold_check(root / "a", root / "out", golds)
    assert sum(row["checked"] for row in table.values()) >= 20
    assert {kind: row["left"] for kind, row in table.items()} == {kind: 0 for kind in table}


def _clinical(folder: Path) -> Counter:
    facts: Counter = Counter()
    for path in sorted((folder / "fhir").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            for coding in (resource.get("code") or {}).get("coding", []):
                facts[(resource["resourceType"], coding["system"], coding["code"],
                       json.dumps(resource.get("valueQuantity"), sort_keys=True))] += 1
    return facts


def test_codes_and_values_equal_the_identified_copy(corpus_run) -> None:
    root, _, _ = corpus_run
    identified = _clinical(root / "out")
    assert identified and _clinical(root / "a") == identified


def test_pseudonyms_stable_across_runs_and_different_across_keys(corpus_run) -> None:
    root, _, _ = corpus_run
    def files(copy: str, kind: str) -> list[Path]:  # a type's NDJSON: one file, or one part per patient shard
        return sorted((root / copy / "fhir").glob(f"{kind}.*ndjson"))

    for kind in ("Patient", "Condition", "Encounter"):
        assert files("a", kind) and [p.name for p in files("a", kind)] == [p.name for p in files("a2", kind)]
        assert [p.read_bytes() for p in files("a", kind)] == [p.read_bytes() for p in files("a2", kind)]
    ids = {n: {json.loads(line)["id"] for path in files(n, "Patient") for line in path.read_text().splitlines()}
           for n in ("a", "b")}
    assert ids["a"] and not ids["a"] & ids["b"]
