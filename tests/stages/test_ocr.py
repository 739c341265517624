"""OcrStage on a page drawn in code: recognised text, boxes, pass-through and quarantine."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.schemas import page_rows_to_table
from pipeline.stages.ocr import OcrStage, reading_order

PAGE_LINES = ["Diagnosis: Essential hypertension", "BP 132/84 mmHg", "Metformin 500 mg daily"]
WIDTH, HEIGHT = 640, 200


def draw_page(lines: list[str]) -> bytes:
    """A small white grayscale page with one text line per 50 px, as raw 8-bit pixels."""
    page = Image.new("L", (WIDTH, HEIGHT), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    for n, line in enumerate(lines):
        draw.text((30, 25 + 50 * n), line, fill=0, font=font)
    return page.tobytes()


def page_row(page_index: int, **values) -> dict:
    return {
        "facility_id": "fac-1",
        "document_id": "doc-1",
        "page_index": page_index,
        "source_uri": "file:///scans/doc-1.pdf",
        "sha256": "0" * 64,
        "media_type": "application/pdf",
        "image_width": WIDTH,
        "image_height": HEIGHT,
        "dpi": 150,
        **values,
    }


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> OcrStage:
    return OcrStage(model_dir=str(tmp_path_factory.mktemp("models")), cpu_threads=1)


def test_ocr_reads_drawn_lines_in_order(stage: OcrStage) -> None:
    batch = page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES), text_source=None)])

    (row,) = stage.process_batch(batch).to_pylist()

    assert row["error_stage"] is None
    assert row["text_source"] == "ocr"
    assert row["image"] is None
    recognised = squash(" ".join(line["text"] for line in row["lines"]))
    for expected in PAGE_LINES:
        assert squash(expected) in recognised
    assert [line["line_id"] for line in row["lines"]] == list(range(len(row["lines"])))
    tops = [line["bbox"][1] for line in row["lines"]]
    assert tops == sorted(tops)
    for line in row["lines"]:
        x0, y0, x1, y1 = line["bbox"]
        assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
        assert len(line["polygon"]) == 4
        assert 0.0 < line["confidence"] <= 1.0
    assert row["timings"][-1]["stage"] == "ocr"


def test_text_layer_page_passes_through(stage: OcrStage) -> None:
    lines = [{"line_id": 0, "text": "From the PDF", "confidence": 1.0,
              "polygon": [[0, 0], [10, 0], [10, 5], [0, 5]], "bbox": [0, 0, 10, 5]}]
    batch = page_rows_to_table(
        [page_row(1, image=draw_page(["ignored"]), text_source="text_layer", lines=lines)]
    )

    (row,) = stage.process_batch(batch).to_pylist()

    assert row["text_source"] == "text_layer"
    assert row["lines"] == lines
    assert row["image"] is None
    assert row["error_stage"] is None


def test_undecodable_image_is_quarantined_without_sinking_the_batch(stage: OcrStage) -> None:
    batch = page_rows_to_table(
        [
            page_row(2, image=b"\x00" * 17, text_source=None),
            page_row(3, image=draw_page(PAGE_LINES[1:2]), text_source=None),
        ]
    )

    bad, good = stage.process_batch(batch).to_pylist()

    assert (bad["error_stage"], bad["error_type"]) == ("ocr", "undecodable_image")
    assert bad["image"] is None
    assert good["error_stage"] is None
    assert squash(PAGE_LINES[1]) in squash(" ".join(line["text"] for line in good["lines"]))


def test_reading_order_keeps_a_baseline_left_to_right() -> None:
    def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)

    value, label, below = box(300, 98, 400, 122), box(10, 103, 200, 125), box(10, 140, 200, 160)

    assert reading_order([below, value, label]) == [2, 1, 0]


def test_rejects_bad_config(tmp_path) -> None:
    with pytest.raises(ValueError, match="cpu_threads"):
        OcrStage(model_dir=str(tmp_path), cpu_threads=0)


class _RejectsDarkPages:
    """An engine double standing in for PaddleOCR's predict: rejects an all-black page."""

    def __init__(self, real):
        self.real = real

    def predict(self, images):
        if any(int(image.max()) == 0 for image in images):
            raise RuntimeError("engine cannot take this page")
        return self.real.predict(images)


def test_a_page_the_engine_rejects_is_quarantined_and_its_neighbour_goes_through(stage: OcrStage) -> None:
    good = page_row(0, image=draw_page(["Diagnosis: Essential hypertension"]), text_source="ocr")
    black = page_row(1, image=bytes(WIDTH * HEIGHT), text_source="ocr")
    stage.process_batch(page_rows_to_table([good]))  # runs setup, so the real engine exists
    real = stage._engine
    stage._engine = _RejectsDarkPages(real)
    try:
        out = stage.process_batch(page_rows_to_table([good, black])).to_pylist()
    finally:
        stage._engine = real
    assert out[0]["error_stage"] is None and out[0]["lines"]
    assert (out[1]["error_stage"], out[1]["error_type"]) == ("ocr", "ocr_engine_rejected_page")


def test_check_boxes_are_read_from_the_page_image_with_their_labels(stage: OcrStage) -> None:
    page = Image.new("L", (WIDTH, HEIGHT), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    for x, label, checked in ((30, "Diabetes", True), (340, "Asthma", False)):
        draw.rectangle((x, 60, x + 28, 88), outline=0, width=2)
        if checked:
            draw.line((x + 5, 65, x + 23, 83), fill=0, width=3)
            draw.line((x + 5, 83, x + 23, 65), fill=0, width=3)
        draw.text((x + 45, 60), label, fill=0, font=font)
    batch = page_rows_to_table([page_row(0, image=page.tobytes(), text_source=None)])

    (row,) = stage.process_batch(batch).to_pylist()

    assert [(box["state"], squash(box["label"] or "")) for box in row["checkboxes"]] == [
        ("checked", "diabetes"), ("unchecked", "asthma")]
    lines = {line["line_id"]: squash(line["text"]) for line in row["lines"]}
    assert [lines[box["label_line_ids"][0]].endswith(squash(box["label"])) for box in row["checkboxes"]] == [True, True]


def test_a_text_layer_page_without_pixels_has_no_check_boxes(stage: OcrStage) -> None:
    text_lines = [{"line_id": 0, "text": "Diabetes", "confidence": 1.0, "bbox": [0, 0, 90, 20],
                   "polygon": [[0, 0], [90, 0], [90, 20], [0, 20]]}]
    batch = page_rows_to_table([page_row(0, image=None, text_source="text_layer", lines=text_lines)])

    (row,) = stage.process_batch(batch).to_pylist()

    assert row["checkboxes"] is None and row["lines"] == text_lines
