"""Runs into the store: kill -9 and resume, incremental re-runs, a two-node cluster.

Each output is compared with one uninterrupted reference run: the same FHIR lines, the same
table rows, the same quarantine, nothing twice, nothing missing, no temporary file left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.run import run_pipeline, status
from pipeline.synth.corpus import generate_corpus
from pipeline.store import FAILPOINT_ENV, FAILPOINT_MARK_ENV
from terminology_index.build import IndexSources, build_index

pytestmark = pytest.mark.slow


def _overrides(root: Path, records: Path, out: Path, index: Path, models: Path, *extra: str) -> list[str]:
    return [f"input={records}", f"output={out}", f"terminology.index_path={index}", "terminology.sources.embed_kinds=[]",
            f"ocr.model_dir={models}", "writer.progress=false", "validate.today=2026-11-01", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, terminology_index_path: Path):
    """A corpus (born-digital and scanned pages, five bad files) and one uninterrupted run of it."""
    import ray

    root = tmp_path_factory.mktemp("store")
    corpus = generate_corpus(root / "corpus", n_documents=3, seed=3, born_digital_share=0.5,
                             document_types=("discharge_summary", "progress_note", "lab_report"),
                             include_bad_files=True)
    records = Path(corpus["records"])
    args = _overrides(root, records, root / "reference", terminology_index_path, root / "models")
    report = run_pipeline(load_config(args))
    assert report.conserved
    yield {"root": root, "records": records, "out": root / "reference", "index": terminology_index_path,
           "models": root / "models", "report": report}
    ray.shutdown()


def _snapshot(out: Path) -> dict:
    """What a reader of the output sees, in a comparable form; checks nothing is there twice."""
    fhir_lines = [line for path in sorted((out / "fhir").glob("*.ndjson")) for line in path.read_text().splitlines()]
    ids = Counter((json.loads(line)["resourceType"], json.loads(line)["id"]) for line in fhir_lines)
    assert max(ids.values()) == 1, "a resource id is written twice"
    manifest = json.loads((out / "fhir" / "manifest.json").read_text())
    listed = {entry["url"]: entry["count"] for entry in manifest["output"]}
    present = {p.name: len(p.read_text().splitlines()) for p in (out / "fhir").glob("*.ndjson")}
    assert listed == present, "manifest.json does not list exactly the files present"
    pages = pq.read_table(out / "tables" / "pages").select(["document_id", "page_index", "text_source"]).to_pylist()
    page_keys = Counter((p["document_id"], p["page_index"]) for p in pages)
    assert max(page_keys.values()) == 1, "a page is in the pages table twice"
    entities = pq.read_table(out / "tables" / "entities").column("entity_id").to_pylist()
    assert len(entities) == len(set(entities)), "an entity is in the entities table twice"
    quarantine = pq.read_table(out / "quarantine.parquet").select(
        ["document_id", "page_index", "stage", "error_type", "resource_type"]).to_pylist()
    assert not [p for p in out.rglob(".tmp-*")], "a temporary file is left in the output"
    report = json.loads((out / "report.json").read_text())
    assert report["conserved"]
    return {"fhir": sorted(fhir_lines), "pages": sorted(page_keys), "entities": sorted(entities),
            "quarantine": sorted(tuple(str(v) for v in row.values()) for row in quarantine),
            "report_pages": (report["pages_in"], report["pages_processed"], report["pages_quarantined"])}


def _last_run(out: Path) -> dict:
    return json.loads((out / "ledger" / "last_run.json").read_text())


def _copy_output(reference: dict, name: str) -> Path:
    out = reference["root"] / name
    shutil.copytree(reference["out"], out)
    return out


def test_a_rerun_with_nothing_changed_processes_nothing_and_rewrites_nothing(reference):
    out = _copy_output(reference, "unchanged")
    before = {p: p.stat().st_mtime_ns for p in (out / "fhir").glob("*.ndjson")}
    run_pipeline(load_config(_overrides(reference["root"], reference["records"], out, reference["index"],
                                        reference["models"])))
    last = _last_run(out)
    assert (last["ocr_pages"], last["extract_pages"], last["documents_finalized"], last["shards_written"]) == (0, 0, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "fhir").glob("*.ndjson")} == before
    assert _snapshot(out) == _snapshot(reference["out"])


def test_added_files_are_processed_alone_and_rewrite_only_their_patients_shards(reference):
    root = reference["root"]
    records = root / "records-added"
    shutil.copytree(reference["records"], records)
    extra = generate_corpus(root / "extra", n_documents=1, seed=11, born_digital_share=1.0,
                            document_types=("lab_report",))
    added = sorted(Path(extra["records"]).rglob("*.pdf"))
    for path in added:
        target = records / "added" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    out = _copy_output(reference, "added")
    cfg = load_config(_overrides(root, records, out, reference["index"], reference["models"]))
    print(status(cfg))
    report = run_pipeline(cfg)
    last = _last_run(out)
    reference_pages = reference["report"].pages_in
    assert report.pages_in > reference_pages
    assert last["ocr_pages"] == last["extract_pages"] == report.pages_in - reference_pages
    assert last["ocr_reasons"] == {"new input": report.pages_in - reference_pages}
    assert last["documents_finalized"] == len(added)
    assert 1 <= last["shards_written"] <= len(added)  # one new patient: its shard only
    snapshot, before = _snapshot(out), _snapshot(reference["out"])
    assert set(before["fhir"]) < set(snapshot["fhir"]) and set(before["entities"]) < set(snapshot["entities"])


def test_a_terminology_change_reuses_stored_ocr_and_reruns_extraction_onward(reference, tmp_path):
    loinc = tmp_path / "Loinc.csv"  # a release with one more code: a new index version
    loinc.write_text('"LOINC_NUM","COMPONENT","LONG_COMMON_NAME","CLASSTYPE","STATUS"\n'
                     '"99999-9","Test analyte","Test analyte [Mass/volume] in Serum","1","ACTIVE"\n')
    index = tmp_path / "index"
    record = build_index(IndexSources(loinc_table=str(loinc)), index)
    out = _copy_output(reference, "terminology")
    cfg = load_config(_overrides(reference["root"], reference["records"], out, index, reference["models"],
                                 f"terminology.sources.loinc_table={loinc}"))
    assert "terminology index changed" in status(cfg)
    report = run_pipeline(cfg)
    last = _last_run(out)
    assert last["ocr_pages"] == 0
    assert last["extract_reasons"] == {"terminology index changed": report.pages_in}
    assert report.terminology_version == record["version"] != reference["report"].terminology_version
    manifest = json.loads((out / "fhir" / "manifest.json").read_text())
    assert manifest["terminology_version"] == record["version"]
    assert _snapshot(out)["pages"] == _snapshot(reference["out"])["pages"]


def test_an_ocr_model_change_ocrs_every_page_again(reference, tmp_path):
    from pipeline.ocr_models import DET_SOURCE_FILE, REC_SOURCE_FILE, rapidocr_models_dir

    source = tmp_path / "ocr-release"
    source.mkdir()
    for name in (DET_SOURCE_FILE, REC_SOURCE_FILE):
        shutil.copy(rapidocr_models_dir() / name, source / name)
    with (source / DET_SOURCE_FILE).open("ab") as handle:
        handle.write(b"\xa0\x06\x01")  # an unknown protobuf field: other bytes, the same network
    out = _copy_output(reference, "ocr-model")
    cfg = load_config(_overrides(reference["root"], reference["records"], out, reference["index"],
                                 tmp_path / "models", f"ocr.source_dir={source}"))
    report = run_pipeline(cfg)
    last = _last_run(out)
    assert last["ocr_reasons"] == {"OCR engine/model/config changed": report.pages_in}
    assert _snapshot(out) == _snapshot(reference["out"])  # same network weights: same output


def _medrec_run(reference: dict, out: Path, env: dict[str, str]) -> subprocess.Popen:
    args = _overrides(reference["root"], reference["records"], out, reference["index"], reference["models"])
    env = {k: v for k, v in {**os.environ, **env}.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(run: subprocess.Popen) -> int:
    """The run's exit code; a run still going after an hour is killed (no orphan left behind)."""
    try:
        return run.wait(timeout=3600)
    except subprocess.TimeoutExpired:
        run.kill()
        raise


