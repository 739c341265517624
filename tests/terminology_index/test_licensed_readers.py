"""SNOMED CT RF2 and CPT readers on tiny files in the official layouts, and procedure coding with them."""

from __future__ import annotations

from pathlib import Path

from pipeline.terminology import TerminologyIndex
from terminology_index import CPT, SNOMED
from terminology_index.build import IndexSources, build_index
from terminology_index.readers import read_cpt_csv, read_snomed_rf2

RF2_HEADER = "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\n"
FSN, SYNONYM = "900000000000003001", "900000000000013009"


def _rf2(path: Path) -> Path:
    rows = [
        ("1", "1", "80146002", FSN, "Appendectomy (procedure)"),
        ("2", "1", "80146002", SYNONYM, "Appendectomy"),
        ("3", "1", "38341003", FSN, "Hypertensive disorder, systemic arterial (disorder)"),
        ("4", "1", "38341003", SYNONYM, "High blood pressure"),
        ("5", "0", "38341003", SYNONYM, "Retired synonym"),
        ("6", "1", "260787004", FSN, "Physical object (physical object)"),
        ("7", "1", "260787004", SYNONYM, "Physical object"),
    ]
    path.write_text(RF2_HEADER + "".join(
        f"{i}\t20250101\t{active}\t900000000000207008\t{concept}\ten\t{type_id}\t{term}\t900000000000448009\n"
        for i, active, concept, type_id, term in rows))
    return path


def _cpt(path: Path) -> Path:
    path.write_text("code,description\n44950,Appendectomy\n93000,Electrocardiogram complete\n")
    return path


def test_rf2_keeps_active_synonyms_of_clinical_hierarchies(tmp_path):
    concepts = list(read_snomed_rf2(_rf2(tmp_path / "sct2_Description_Snapshot-en.txt")))
    assert {(c.code, c.term, c.kind) for c in concepts} == {
        ("80146002", "Appendectomy", "procedure"),
        ("38341003", "High blood pressure", "diagnosis"),
    }
    assert all(c.system == SNOMED for c in concepts)


def test_cpt_csv(tmp_path):
    concepts = list(read_cpt_csv(_cpt(tmp_path / "cpt.csv")))
    assert [(c.system, c.code, c.kind) for c in concepts] == [(CPT, "44950", "procedure"), (CPT, "93000", "procedure")]


def test_procedures_code_only_where_a_procedure_terminology_is_loaded(tmp_path):
    build_index(IndexSources(icd10cm_xml=None, cpt_csv=str(_cpt(tmp_path / "cpt.csv"))), tmp_path / "with")
    build_index(IndexSources(icd10cm_xml=None), tmp_path / "without")
    with_cpt, without = TerminologyIndex(tmp_path / "with"), TerminologyIndex(tmp_path / "without")
    assert with_cpt.has_kind("procedure") and not without.has_kind("procedure")
    best = with_cpt.candidates("procedure", "Electrocardiogram", 3)[0]
    assert (best.system, best.code) == (CPT, "93000")
    assert without.candidates("procedure", "Electrocardiogram", 3) == []


def test_release_versions_are_read_where_the_publisher_labels_them(tmp_path):
    from terminology_index.build import release_version
    from terminology_index.readers import bundled_icd10cm_xml

    loinc = tmp_path / "Loinc.csv"
    loinc.write_text('"LOINC_NUM","VersionLastChanged"\n"1-8","2.73"\n"2-6","2.78"\n"3-4","2.9"\n')
    assert release_version("loinc-table", loinc) == "2.78"  # numerically newest, not as text
    assert release_version("icd10cm-tabular-xml", bundled_icd10cm_xml()).startswith("FY20")
    assert release_version("snomed-rf2", tmp_path / "sct2_Description_Snapshot-en_INT_20250301.txt") == "20250301"
    assert release_version("rxnorm-tsv", tmp_path / "rxnorm_concepts.tsv.gz") is None
