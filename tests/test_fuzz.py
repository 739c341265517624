"""Property-based fuzzing (hypothesis): random and adversarial images and text thrown at
render, OCR post-processing, layout, check boxes and the extractor. Nothing may raise
outside the quarantine path: render may only answer with a PageFailure reason, the other
functions must return (a bug they raise would quarantine real pages)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.checkboxes import page_checkboxes
from pipeline.layout import find_tables, join_key_values, key_values, reading_order, skew_angle, straighten
from pipeline.records import OcrLine
from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import INTERNAL_ERROR, PageFailure
from pipeline.stages.extract import LexiconExtractStage
from pipeline.stages.ocr import OcrStage, decode_gray_page
from pipeline.stages.ocr import reading_order as ocr_reading_order
from pipeline.stages.render import RenderStage

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pages as they come: all white, all black, one pixel, a 1 x 20000 strip, noise, and sizes in between.
sizes = st.one_of(st.sampled_from([(1, 1), (1, 20000), (20000, 1), (3, 3)]),
                  st.tuples(st.integers(1, 160), st.integers(1, 160)))


@st.composite
def gray_pages(draw) -> np.ndarray:
    width, height = draw(sizes)
    kind = draw(st.sampled_from(["white", "black", "noise", "lines"]))
    if kind == "white":
        return np.full((height, width), 255, np.uint8)
    if kind == "black":
        return np.zeros((height, width), np.uint8)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        return rng.integers(0, 256, (height, width), dtype=np.uint8)
    page = np.full((height, width), 255, np.uint8)  # boxes and strokes: what check boxes look like
    for _ in range(draw(st.integers(1, 12))):
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        y1, x1 = int(rng.integers(y0, height)) + 1, int(rng.integers(x0, width)) + 1
        page[y0:y1, x0] = page[y0:y1, x1 - 1] = page[y0, x0:x1] = page[y1 - 1, x0:x1] = 0
    return page


coordinates = st.floats(-50, 5000, allow_nan=False, allow_infinity=False)
texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(["BP", "132/84", "mmHg", "Metformin", "500", "mg", "PO", "BID", "HR", "Na", "140",
                              "mmol/L", "3.5-5.0", "H", "L", ":", "-", "Diagnosis:", "Allergies:", "NKDA", "denies",
                              "history", "of", "mother", "Yes", "No", "[x]", "☐", "☑", "MRN:", "DOB:", "01/02/1970",
                              "q6h", "prn", "x", "10", "days", "HOME", "MEDICATIONS:", "LABS", "Result", "Units"]),
             max_size=10).map(" ".join),
)


@st.composite
def ocr_lines(draw, max_lines: int = 25) -> list[dict]:
    lines = []
    for line_id in range(draw(st.integers(0, max_lines))):
        x0, y0 = draw(coordinates), draw(coordinates)
        width, height = draw(st.floats(0, 2000)), draw(st.floats(0, 80))
        x1, y1 = x0 + width, y0 + height
        lines.append({"line_id": line_id, "text": draw(texts), "confidence": draw(st.floats(0, 1)),
                      "bbox": [x0, y0, x1, y1], "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
    return lines


# --- render ------------------------------------------------------------------------------

modes = st.sampled_from(["L", "LA", "P", "RGB", "RGBA", "CMYK", "1", "I;16", "I", "F"])
formats = st.sampled_from([("PNG", ".png", "image/png"), ("JPEG", ".jpg", "image/jpeg"), ("TIFF", ".tif", "image/tiff")])


@st.composite
def image_files(draw) -> tuple[bytes, str, str]:
    """Valid images of every mode and size the formats allow, or random bytes behind a real header."""
    fmt, suffix, media_type = draw(formats)
    if draw(st.booleans()):
        headers = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff\xe0", "TIFF": b"II*\x00"}
        return headers[fmt] + draw(st.binary(max_size=400)), suffix, media_type
    width, height = draw(st.tuples(st.integers(1, 64), st.integers(1, 64)) | st.sampled_from([(1, 20000), (20000, 1)]))
    image = Image.new(draw(modes), (width, height), draw(st.integers(0, 255)))
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # a mode this format cannot hold
    data = buffer.getvalue()
    if draw(st.booleans()):  # cut short anywhere
        data = data[:draw(st.integers(1, max(1, len(data) - 1)))]
    return data, suffix, media_type


@FUZZ
@given(files=st.lists(image_files(), min_size=1, max_size=4), pdf=st.binary(max_size=300))
def test_render_answers_every_file_with_a_page_or_a_reason(files, pdf) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for n, (data, suffix, media_type) in enumerate([*files, (b"%PDF-1.7\n" + pdf, ".pdf", "application/pdf")]):
            path = Path(folder) / f"page{n}{suffix}"
            path.write_bytes(data)
            rows.append({"facility_id": "f", "document_id": f"d{n}", "page_index": 0, "source_uri": str(path),
                         "sha256": "0" * 64, "media_type": media_type})
        out = RenderStage(max_side_px=2600).process_batch(page_rows_to_table(rows)).to_pylist()
    for row in out:
        assert row["error_type"] != INTERNAL_ERROR, row["error_message"]  # only PageFailure reasons
        if row["error_type"] is None and row["image"] is not None:
            assert len(row["image"]) == row["image_width"] * row["image_height"]
            assert max(row["image_width"], row["image_height"]) <= 2600


# --- OCR post-processing -------------------------------------------------------------------


@FUZZ
@given(image=st.binary(max_size=64), width=st.integers(-2, 10) | st.none(), height=st.integers(-2, 10) | st.none())
def test_decode_gray_page_returns_pixels_or_a_page_failure(image, width, height) -> None:
    try:
        pixels = decode_gray_page({"image": image, "image_width": width, "image_height": height})
    except PageFailure:
        return
    assert pixels.shape == (height, width, 3)


@st.composite
def predictions(draw) -> tuple[dict, dict]:
    count = draw(st.integers(0, 20))
    width, height = draw(sizes)
    polys = [np.array(draw(st.lists(st.tuples(coordinates, coordinates), min_size=4, max_size=4)), np.float32)
             for _ in range(count)]
    result = {"rec_texts": [draw(texts) for _ in range(count)],
              "rec_scores": [draw(st.floats(0, 1)) for _ in range(count)], "rec_polys": polys}
    return result, {"image_width": width, "image_height": height}


@FUZZ
@given(prediction=predictions(), min_confidence=st.floats(0, 1))
def test_ocr_lines_from_any_prediction_are_clipped_and_ordered(prediction, min_confidence) -> None:
    result, row = prediction
    stage = OcrStage(model_dir=tempfile.gettempdir(), min_confidence=min_confidence)
    lines = stage._lines_from_result(result, row)
    assert [line["line_id"] for line in lines] == list(range(len(lines)))
    for line in lines:
        x0, y0, x1, y1 = line["bbox"]
        assert 0 <= x0 <= x1 <= row["image_width"] and 0 <= y0 <= y1 <= row["image_height"]
    assert sorted(ocr_reading_order([np.array(line["polygon"]) for line in lines])) == list(range(len(lines)))


# --- layout --------------------------------------------------------------------------------


@FUZZ
@given(lines=ocr_lines())
def test_layout_reads_any_set_of_lines(lines) -> None:
    records = [OcrLine.from_row(line) for line in lines]
    angle = skew_angle(records)
    ordered = reading_order(straighten(records, angle))
    assert sorted(i for row in ordered for i in row.line_ids) == sorted(line.line_id for line in records)
    rows = [join_key_values(row) for row in ordered]
    find_tables(rows)
    for row, before in zip(rows, ordered, strict=True):
        key_values(row)
        assert set(row.line_ids) <= set(before.line_ids)  # a split field's value line joins its label


# --- check boxes ---------------------------------------------------------------------------


@FUZZ
@given(page=gray_pages(), dpi=st.integers(1, 1200), lines=ocr_lines(max_lines=6))
def test_check_boxes_on_any_page(page, dpi, lines) -> None:
    marks = page_checkboxes(page, dpi, lines)
    assert all(mark["state"] in ("checked", "unchecked", "ambiguous") for mark in marks)


# --- the extractor -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor(terminology_index_path: Path) -> LexiconExtractStage:
    stage = LexiconExtractStage(index_path=str(terminology_index_path))
    stage.setup()
    stage._ready = True
    return stage


@settings(FUZZ, max_examples=80)
@given(lines=ocr_lines(), document_type=st.sampled_from(["discharge_summary", "lab_report", "prescription", "other"]),
       confidence=st.floats(0, 1))
def test_the_extractor_reads_any_page_without_raising(extractor: LexiconExtractStage, lines, document_type,
                                                      confidence) -> None:
    row = {"facility_id": "f", "document_id": "d", "page_index": 0, "source_uri": "/r/d.pdf", "sha256": "0" * 64,
           "media_type": "application/pdf", "text_source": "ocr", "lines": lines,
           "document_type_predicted": document_type, "document_type_confidence": confidence}
    (out,) = extractor.process_batch(page_rows_to_table([row])).to_pylist()
    assert out["error_type"] is None, out["error_message"]