def _committed(out: Path, stage: str) -> int:
    from pipeline.store import read_ledger

    ledger = read_ledger(out)
    return sum(1 for s in ledger.column("stage").to_pylist() if s == stage)


@pytest.mark.parametrize("failpoint", [
    "ocr_committed",  # a worker dies after committing an OCR batch, before handing it on
    "pages_committed",  # a worker dies after committing validated pages
    "shard_table_written",  # a worker dies while writing a shard's tables
    "shard_fhir_written",  # a worker dies while writing a shard's FHIR files
    "driver_documents",  # the driver dies while document rules run
    "driver_shards",  # the driver dies while shards are being written
])
def test_a_kill_at_any_point_then_the_same_command_finishes_with_nothing_lost_or_duplicated(reference, tmp_path,
                                                                                            failpoint):
    out = tmp_path / "out"
    first = _medrec_run(reference, out, {FAILPOINT_ENV: failpoint, FAILPOINT_MARK_ENV: str(tmp_path / "fired")})
    _wait(first)
    assert (tmp_path / "fired").exists(), f"the run never reached {failpoint}"
    if failpoint.startswith("driver"):
        assert first.returncode == -signal.SIGKILL
    ocr_before = _committed(out, "ocr")
    second = _medrec_run(reference, out, {})
    assert _wait(second) == 0
    pages_in = reference["report"].pages_in
    assert _last_run(out)["ocr_pages"] <= pages_in - min(ocr_before, pages_in)  # committed OCR is not redone
    assert _snapshot(out) == _snapshot(reference["out"])


def test_the_driver_killed_during_ocr_resumes_without_redoing_committed_pages(reference, tmp_path):
    out = tmp_path / "out"
    run = _medrec_run(reference, out, {})
    deadline = time.monotonic() + 3600
    while _committed(out, "ocr") == 0 if (out / "ledger").is_dir() else True:
        assert run.poll() is None, "the run ended before OCR committed anything"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(2)  # workers of the killed driver's Ray die with it
    committed = _committed(out, "ocr")
    pages_in = reference["report"].pages_in
    resumed = _medrec_run(reference, out, {})
    assert _wait(resumed) == 0
    assert _last_run(out)["ocr_pages"] == pages_in - committed
    assert _snapshot(out) == _snapshot(reference["out"])


def test_a_two_node_cluster_writes_one_output_folder(reference, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's local Ray: this test's driver joins the two-node cluster
    # Two logical CPUs a node: the local_cpu profile's pools take 1.9 of them, and on 1-CPU nodes
    # the manifest read and render tasks (0.1 each) found no node with room left.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        out = tmp_path / "out"
        report = run_pipeline(load_config(_overrides(reference["root"], reference["records"], out, reference["index"],
                                                     reference["models"])))
        assert report.conserved
        assert _snapshot(out) == _snapshot(reference["out"])
    finally:
        ray.shutdown()
        cluster.shutdown()
