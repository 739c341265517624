"""build_index / ensure_index on the tiny release files (the tiny tabular XML, never the ~10 s bundled one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.terminology import TerminologyIndex
from terminology_index import ICD10CM, LOINC, RXNORM
from terminology_index.build import (
    RELEASES_FILE,
    IndexSources,
    build_index,
    ensure_index,
    index_version,
)

OrderLine = Callable[[int, str, bool, str, str], str]


def tiny_sources(files: dict[str, Path]) -> IndexSources:
    return IndexSources(
        icd10cm_xml=str(files["xml"]),
        icd10cm_order_file=str(files["order"]),
        rxnorm_rrf_dir=str(files["rrf"]),
        loinc_table=str(files["loinc"]),
    )


def test_built_index_opens_and_holds_every_source(release_files: dict[str, Path], tmp_path: Path) -> None:
    sources = tiny_sources(release_files)
    record = build_index(sources, tmp_path / "index")

    index = TerminologyIndex(tmp_path / "index")

    assert index.version == record["version"] == index_version(sources)
    assert {r["source"] for r in record["releases"]} == {
        "icd10cm-tabular-xml", "icd10cm-order", "rxnorm-rrf", "loinc-table", "medrec-starter-sets"}
    assert all(r["terms"] > 0 for r in record["releases"] if r["source"] != "medrec-starter-sets")
    # From the tabular XML: the 7th-character expansion; from the order file: J44.9.
    assert index.concept(ICD10CM, "T07.XXXA").billable is True
    assert index.concept(ICD10CM, "S06.0X0").billable is False
    assert index.concept(ICD10CM, "J44.9").display == "Chronic obstructive pulmonary disease, unspecified"
    # From the RRF (aspirin is not in the starter set), linked to its ingredient; the MTHSPL atom is not there.
    assert index.concept(RXNORM, "243670").ingredient == "1191"
    assert index.concept(RXNORM, "999001") is None
    # From Loinc.csv: the unit; the deprecated row is absent.
    assert index.concept(LOINC, "8867-4").kind == "vital"
    assert index.concept(LOINC, "2339-0") is None
    # Lookups work on the built full-text index.
    top = index.candidates("diagnosis", "Essential (primary) hypertension")[0]
    assert (top.code, top.score) == ("I10", 1.0)
    assert index.candidates("diagnosis", "concussion without loss of consciousness initial")[0].code == "S06.0X0A"


def test_the_rrf_atoms_of_other_sources_are_not_searchable(release_files: dict[str, Path], tmp_path: Path) -> None:
    build_index(tiny_sources(release_files), tmp_path / "index")
    index = TerminologyIndex(tmp_path / "index")

    terms = index.lexicon("medication")

    assert "aspirin 81 mg oral tablet" in terms
    assert not any("spl brand" in term or "atc" in term for term in terms)
    assert not any("obsolete" in term for term in terms)


def test_ensure_index_reuses_an_index_built_from_the_same_sources(release_files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    sources, output = tiny_sources(release_files), tmp_path / "index"
    first = ensure_index(sources, output)
    record_path = output / RELEASES_FILE
    mtime = record_path.stat().st_mtime_ns

    again = ensure_index(sources, output)

    assert again == first
    assert record_path.stat().st_mtime_ns == mtime


def test_ensure_index_rebuilds_when_a_source_changes(release_files: dict[str, Path], order_line: OrderLine,
                                                    tmp_path: Path) -> None:
    sources, output = tiny_sources(release_files), tmp_path / "index"
    first = ensure_index(sources, output)
    with release_files["order"].open("a", encoding="utf-8") as handle:
        handle.write(order_line(6, "K219", True, "Gastro-esophageal reflux disease without esophagitis",
                                "Gastro-esophageal reflux disease without esophagitis"))

    second = ensure_index(sources, output)

    assert second["version"] != first["version"]
    assert json.loads((output / RELEASES_FILE).read_text())["version"] == second["version"]
    assert TerminologyIndex(output).concept(ICD10CM, "K21.9") is not None


def test_build_with_a_missing_release_file_raises_naming_the_path(release_files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "Loinc.csv"
    sources = IndexSources(icd10cm_xml=None, loinc_table=str(missing))

    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_index(sources, tmp_path / "index")
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ensure_index(sources, tmp_path / "index")


def test_opening_a_folder_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="medrec index build"):
        TerminologyIndex(tmp_path)


def test_a_rebuild_embeds_only_terms_the_previous_index_lacks(release_files: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from terminology_index import embeddings

    embedded: list[list[str]] = []

    def fake_embed(texts: list[str], batch_size: int = 256) -> np.ndarray:
        embedded.append(list(texts))
        return np.ones((len(texts), embeddings.DIMENSIONS), np.float32)

    monkeypatch.setattr(embeddings, "embed", fake_embed)
    sources = IndexSources(icd10cm_xml=str(release_files["xml"]), embed_kinds=("diagnosis",))
    ensure_index(sources, tmp_path / "index")
    first = set(embedded[-1])
    grown = IndexSources(icd10cm_xml=str(release_files["xml"]), icd10cm_order_file=str(release_files["order"]),
                         embed_kinds=("diagnosis",))

    record = ensure_index(grown, tmp_path / "index")

    assert first and embedded[-1] and not first & set(embedded[-1])  # only the order file's new terms
    assert record["embedded_terms"] > len(embedded[-1])


# An analyte named alone -------------------------------------------------------------------

LOINC_TABLE_COLUMNS = "loinc_num\tlong_common_name\tshortname\tcomponent\tproperty\ttime_aspct\tsystem\tscale_typ\tclasstype\tstatus"
# One analyte the starter set knows (sodium) and one it does not (ferritin), each measured in
# several specimens, as a LOINC table lists them.
ANALYTE_ROWS = [
    ("12907-2", "Sodium [Moles/volume] in Red Blood Cells", "Sodium RBC-sCnc", "Sodium", "RBC"),
    ("2947-0", "Sodium [Moles/volume] in Blood", "Sodium Bld-sCnc", "Sodium", "Bld"),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "Sodium SerPl-sCnc", "Sodium", "Ser/Plas"),
    ("10001-1", "Ferritin [Mass/volume] in Body fluid", "Ferritin Fld-mCnc", "Ferritin", "Body fld"),
    ("10002-9", "Ferritin [Presence] in Serum or Plasma", "Ferritin SerPl Ql", "Ferritin", "Ser/Plas"),
    ("10003-7", "Ferritin [Mass/time] in 24 hour Urine", "Ferritin 24h Ur-mRate", "Ferritin", "Urine"),
    ("10004-5", "Ferritin [Mass/volume] in Serum or Plasma by Immunoassay", "Ferritin SerPl IA-mCnc", "Ferritin",
     "Ser/Plas"),
    ("10005-2", "Ferritin [Mass/volume] in Serum or Plasma", "Ferritin SerPl-mCnc", "Ferritin", "Ser/Plas"),
]


@pytest.fixture
def analyte_index(release_files: dict[str, Path], tmp_path: Path) -> TerminologyIndex:
    table = tmp_path / "loinc_table.tsv"
    table.write_text("\n".join([LOINC_TABLE_COLUMNS] + [
        f"{code}\t{name}\t{short}\t{component}\tSCnc\tPt\t{system}\tQn\t1\tACTIVE"
        for code, name, short, component, system in ANALYTE_ROWS]) + "\n", encoding="utf-8")
    sources = IndexSources(icd10cm_xml=str(release_files["xml"]), loinc_table=str(table))
    build_index(sources, tmp_path / "index")
    return TerminologyIndex(tmp_path / "index")


def test_the_starter_code_of_an_analyte_outranks_the_release_codes_that_share_its_name(
        analyte_index: TerminologyIndex) -> None:
    # The release's component "Sodium" names all three codes; the starter's row names one.
    top = analyte_index.candidates("lab", "Sodium")[0]

    assert (top.code, top.score) == ("2951-2", 1.0)


def test_an_analyte_alone_codes_to_its_plain_blood_or_serum_measurement(analyte_index: TerminologyIndex) -> None:
    # Not another specimen, not a timed collection, not a presence test, not a named method.
    ranked = [c.code for c in analyte_index.candidates("lab", "Ferritin", k=5)]

    assert ranked[0] == "10005-2"
    assert ranked.index("10004-5") < ranked.index("10001-1")
    assert ranked.index("10004-5") < ranked.index("10002-9")
