"""CodeStage on page rows with extracted entities, against the session terminology index."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.records import Entity
from pipeline.schemas import page_rows_to_table
from pipeline.stages.code import CodeStage
from terminology_index import ICD10CM, LOINC, RXNORM


@pytest.fixture(scope="module")
def stage(terminology_index_path: Path) -> CodeStage:
    """One stage for the module: its setup opens the index on the first batch (~3 s)."""
    return CodeStage(index_path=str(terminology_index_path))


def code(stage: CodeStage, rows: list[dict]) -> list[dict]:
    return stage.process_batch(page_rows_to_table(rows)).to_pylist()


def coded(stage: CodeStage, make_page_row, *entities: Entity) -> dict[str, Entity]:
    (row,) = code(stage, [make_page_row(list(entities))])
    return {e["text"]: Entity.from_row(e) for e in row["entities"]}


def test_diagnoses_code_to_billable_icd10cm(stage: CodeStage, make_entity, make_page_row) -> None:
    out = coded(stage, make_page_row,
                make_entity("diagnosis", "Essential hypertension", 0),
                make_entity("diagnosis", "Type 2 diabetes mellitus", 1),
                make_entity("diagnosis", "CHF", 2))

    htn = out["Essential hypertension"]
    assert (htn.code, htn.code_system, htn.code_display) == ("I10", ICD10CM, "Essential (primary) hypertension")
    assert htn.code_score == 1.0 and htn.confidence == pytest.approx(0.9)
    assert htn.candidates and htn.candidates[0].code == "I10" and htn.flags == []
    assert out["Type 2 diabetes mellitus"].code == "E11.9"  # never the E11 header
    assert out["CHF"].code == "I50.9"


def test_a_header_is_never_chosen_even_when_it_matches_exactly(stage: CodeStage, terminology_index,
                                                                make_entity, make_page_row) -> None:
    # "Hypertensive heart disease" is the exact name of the I11 category, which is not codable.
    out = coded(stage, make_page_row, make_entity("diagnosis", "Hypertensive heart disease"))

    entity = out["Hypertensive heart disease"]
    assert "I11" in [c.code for c in entity.candidates]
    assert entity.code is not None and entity.code.startswith("I11.")
    assert terminology_index.concept(ICD10CM, entity.code).billable is True


def test_medication_with_strength_codes_to_the_clinical_drug(stage: CodeStage, make_entity, make_page_row) -> None:
    metformin = make_entity("medication", "Metformin 500 mg", attribute="Metformin", dose_value=500.0,
                            dose_unit="mg", route="PO", frequency="BID")

    out = coded(stage, make_page_row, metformin)["Metformin 500 mg"]

    assert (out.code, out.code_system, out.ingredient_code) == ("861007", RXNORM, "6809")
    assert out.code_display == "metformin hydrochloride 500 MG Oral Tablet"
    assert out.candidates[0].code == "6809"  # the ingredient stays the top candidate for review


def test_a_salt_the_index_does_not_name_codes_to_its_ingredient(stage: CodeStage, make_entity,
                                                                 make_page_row) -> None:
    salt = make_entity("medication", "Metoprolol tartrate 25 mg", attribute="Metoprolol", dose_value=25.0,
                       dose_unit="mg")
    unknown = make_entity("medication", "Zorblatex forte 10 mg", 1, attribute="Zorblatex", dose_value=10.0,
                          dose_unit="mg")

    out = coded(stage, make_page_row, salt, unknown)

    assert out["Metoprolol tartrate 25 mg"].ingredient_code == "6918"
    assert out["Zorblatex forte 10 mg"].code is None


def test_medication_without_a_matching_strength_stays_on_the_ingredient(stage: CodeStage, make_entity,
                                                                        make_page_row) -> None:
    odd = make_entity("medication", "Metformin 750 mg", attribute="Metformin", dose_value=750.0, dose_unit="mg")
    levothyroxine = make_entity("medication", "Levothyroxine 50 mcg", 1, attribute="Levothyroxine",
                                dose_value=50.0, dose_unit="mcg")

    out = coded(stage, make_page_row, odd, levothyroxine)

    assert (out["Metformin 750 mg"].code, out["Metformin 750 mg"].ingredient_code) == ("6809", "6809")
    assert (out["Levothyroxine 50 mcg"].code, out["Levothyroxine 50 mcg"].ingredient_code) == ("966221", "10582")


def test_labs_vitals_and_allergies_are_coded(stage: CodeStage, make_entity, make_page_row) -> None:
    out = coded(stage, make_page_row,
                make_entity("lab", "Hemoglobin A1c", 0, value_num=8.1, unit="%"),
                make_entity("vital", "HR 78 bpm", 1, attribute="pulse", value_num=78.0, unit="/min"),
                make_entity("vital", "BP 128/76 mmHg", 2, attribute="systolic", value_num=128.0),
                make_entity("allergy", "Codeine", 3, value="nausea"))

    assert (out["Hemoglobin A1c"].code, out["Hemoglobin A1c"].code_system) == ("4548-4", LOINC)
    assert out["HR 78 bpm"].code == "8867-4"
    assert out["BP 128/76 mmHg"].code == "8480-6"
    assert (out["Codeine"].code, out["Codeine"].ingredient_code) == ("2670", "2670")


def test_unknown_diagnosis_is_flagged_uncoded_not_defaulted(stage: CodeStage, make_entity, make_page_row) -> None:
    out = coded(stage, make_page_row, make_entity("diagnosis", "Quexilar flombosis", confidence=0.9))

    unknown = out["Quexilar flombosis"]
    assert (unknown.code, unknown.code_system, unknown.code_score) == (None, None, None)
    assert unknown.flags == ["uncoded"]
    assert all(c.score < 0.5 for c in unknown.candidates)
    assert unknown.confidence == pytest.approx(0.9)


def test_uncoded_kinds_and_negated_allergies_are_left_alone(stage: CodeStage, make_entity, make_page_row) -> None:
    nkda = make_entity("allergy", "No known drug allergies", 0, assertion="negated")
    name = make_entity("demographic", "Janet Johnson", 1, attribute="name", value="Janet Johnson")

    out = coded(stage, make_page_row, nkda, name)

    for entity in out.values():
        assert (entity.code, entity.candidates, entity.flags) == (None, [], [])


def test_entities_keep_their_order_ids_and_lineage(stage: CodeStage, make_entity, make_page_row) -> None:
    entities = [make_entity("diagnosis", "Asthma", 0), make_entity("vital", "SpO2 97 %", 1, attribute="spo2"),
                make_entity("diagnosis", "Gout", 2)]

    (row,) = code(stage, [make_page_row(entities)])

    assert [(e["entity_id"], e["line_ids"], e["bbox"]) for e in row["entities"]] == [
        (e.entity_id, e.line_ids, e.bbox) for e in entities]
    assert [t["stage"] for t in row["timings"]] == ["code"]


def test_rows_failed_upstream_pass_through_untouched(stage: CodeStage, make_entity, make_page_row) -> None:
    failed = make_page_row([make_entity("diagnosis", "Essential hypertension")], error_stage="ocr",
                           error_type="undecodable_image", error_message="bad pixels")
    healthy = make_page_row([make_entity("diagnosis", "Essential hypertension")], page_index=1)
    batch = page_rows_to_table([failed, healthy])

    out = stage.process_batch(batch).to_pylist()

    assert out[0] == batch.to_pylist()[0]
    assert out[1]["entities"][0]["code"] == "I10"


def test_missing_input_column_is_named(stage: CodeStage) -> None:
    batch = pa.table({"facility_id": ["fac-1"], "document_id": ["doc-1"], "page_index": [0]})

    with pytest.raises(KeyError, match="entities"):
        stage.process_batch(batch)


def test_top_k_out_of_bounds_is_rejected(terminology_index_path: Path) -> None:
    with pytest.raises(ValueError, match="top_k"):
        CodeStage(index_path=str(terminology_index_path), top_k=0)


def test_type_2_diabetes_with_ckd_stage_takes_the_combination_and_the_stage_code(
        stage: CodeStage, make_entity, make_page_row) -> None:
    mention = make_entity("diagnosis", "Type 2 diabetes mellitus with CKD stage 3a", 3)
    (row,) = code(stage, [make_page_row([mention])])
    entities = row["entities"]
    assert [(e["entity_id"], e["code"]) for e in entities] == [
        ("ent-diagnosis-3", "E11.22"), ("ent-diagnosis-3-2", "N18.31")]
    assert entities[0]["candidates"][0]["match"] == "combination:E11.9+N18.31"
    assert entities[1]["line_ids"] == [3]  # the stage code keeps the lineage of the mention


def test_a_pair_without_a_combination_rule_is_coded_as_written(stage: CodeStage, make_entity, make_page_row) -> None:
    mention = make_entity("diagnosis", "Type 2 diabetes mellitus without complications")
    (row,) = code(stage, [make_page_row([mention])])
    assert [e["code"] for e in row["entities"]] == ["E11.9"]


LOINC_ROWS = (  # LOINC Core columns: number, long common name, short name, component, system; class type
    ("51990-0", "Basic metabolic panel - Blood", "Bas Metab Pnl Bld", "Basic metabolic panel", "Bld", 1),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "BUN SerPl-mCnc", "Urea nitrogen", "Ser/Plas", 1),
    ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "BUN Bld-mCnc", "Urea nitrogen", "Bld", 1),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "Potassium SerPl-sCnc", "Potassium", "Ser/Plas", 1),
    ("59574-4", "Body mass index (BMI) [Percentile]", "BMI Prctl", "Body mass index", "^Patient", 2),
    ("59576-9", "Body mass index (BMI) [Percentile] Per age and sex", "BMI Prctl Per age+sex", "Body mass index",
     "^Patient", 2),
)


@pytest.fixture(scope="module")
def panel_stage(tmp_path_factory: pytest.TempPathFactory) -> CodeStage:
    """A small index: the starter sets and the LOINC rows above (the embedded one holds no panel)."""
    from terminology_index.build import IndexSources, build_index

    folder = tmp_path_factory.mktemp("panel-index")
    table = folder / "loinc_core.tsv"
    table.write_text("loinc_num\tlong_common_name\tshortname\tcomponent\tsystem\tclasstype\tstatus\n" + "".join(
        "\t".join(map(str, (*row, "ACTIVE"))) + "\n" for row in LOINC_ROWS))
    build_index(IndexSources(icd10cm_xml=None, loinc_table=str(table)), folder / "index")
    return CodeStage(index_path=str(folder / "index"))


def test_a_result_under_a_panel_title_is_coded_in_the_panel_specimen(panel_stage: CodeStage, make_entity,
                                                                     make_page_row) -> None:
    def under(title: str | None) -> dict[str, Entity]:
        entities = [make_entity("lab", "BUN", 0, value="17", value_num=17.0, unit="mg/dL"),
                    make_entity("lab", "Potassium", 1, value="4.1", value_num=4.1, unit="mmol/L")]
        for entity in entities:
            entity.panel = title
        return coded(panel_stage, make_page_row, *entities)

    in_panel = under("Basic Metabolic Panel")
    assert in_panel["BUN"].code == "6299-2" and in_panel["BUN"].candidates[0].match == "panel-specimen:Blood"
    assert in_panel["Potassium"].code == "2823-3"  # the index names no potassium in blood: unchanged
    # No title, or one that names no panel: the test as the name alone codes it.
    assert under(None)["BUN"].code == under("LABORATORY RESULTS")["BUN"].code == "3094-0"


def test_a_vitals_list_measure_takes_the_fhir_vital_signs_profile_code(panel_stage: CodeStage, make_entity,
                                                                     make_page_row) -> None:
    def read_in(section: str) -> Entity:
        entity = make_entity("lab", "BMI percentile", value="21.5", value_num=21.5, unit="%", section=section)
        return coded(panel_stage, make_page_row, entity)["BMI percentile"]

    assert read_in("vital signs").code == "59576-9"  # US Core's pediatric BMI-for-age code
    assert read_in("results").code == "59574-4"  # elsewhere the closest name


def test_a_specific_diagnosis_offers_its_category_default_next(stage: CodeStage, make_entity, make_page_row) -> None:
    out = coded(stage, make_page_row, make_entity("diagnosis", "Streptococcal pharyngitis", 0),
                make_entity("diagnosis", "Acute pharyngitis", 1))

    strep = out["Streptococcal pharyngitis"]
    assert strep.code == "J02.0"
    assert (strep.candidates[1].code, strep.candidates[1].match) == ("J02.9", "category-default-of:J02.0")
    vague = out["Acute pharyngitis"]
    assert vague.code == "J02.9" and [c.code for c in vague.candidates].count("J02.9") == 1  # not offered twice
