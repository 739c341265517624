"""Session fixtures shared by the test suite: one terminology index and the shared reference data."""

from __future__ import annotations

import csv
import gzip
import os
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.terminology import TerminologyIndex
from terminology_index.build import IndexSources, build_index

# The checkout's parent folder holds `shared/` (terminology extracts, eval data).
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`../shared` beside the checkout, or $MEDREC_SHARED_DIR as the config reads it."""
    return Path(os.environ.get("MEDREC_SHARED_DIR") or REPO_ROOT.parent / "shared").resolve()


@pytest.fixture(scope="session")
def terminology_index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded index (bundled CDC ICD-10-CM XML + starter sets), built once per session (~10-15 s)."""
    path = tmp_path_factory.mktemp("terminology") / "index"
    build_index(IndexSources(), path)
    return path


@pytest.fixture(scope="session")
def terminology_index(terminology_index_path: Path) -> TerminologyIndex:
    """The session index opened once (opening reads every term into memory, ~3 s)."""
    return TerminologyIndex(terminology_index_path)


SHARED_FILES = ("loinc_core.tsv.gz", "icd10cm_2026.tsv.gz", "rxnorm_concepts.tsv.gz", "rxnorm_relations.tsv.gz")


def read_shared_tsv(path: Path) -> list[dict[str, str]]:
    """A gzipped TSV of ../shared/terminology, every cell a string (as its README says to read it)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="session")
def shared_terminology_dir() -> Path:
    """`../shared/terminology`; tests that read the official extracts skip when it is absent."""
    path = shared_dir() / "terminology"
    missing = [name for name in SHARED_FILES if not (path / name).is_file()]
    if missing:
        pytest.skip(f"shared terminology extracts {missing} not found in {path} "
                    "(the checkout's parent folder has no shared/; set MEDREC_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def shared_loinc(shared_terminology_dir: Path) -> dict[str, dict[str, str]]:
    """LOINC Core 2.78 rows by loinc_num."""
    return {row["loinc_num"]: row for row in read_shared_tsv(shared_terminology_dir / "loinc_core.tsv.gz")}


@pytest.fixture(scope="session")
def shared_icd10cm(shared_terminology_dir: Path) -> dict[str, dict[str, str]]:
    """ICD-10-CM FY2026 order-file rows by dotted code."""
    return {row["code_dotted"]: row for row in read_shared_tsv(shared_terminology_dir / "icd10cm_2026.tsv.gz")}


@pytest.fixture(scope="session")
def shared_rxnorm_concepts(shared_terminology_dir: Path) -> dict[str, dict[str, str]]:
    """RxNorm concepts (SAB=RXNORM) by rxcui."""
    return {row["rxcui"]: row for row in read_shared_tsv(shared_terminology_dir / "rxnorm_concepts.tsv.gz")}


@pytest.fixture(scope="session")
def shared_rxnorm_ingredients(shared_terminology_dir: Path) -> dict[str, set[str]]:
    """rxcui of a drug -> the ingredient rxcuis it `has_ingredient` (rxnorm_relations.tsv.gz)."""
    ingredients: dict[str, set[str]] = defaultdict(set)
    for row in read_shared_tsv(shared_terminology_dir / "rxnorm_relations.tsv.gz"):
        if row["relation"] == "has_ingredient":
            ingredients[row["source_rxcui"]].add(row["target_rxcui"])
    return dict(ingredients)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip, with the reason, on a node without an NVIDIA GPU."""
    import shutil

    if shutil.which("nvidia-smi") is not None:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (nvidia-smi not found) with paddlepaddle-gpu / vLLM installed")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
