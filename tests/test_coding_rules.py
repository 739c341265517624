"""The coding rules a coder expects from `pipeline.terminology`: billable leaves, sides, OCR misreads."""

from __future__ import annotations

import pytest

from pipeline.records import Entity
from pipeline.stages.code import CodeStage
from pipeline.terminology import TerminologyIndex, code_readings, ocr_folded
from terminology_index.build import IndexSources, build_index


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Gastro-esophageal reflux disease", "K21.9"),  # header K21 -> its "without" default
        ("Osteoarthritis of left knee", "M17.12"),  # the side the text names
        ("Type 2 diabetes mellitus", "E11.9"),
        ("Hypertensi0n", "I10"),  # OCR read o as 0
        ("l10", "I10"),  # a code written on the page, I read as l
        ("110", "I10"),
        ("MI", "I21.9"),
        ("diabetes", "E11.9"),  # ICD-10-CM default when no type is written
    ],
)
def test_chosen_code_is_the_billable_one_a_coder_would_pick(terminology_index, text, code):
    stage = CodeStage(index_path="unused")
    stage.index = terminology_index  # the session index, opened once
    entity = Entity(entity_id="e", kind="diagnosis", text=text, section="assessment", assertion="present",
                    page_index=0, line_ids=[0], bbox=[0, 0, 1, 1], ocr_confidence=1.0, confidence=1.0)
    stage.code_entity(entity)
    assert entity.code == code
    assert terminology_index.concept("http://hl7.org/fhir/sid/icd-10-cm", entity.code).billable


def test_a_header_is_a_candidate_but_never_the_pick(terminology_index):
    candidates = terminology_index.candidates("diagnosis", "Gastro-esophageal reflux disease", 5)
    codes = [c.code for c in candidates]
    assert "K21" in codes and "K21.9" in codes
    leaf = next(c for c in candidates if c.code == "K21.9")
    assert leaf.match == "default-leaf-of:K21"


def test_billable_leaf_follows_laterality_and_defaults(terminology_index):
    assert terminology_index.billable_leaf("M17.1", "right knee").code == "M17.11"
    assert terminology_index.billable_leaf("E11", "type 2 diabetes").code == "E11.9"
    assert terminology_index.billable_leaf("I10", "anything") is None  # nothing below a leaf


def test_code_readings_fold_ocr_confusions():
    assert "I10" in code_readings("l10") and "I10" in code_readings("110")
    assert code_readings("hypertension") == []
    assert ocr_folded("Hypertensi0n") == ocr_folded("hypertension")


def test_lab_unit_picks_the_loinc_property(terminology_index):
    mass = terminology_index.candidates("lab", "Glucose", 5)
    assert mass[0].code == "2345-7"
    # The embedded index has no substance-concentration glucose: the ranking stays as it is.
    assert terminology_index.prefer_lab_property(mass, "Glucose", "mmol/L")[0].code == "2345-7"
    assert terminology_index.prefer_lab_property(mass, "Glucose", "mg/dL") == mass


def test_lab_unit_moves_to_the_substance_concentration_code(tmp_path):
    loinc = tmp_path / "Loinc.csv"
    loinc.write_text(
        '"LOINC_NUM","COMPONENT","SHORTNAME","LONG_COMMON_NAME","CLASSTYPE","STATUS","EXAMPLE_UCUM_UNITS"\n'
        '"14749-6","Glucose","Glucose SerPl-sCnc","Glucose [Moles/volume] in Serum or Plasma","1","ACTIVE","mmol/L"\n'
        '"2345-7","Glucose","Glucose SerPl-mCnc","Glucose [Mass/volume] in Serum or Plasma","1","ACTIVE","mg/dL"\n'
    )
    build_index(IndexSources(icd10cm_xml=None, loinc_table=str(loinc)), tmp_path / "index")
    index = TerminologyIndex(tmp_path / "index")
    candidates = index.candidates("lab", "Glucose", 5)
    # The unit decides between the codes the name alone matches (the component "Glucose" names both).
    assert index.prefer_lab_property(candidates, "Glucose", "mmol/L")[0].code == "14749-6"
    assert index.prefer_lab_property(candidates, "Glucose", "mg/dL")[0].code == "2345-7"


def test_default_leaf_prefers_the_plain_unspecified_code(terminology_index):
    assert terminology_index.billable_leaf("L29", "pruritus").code == "L29.9"  # not L29.3 anogenital


def test_remembered_answers_are_equal_and_not_shared(terminology_index):
    first = terminology_index.candidates("diagnosis", "Gastro-esophageal reflux disease", 5)
    first.clear()  # a caller changing its list must not change the remembered answer
    assert terminology_index.candidates("diagnosis", "Gastro-esophageal reflux disease", 5)[0].code == "K21"
