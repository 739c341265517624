"""ClassifyStage: the document type of a page from the words on it."""

from __future__ import annotations

import pytest

from pipeline.schemas import page_rows_to_table
from pipeline.stages.classify import DOCUMENT_TYPES, ClassifyStage, classify_text


def text_lines(*texts: str) -> list[dict]:
    return [{"line_id": i, "text": text, "confidence": 0.95, "bbox": [80.0, 40.0 + 30 * i, 600.0, 60.0 + 30 * i],
             "polygon": [[80.0, 40.0 + 30 * i], [600.0, 40.0 + 30 * i], [600.0, 60.0 + 30 * i], [80.0, 60.0 + 30 * i]]}
            for i, text in enumerate(texts)]


PAGES = {
    "discharge_summary": ("North Valley General Hospital", "DISCHARGE SUMMARY", "Admission Date: 03/02/2024",
                          "DISCHARGE DIAGNOSES:"),
    "lab_report": ("LABORATORY REPORT", "Collected: 03/02/2024", "Specimen: Blood",
                   "Test  Result  Units  Reference Range  Flag"),
    "prescription": ("PRESCRIPTION", "Rx:", "- Metformin 500 mg PO BID", "Refills: 2"),
    "referral_letter": ("REFERRAL LETTER", "Dear Colleague,", "I am referring Ms. Johnson.", "Kind regards,"),
    "progress_note": ("PROGRESS NOTE", "SUBJECTIVE:", "Follow-up visit.", "ASSESSMENT:"),
    "intake_form": ("PATIENT INTAKE FORM", "MEDICAL HISTORY (check all that apply):", "Emergency contact: spouse"),
    "consent": ("CONSENT TO TREATMENT", "I authorize the clinic to treat me.", "Signature of patient"),
    "billing": ("INVOICE", "Amount due: $120.00", "Billing questions: call the office"),
}


def classify(rows: list[dict]) -> list[dict]:
    return ClassifyStage().process_batch(page_rows_to_table(rows)).to_pylist()


def row(lines: list[dict] | None, page_index: int = 0, **values) -> dict:
    values.setdefault("document_id", "doc-1")
    return {"facility_id": "fac-1", "page_index": page_index, "source_uri": "/r/doc-1.pdf",
            "sha256": "0" * 64, "media_type": "application/pdf", "lines": lines, **values}


def test_every_cued_type_is_a_document_type() -> None:
    assert set(PAGES) == set(DOCUMENT_TYPES) - {"other"}


@pytest.mark.parametrize("document_type", sorted(PAGES))
def test_page_with_its_cues_is_classified(document_type: str) -> None:
    (out,) = classify([row(text_lines(*PAGES[document_type]))])

    assert out["document_type_predicted"] == document_type
    assert 0.5 <= out["document_type_confidence"] <= 1.0


def test_cues_split_across_ocr_lines_and_case_still_match() -> None:
    assert classify_text("Discharge\n   summary\nAdmission date: 03/02/2024")[0] == "discharge_summary"


def test_weak_evidence_is_other() -> None:
    kind, confidence = classify_text("Specimen received.")

    assert kind == "other"
    assert 0 < confidence <= 0.5


def test_two_types_equally_cued_give_a_low_confidence() -> None:
    kind, confidence = classify_text("REFERRAL\nINVOICE")

    assert kind in ("referral_letter", "billing")
    assert confidence <= 0.5


def test_a_cue_in_the_title_outweighs_the_same_cue_in_the_body() -> None:
    body = ["Line one", "Line two", "Line three", "We discussed the invoice.", "Progress note follows",
            "Subjective: feels well"]

    assert classify_text("\n".join(body))[0] == "progress_note"
    assert classify_text("\n".join(["INVOICE"] + body))[0] == "billing"


def test_pages_of_one_document_agree() -> None:
    title_page = row(text_lines(*PAGES["discharge_summary"]), page_index=0)
    continuation = row(text_lines("Page 2 of 2", "Continued from previous page"), page_index=1)
    other_document = row(text_lines(*PAGES["billing"]), page_index=0, document_id="doc-2")

    out = classify([title_page, continuation, other_document])

    assert [r["document_type_predicted"] for r in out] == ["discharge_summary", "discharge_summary", "billing"]
    assert out[0]["document_type_confidence"] == out[1]["document_type_confidence"] >= 0.9


@pytest.mark.parametrize("lines", [text_lines("Page 2 of 3", "Continued from previous page"), [], None])
def test_no_cue_is_other_with_zero_confidence(lines: list[dict] | None) -> None:
    (out,) = classify([row(lines)])

    assert (out["document_type_predicted"], out["document_type_confidence"]) == ("other", 0.0)


def test_rows_failed_upstream_pass_through_untouched() -> None:
    failed = row(text_lines(*PAGES["prescription"]), error_stage="render", error_type="corrupt_file",
                 error_message="document cannot be opened (FileDataError)")
    batch = page_rows_to_table([failed])

    assert ClassifyStage().process_batch(batch).to_pylist() == batch.to_pylist()
