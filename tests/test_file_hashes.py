"""Content hashes remembered by the files' stat between runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.file_hashes import RACY_SECONDS, FileHashes
from pipeline.manifest import build_manifest, file_sha256


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _wait_past_racy_window() -> None:
    """Until the files just written are old enough for their stamps to be trusted."""
    time.sleep(RACY_SECONDS + 0.2)


def _counted(calls: list[str], value: str):
    def compute() -> str:
        calls.append(value)
        return value
    return compute


def test_a_remembered_hash_is_not_computed_again_while_the_file_is_unchanged(tmp_path) -> None:
    path = _written(tmp_path / "a.pdf", "first")
    _wait_past_racy_window()
    hashes, calls = FileHashes.load(tmp_path / "hashes.parquet"), []
    assert hashes.remember("k", [path], _counted(calls, "v1")) == "v1"
    hashes.save()
    again = FileHashes.load(tmp_path / "hashes.parquet")
    assert again.remember("k", [path], _counted(calls, "v2")) == "v1"
    assert calls == ["v1"]
    assert again.sha256(path) == file_sha256(path)


def test_a_file_rewritten_with_the_same_size_and_its_mtime_set_back_is_hashed_again(tmp_path) -> None:
    path = _written(tmp_path / "a.pdf", "first")
    _wait_past_racy_window()
    hashes = FileHashes.load(tmp_path / "hashes.parquet")
    before = hashes.sha256(path)
    info = path.stat()
    path.write_text("other")  # same size
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # as `cp -p` or `rsync -t` leave it
    assert hashes.sha256(path) == file_sha256(path) != before


def test_a_file_changed_within_the_racy_window_is_hashed_but_not_remembered(tmp_path) -> None:
    path = _written(tmp_path / "a.pdf", "fresh")
    hashes, calls = FileHashes.load(tmp_path / "hashes.parquet"), []
    hashes.remember("k", [path], _counted(calls, "v1"))
    hashes.remember("k", [path], _counted(calls, "v1"))
    assert calls == ["v1", "v1"]


def test_saving_keeps_only_what_was_used_since_loading(tmp_path) -> None:
    kept, gone = _written(tmp_path / "kept.pdf", "k"), _written(tmp_path / "gone.pdf", "g")
    _wait_past_racy_window()
    hashes = FileHashes.load(tmp_path / "hashes.parquet")
    hashes.sha256(kept)
    hashes.sha256(gone)
    hashes.save()
    gone.unlink()
    later = FileHashes.load(tmp_path / "hashes.parquet")
    later.sha256(kept)
    later.save()
    assert pq.read_table(tmp_path / "hashes.parquet").column("key").to_pylist() == [f"sha256:{kept}"]


def test_a_manifest_built_with_remembered_hashes_is_the_one_built_without(tmp_path) -> None:
    from pipeline.synth.corpus import generate_corpus

    records = Path(generate_corpus(tmp_path / "corpus", n_documents=3, seed=3, born_digital_share=0.5)["records"])
    _wait_past_racy_window()
    fresh = build_manifest(records)
    hashes = FileHashes.load(tmp_path / "hashes.parquet")
    assert build_manifest(records, hashes=hashes) == fresh
    hashes.save()
    assert build_manifest(records, hashes=FileHashes.load(tmp_path / "hashes.parquet")) == fresh
