"""The query encoder gives the vectors the index was built with, without torch in the actor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terminology_index.embeddings import QueryEncoder, embed, ensure_query_encoder, query_encoder_path

TEXTS = ["chest pain", "Acute viral pharyngitis (disorder)", "DM2 w/o complications", "x",
         "hypertension " * 400]  # past max_seq_length: both truncate alike


def test_the_exported_encoder_gives_the_vectors_of_sentence_transformers(tmp_path: Path) -> None:
    encoder = QueryEncoder(ensure_query_encoder(tmp_path))

    together = encoder.encode(TEXTS)  # padded to the longest text
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])

    reference = embed(TEXTS)
    assert together.shape == (len(TEXTS), 384) and together.dtype == np.float32
    assert np.abs(together - reference).max() < 1e-5
    assert np.abs(alone - reference).max() < 1e-5
    assert encoder.encode([]).shape == (0, 384)


def test_the_encoder_is_exported_once_and_replaces_an_older_export(tmp_path: Path) -> None:
    older = tmp_path / "query-encoder-0000000000000000.onnx"
    older.write_bytes(b"an export of other code")

    path = ensure_query_encoder(tmp_path)
    written = path.stat().st_mtime_ns

    assert path == query_encoder_path(tmp_path) and not older.exists()
    assert ensure_query_encoder(tmp_path) == path and path.stat().st_mtime_ns == written
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_rebuilt_index_copies_the_previous_index_export(tmp_path: Path, monkeypatch) -> None:
    from terminology_index import embeddings

    (tmp_path / "previous").mkdir()
    (tmp_path / "rebuilt").mkdir()
    previous = ensure_query_encoder(tmp_path / "previous")

    def no_export(target: Path) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(embeddings, "_export_onnx", no_export)
    copied = ensure_query_encoder(tmp_path / "rebuilt", previous=tmp_path / "previous")

    assert copied.parent == tmp_path / "rebuilt" and copied.read_bytes() == previous.read_bytes()
