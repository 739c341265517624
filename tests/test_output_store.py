"""The store's commits and ledger, and how a run plans its work from them (no Ray here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.incremental import plan_documents, plan_pages, render_status, with_input_shas
from pipeline.schemas import MANIFEST_SCHEMA
from pipeline.store import (
    DOCUMENTS,
    LEDGER,
    OCR,
    PAGES,
    Fingerprints,
    append_ledger,
    commit_directory,
    compact_ledger,
    document_key,
    ledger_entry,
    ocr_key,
    read_ledger,
    read_store_file,
    result_key,
    shard_of,
    write_parquet_atomic,
)

FP = Fingerprints(ocr="ocr-1", extract="ext-1", terminology="tix-1", assembly="asm-1")


def _manifest(pages: dict[str, tuple[str, int]]) -> pa.Table:
    """document id -> (sha256, pages)."""
    rows = [{"facility_id": "fac", "document_id": doc, "page_index": i, "source_uri": f"/in/{doc}.pdf", "sha256": sha,
             "media_type": "application/pdf", "mrn": None, "document_type": None}
            for doc, (sha, n) in pages.items() for i in range(n)]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def _commit(out, stage: str, rows: list[dict], fp: Fingerprints) -> None:
    """Commit entries for rows as the workers do, with a data file present at the location."""
    location = f"store/{stage}/seg-{len(list((out / 'store').rglob('*')))}.parquet"
    write_parquet_atomic(pa.table({"x": [1]}), out / location)
    keys = [ocr_key(fp, r["sha256"], r["page_index"]) if stage == OCR else result_key(fp, r) for r in rows]
    append_ledger(out, [ledger_entry(stage, k, location, r, fp) for k, r in zip(keys, rows)])


def test_atomic_parquet_write_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "t.parquet"
    write_parquet_atomic(pa.table({"x": [1, 2]}), path)
    write_parquet_atomic(pa.table({"x": [3]}), path)
    assert pq.read_table(path).column("x").to_pylist() == [3]
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]


def test_a_document_folder_appears_whole_and_a_second_commit_of_its_key_is_a_no_op(tmp_path):
    target = tmp_path / "documents" / "key"
    assert commit_directory({"a.parquet": pa.table({"x": [1]})}, target)
    assert not commit_directory({"a.parquet": pa.table({"x": [2]})}, target)
    assert pq.read_table(target / "a.parquet").column("x").to_pylist() == [1]
    assert [p.name for p in target.parent.iterdir()] == ["key"]


def test_ledger_keeps_the_first_commit_of_a_key_and_drops_entries_whose_data_is_gone(tmp_path):
    rows = _manifest({"d1": ("s1", 2)}).to_pylist()
    _commit(tmp_path, OCR, rows, FP)
    _commit(tmp_path, OCR, rows[:1], FP)  # a retried batch committed the same page again
    ledger = read_ledger(tmp_path)
    assert ledger.num_rows == 2
    assert len(set(ledger.column("key").to_pylist())) == 2
    for location in set(ledger.column("location").to_pylist()):
        (tmp_path / location).unlink()
    assert read_ledger(tmp_path).num_rows == 1  # the retried batch's file still holds one page


def test_a_ledger_of_more_entry_files_than_one_read_group_reads_each_entry_once_in_commit_order(tmp_path):
    rows = _manifest({"d1": ("s1", 150)}).to_pylist()
    for row in rows:  # one file a page, as batches of one page commit
        _commit(tmp_path, OCR, [row], FP)
    _commit(tmp_path, OCR, rows[:3], FP)  # retried pages: their first commits stay
    ledger = read_ledger(tmp_path)
    assert ledger.num_rows == 150
    assert ledger.column("page_index").to_pylist() == list(range(150))
    times = ledger.column("committed_at").to_pylist()
    assert times == sorted(times)


def test_a_store_file_of_an_older_schema_is_conformed_to_the_schema_asked_for(tmp_path):
    schema = pa.schema([("key", pa.string()), ("pages_ok", pa.int32()), ("note", pa.string())])
    pq.write_table(pa.table({"pages_ok": pa.array([3], pa.int64()), "key": ["k"]}), tmp_path / "old.parquet")
    pq.write_table(pa.table({"key": ["k"], "pages_ok": pa.array([3], pa.int32()), "note": ["n"]}), tmp_path / "new.parquet")
    old = read_store_file(tmp_path / "old.parquet", schema)
    assert old.schema.equals(schema)
    assert old.to_pylist() == [{"key": "k", "pages_ok": 3, "note": None}]
    assert read_store_file(tmp_path / "new.parquet", schema).to_pylist() == [{"key": "k", "pages_ok": 3, "note": "n"}]


def test_compaction_folds_entries_into_one_file_with_the_same_content(tmp_path):
    rows = _manifest({"d1": ("s1", 3)}).to_pylist()
    for row in rows:
        _commit(tmp_path, OCR, [row], FP)
    before = sorted(read_ledger(tmp_path).column("key").to_pylist())
    compact_ledger(tmp_path)
    assert not list((tmp_path / LEDGER / "entries").glob("*.parquet"))
    assert len(list((tmp_path / LEDGER).glob("compacted-*.parquet"))) == 1
    assert sorted(read_ledger(tmp_path).column("key").to_pylist()) == before


def test_plan_reuses_committed_results_and_stored_ocr_and_says_why_the_rest_runs(tmp_path):
    manifest = _manifest({"done": ("s1", 2), "ocr-only": ("s2", 1), "new": ("s3", 1)})
    rows = manifest.to_pylist()
    _commit(tmp_path, OCR, rows[:3], FP)
    _commit(tmp_path, PAGES, rows[:2], FP)
    plan = plan_pages(manifest, read_ledger(tmp_path), FP)
    assert plan.to_ocr.column("document_id").to_pylist() == ["new"]
    assert plan.ocr_stored.column("document_id").to_pylist() == ["ocr-only"]
    assert dict(plan.ocr.pages) == {"new input": 1}
    assert dict(plan.extract.pages) == {"new input": 1, "not committed (interrupted run)": 1}


def test_a_terminology_change_reruns_extraction_on_stored_ocr_and_an_ocr_change_reruns_ocr(tmp_path):
    manifest = _manifest({"d1": ("s1", 2)})
    rows = manifest.to_pylist()
    _commit(tmp_path, OCR, rows, FP)
    _commit(tmp_path, PAGES, rows, FP)
    new_terms = Fingerprints(ocr="ocr-1", extract="ext-1", terminology="tix-2", assembly="asm-1")
    plan = plan_pages(manifest, read_ledger(tmp_path), new_terms)
    assert plan.to_ocr.num_rows == 0 and plan.ocr_stored.num_rows == 2
    assert dict(plan.extract.pages) == {"terminology index changed": 2}
    new_model = Fingerprints(ocr="ocr-2", extract="ext-1", terminology="tix-1", assembly="asm-1")
    plan = plan_pages(manifest, read_ledger(tmp_path), new_model)
    assert plan.to_ocr.num_rows == 2
    assert dict(plan.ocr.pages) == {"OCR engine/model/config changed": 2}
    changed = _manifest({"d1": ("s1-edited", 2)})
    assert dict(plan_pages(changed, read_ledger(tmp_path), FP).ocr.pages) == {"changed input": 2}


def test_documents_wait_for_every_page_and_committed_documents_are_not_redone(tmp_path):
    manifest = _manifest({"whole": ("s1", 2), "half": ("s2", 2)})
    rows = manifest.to_pylist()
    _commit(tmp_path, PAGES, rows[:3], FP)
    plan = plan_documents(manifest, read_ledger(tmp_path), FP)
    assert [d["document_id"] for d in plan.to_finalize] == ["whole"] and plan.waiting == 1
    key = document_key(FP, rows[0], 2)
    commit_directory({"pages.parquet": pa.table({"x": [1]})}, tmp_path / "store" / DOCUMENTS / key)
    append_ledger(tmp_path, [ledger_entry(DOCUMENTS, key, f"store/{DOCUMENTS}/{key}", rows[0], FP,
                                          patient_key="fac|mrn:1", pages_ok=2, pages_failed=0)])
    plan = plan_documents(manifest, read_ledger(tmp_path), FP)
    assert plan.to_finalize == [] and [e["document_id"] for e in plan.committed] == ["whole"]
    text = render_status(plan_pages(manifest, read_ledger(tmp_path), FP), plan, 0, 1)
    assert "| classify, extract, code, validate | 1 | 1 |" in text


def test_an_unreadable_file_gets_a_fresh_hash_so_it_is_retried_every_run():
    manifest = _manifest({"gone": ("", 1), "ok": ("s1", 1)})
    first, second = with_input_shas(manifest), with_input_shas(manifest)
    assert first.column("sha256")[1].as_py() == "s1"
    assert first.column("sha256")[0].as_py() != second.column("sha256")[0].as_py()


def test_patient_shards_are_stable_and_spread():
    keys = [f"fac|mrn:{i}" for i in range(200)]
    assert [shard_of(k, 8) for k in keys] == [shard_of(k, 8) for k in keys]
    assert len({shard_of(k, 8) for k in keys}) == 8


@pytest.mark.parametrize("armed", [True, False])
def test_a_failpoint_kills_its_process_once(tmp_path, armed):
    mark = tmp_path / "fired"
    code = "from pipeline.store import failpoint; failpoint('here'); print('alive')"
    env = {**os.environ, "MEDREC_FAILPOINT": "here" if armed else "elsewhere", "MEDREC_FAILPOINT_MARK": str(mark)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (first.returncode == -9) == armed
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout.strip() == "alive"


def test_fingerprints_with_remembered_model_hashes_are_the_fingerprints_without(tmp_path):
    """Remembering the model files' digest keeps the OCR fingerprint, so stores keep their OCR keys."""
    import time

    from pipeline.config import load_config
    from pipeline.file_hashes import RACY_SECONDS, FileHashes
    from pipeline.incremental import fingerprints, ocr_model_files

    cfg = load_config([f"ocr.model_dir={tmp_path / 'models'}"])
    files = ocr_model_files(cfg)
    time.sleep(RACY_SECONDS + 0.2)  # the model dirs were just built: old enough to be remembered
    hashes = FileHashes.load(tmp_path / "hashes.parquet")
    first = fingerprints(cfg, "tix-1", files, hashes)
    hashes.save()
    assert first == fingerprints(cfg, "tix-1") == fingerprints(cfg, "tix-1", files,
                                                               FileHashes.load(tmp_path / "hashes.parquet"))
