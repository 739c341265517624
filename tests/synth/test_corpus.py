"""generate_corpus: documents on disk, one gold JSON each, reproducible by seed, bad files on request."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from pipeline.manifest import document_id_for
from pipeline.synth.corpus import GOLD_DIR, RECORDS_DIR, generate_corpus

N_DOCUMENTS, SEED = 4, 7
BAD_FILES = ["corrupt.pdf", "empty.png", "encrypted.pdf", "truncated.jpg", "unsupported.docx"]


def read_gold(root: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((root / GOLD_DIR).glob("*.json"))}


def page_count(path: Path) -> int:
    if path.suffix == ".pdf":
        with pymupdf.open(path) as pdf:
            return pdf.page_count
    with Image.open(path) as image:
        return getattr(image, "n_frames", 1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corpus")
    return root, generate_corpus(root, n_documents=N_DOCUMENTS, seed=SEED, include_bad_files=True)


def test_writes_one_gold_json_per_document(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    gold = read_gold(root)
    documents = [p for p in (root / RECORDS_DIR).rglob("*") if p.is_file() and p.parent.name != "bad"]

    assert summary["documents"] == N_DOCUMENTS
    assert len(gold) == N_DOCUMENTS
    assert len(documents) == N_DOCUMENTS
    assert {g["file"] for g in gold.values()} == {str(p.relative_to(root / RECORDS_DIR)) for p in documents}


def test_gold_document_ids_match_the_manifest_ids(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    for name, gold in read_gold(root).items():
        assert gold["document_id"] == document_id_for(gold["file"])
        assert name == f"{gold['document_id']}.json"
        assert gold["facility_id"] == Path(gold["file"]).parts[0]


def test_gold_page_count_matches_the_file(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    gold = read_gold(root)

    for g in gold.values():
        assert page_count(root / RECORDS_DIR / g["file"]) == g["page_count"], g["file"]
        assert all(fact["page_index"] < g["page_count"]
                   for kind in ("diagnoses", "medications", "allergies", "labs") for fact in g[kind])
    assert summary["pages"] == sum(g["page_count"] for g in gold.values())


def test_same_seed_gives_identical_gold(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = corpus

    generate_corpus(tmp_path, n_documents=N_DOCUMENTS, seed=SEED)

    assert read_gold(tmp_path) == read_gold(root)
    assert not (tmp_path / RECORDS_DIR / "fac-north" / "bad").exists()  # bad files only on request


def test_include_bad_files_writes_the_five_bad_inputs(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    bad = root / RECORDS_DIR / "fac-north" / "bad"

    assert sorted(p.name for p in bad.iterdir()) == BAD_FILES
    assert summary["bad_files"] == [f"fac-north/bad/{name}" for name in BAD_FILES]
    assert (bad / "empty.png").stat().st_size == 0
    with pymupdf.open(bad / "encrypted.pdf") as pdf:
        assert pdf.needs_pass
    with pytest.raises(pymupdf.FileDataError):
        pymupdf.open(bad / "corrupt.pdf")
    with pytest.raises(OSError), Image.open(bad / "truncated.jpg") as image:
        image.load()
    # Bad files have no gold: they are expected in quarantine, not in the output.
    assert not any("bad/" in g["file"] for g in read_gold(root).values())
