"""`medrec run` over the hostile corpus mixed with good records: it exits 0 and every file is
accounted for with the outcome its case expects (see pipeline/synth/hostile.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.manifest import document_id_for, write_manifest
from pipeline.synth.corpus import generate_corpus
from pipeline.synth.hostile import BLANK, PROCESSED, READ, TEXT, write_hostile_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, terminology_index_path: Path):
    import ray

    root = tmp_path_factory.mktemp("hostile")
    # Good records: born-digital (text layer, no OCR), so the run's OCR time goes to the hostile pages.
    corpus = generate_corpus(root / "corpus", n_documents=2, seed=3, born_digital_share=1.0,
                             document_types=("discharge_summary", "lab_report"))
    records = Path(corpus["records"])
    cases = write_hostile_corpus(records)
    manifest = write_manifest(records, root / "manifest.parquet")
    for case in cases:
        if case.vanish:
            (records / case.path).unlink()
    code = main(["run", f"input={root / 'manifest.parquet'}", f"output={root / 'out'}",
                 f"terminology.index_path={terminology_index_path}", "terminology.sources.embed_kinds=[]",
                 f"ocr.model_dir={root / 'models'}", "writer.progress=false", "validate.today=2026-11-01"])
    yield code, cases, manifest, root / "out"
    ray.shutdown()


def test_the_run_exits_0_and_conserves_every_page(hostile_run) -> None:
    code, cases, manifest, out = hostile_run
    report = json.loads((out / "report.json").read_text())
    assert code == 0
    assert len({case.kind for case in cases}) >= 20
    assert report["pages_in"] == manifest.num_rows == report["pages_processed"] + report["pages_quarantined"]
    assert report["conserved"] and report["passed"] and report["pages_failed"] == 0
    assert report["pages_blank"] == sum(case.outcomes.count(BLANK) for case in cases)
    assert report["documents_held_back"] == 1  # the cut-short TIFF: 2 of its 4 pages quarantined


def test_every_file_has_the_outcome_its_case_expects(hostile_run) -> None:
    _, cases, manifest, out = hostile_run
    pages = {(p["document_id"], p["page_index"]): p for p in pq.read_table(out / "tables" / "pages").to_pylist()}
    quarantine = {(q["document_id"], q["page_index"]): f"{q['stage']}:{q['error_type']}"
                  for q in pq.read_table(out / "quarantine.parquet").to_pylist() if q["resource_type"] is None}
    digits = re.sub(r"\D", "", TEXT)

    def outcome(key: tuple[str, int]) -> str:
        if key in quarantine:
            return quarantine[key]
        page = pages[key]
        text = " ".join(line["text"] for line in page["lines"] or [])
        if not text and not page["checkboxes"]:
            return BLANK
        return READ if digits in re.sub(r"\D", "", text) else PROCESSED

    got, expected = {}, {}
    for case in cases:
        document_id = document_id_for(case.path)
        expected[case.kind] = case.outcomes
        got[case.kind] = tuple(outcome((document_id, i)) for i in range(len(case.outcomes)))
    assert got == expected
    hostile = {document_id_for(case.path) for case in cases}
    listed = {row["document_id"] for row in manifest.to_pylist()}
    # Every manifest row is a case's row or a good record's; nothing listed twice or missed.
    assert sum(len(case.outcomes) for case in cases) == sum(1 for row in manifest.to_pylist()
                                                             if row["document_id"] in hostile)
    assert all(quarantine.get(key) is None for key in pages)
    assert {key[0] for key in pages} | {key[0] for key in quarantine} == listed
