"""Hybrid retrieval: sentence-embedding search beside full-text, on a tiny ICD-10-CM release.

Loads the packaged all-MiniLM-L6-v2 model (about 10 s on two cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.terminology import TerminologyIndex
from terminology_index.build import IndexSources, build_index

ROWS = [
    ("N23", "N23", "1", "Unspecified renal colic"),
    ("N200", "N20.0", "1", "Calculus of kidney"),
    ("M5450", "M54.50", "1", "Low back pain, unspecified"),
    ("I10", "I10", "1", "Essential (primary) hypertension"),
    ("L03115", "L03.115", "1", "Cellulitis of right lower limb"),
    ("L03116", "L03.116", "1", "Cellulitis of left lower limb"),
    ("J189", "J18.9", "1", "Pneumonia, unspecified organism"),
    ("S72001A", "S72.001A", "1", "Fracture of unspecified part of neck of right femur, initial encounter"),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> TerminologyIndex:
    root = tmp_path_factory.mktemp("semantic")
    release = root / "icd10cm.tsv"
    release.write_text("code\tcode_dotted\tbillable\tshort_description\tlong_description\n" + "".join(
        f"{code}\t{dotted}\t{billable}\t{text}\t{text}\n" for code, dotted, billable, text in ROWS))
    record = build_index(IndexSources(icd10cm_xml=None, icd10cm_tsv=str(release), embed_kinds=("diagnosis",)),
                         root / "index")
    # Billable terms of codes without a seventh character, plus the clinical synonyms of these codes.
    assert record["embedded_terms"] >= len(ROWS) - 1
    return TerminologyIndex(root / "index")


@pytest.mark.parametrize(("text", "code"), [("pain in the lower back", "M54.50"), ("lung infection", "J18.9"),
                                           ("renal colic", "N23")])
def test_a_paraphrase_is_found_by_meaning(index: TerminologyIndex, text: str, code: str) -> None:
    best = index.candidates("diagnosis", text, 3)[0]
    assert (best.code, best.match) == (code, "semantic")
    assert best.score >= 0.5  # enough for the code stage to choose it


def test_the_side_the_text_names_wins_over_embedding_similarity(index: TerminologyIndex) -> None:
    assert index.candidates("diagnosis", "Cellulitis of right leg", 3)[0].code == "L03.115"


def test_unrelated_text_stays_below_the_choice_threshold(index: TerminologyIndex) -> None:
    assert all(c.score < 0.5 for c in index.candidates("diagnosis", "signature on file", 3))


def test_an_index_built_without_embeddings_does_no_semantic_search(tmp_path: Path) -> None:
    release = tmp_path / "icd10cm.tsv"
    release.write_text("code\tcode_dotted\tbillable\tshort_description\tlong_description\n"
                       "N23\tN23\t1\tUnspecified renal colic\tUnspecified renal colic\n")
    build_index(IndexSources(icd10cm_xml=None, icd10cm_tsv=str(release)), tmp_path / "index")
    assert all(c.match != "semantic" for c in TerminologyIndex(tmp_path / "index").candidates("diagnosis", "kidney pain"))
