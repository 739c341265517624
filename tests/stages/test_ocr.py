"""OcrStage on a page drawn in code: recognised text, boxes, pass-through and quarantine."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.ocr_models import OcrModelDirs
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
    with pytest.raises(ValueError, match="backend must be one of"):
        OcrStage(model_dir=str(tmp_path), backend="tesseract")
    with pytest.raises(ValueError, match="staged_dirs"):
        OcrStage(model_dir=str(tmp_path), backend="paddle", device="gpu:0")
    with pytest.raises(ValueError, match="recycle_after_pages"):
        OcrStage(model_dir=str(tmp_path), recycle_after_pages=0)
    with pytest.raises(ValueError, match="runtime must be one of"):
        OcrStage(model_dir=str(tmp_path), runtime="tensorrt")
    with pytest.raises(ValueError, match="precision"):
        OcrStage(model_dir=str(tmp_path), precision="bf16")
    with pytest.raises(ValueError, match="rec_width_step"):
        OcrStage(model_dir=str(tmp_path), runtime="openvino", rec_width_step=0)
    with pytest.raises(ValueError, match="openvino runs the paddle_onnx backend on device cpu"):
        OcrStage(model_dir=str(tmp_path), runtime="openvino", device="gpu:0")
    with pytest.raises(ValueError, match="int8 with onnxruntime on cpu"):
        OcrStage(model_dir=str(tmp_path), runtime="openvino", precision="int8")
    with pytest.raises(ValueError, match="engine_build_slots"):
        OcrStage(model_dir=str(tmp_path), engine_build_slots=0)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_the_openvino_runtime_reads_the_page_as_onnx_runtime_does(tmp_path, precision: str) -> None:
    stage = OcrStage(model_dir=str(tmp_path), runtime="openvino", precision=precision, rec_width_step=128)
    batch = page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES), text_source=None)])

    (row,) = stage.process_batch(batch).to_pylist()

    assert row["error_stage"] is None
    assert type(stage._engine.paddlex_pipeline.text_rec_model.runner.session).__name__ == "OpenVinoSession"
    assert [squash(line["text"]) for line in row["lines"]] == [squash(line) for line in PAGE_LINES]


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
    # The batch call raised; the stage base retried page by page and quarantined the page alone.
    assert (out[1]["error_stage"], out[1]["error_type"], out[1]["error_message"]) == ("ocr", "internal_error", "RuntimeError")


def test_the_engine_is_rebuilt_after_n_pages_and_keeps_reading(tmp_path) -> None:
    recycling = OcrStage(model_dir=str(tmp_path / "models"), cpu_threads=1, recycle_after_pages=2)
    page = draw_page(["BP 132/84 mmHg"])

    recycling.process_batch(page_rows_to_table([page_row(0, image=page, text_source="ocr")]))
    first_engine = recycling._engine
    assert recycling.counters["engine_rebuilds"] == 0
    recycling.process_batch(page_rows_to_table([page_row(i, image=page, text_source="ocr") for i in (1, 2)]))
    assert recycling.counters["engine_rebuilds"] == 1
    assert recycling._engine is not first_engine
    (row,) = recycling.process_batch(page_rows_to_table([page_row(3, image=page, text_source="ocr")])).to_pylist()

    assert squash("BP 132/84 mmHg") in squash(" ".join(line["text"] for line in row["lines"]))
    assert recycling.counters["engine_rebuilds"] == 1  # 1 page since the rebuild, below 2
    assert recycling.counters["pages_ocr"] == 4


@pytest.mark.skipif(importlib.util.find_spec("paddle") is not None, reason="paddlepaddle is installed here")
def test_the_paddle_backend_without_paddlepaddle_says_where_it_comes_from(tmp_path) -> None:
    dirs = OcrModelDirs("PP-OCRv5_server_det", tmp_path / "det", "PP-OCRv5_server_rec", tmp_path / "rec")
    for name, path in ((dirs.det_model_name, dirs.det_model_dir), (dirs.rec_model_name, dirs.rec_model_dir)):
        path.mkdir()
        for file in ("inference.json", "inference.pdiparams"):
            (path / file).write_bytes(b"x")
        (path / "inference.yml").write_text(f"Global:\n  model_name: {name}\n")
    gpu_stage = OcrStage(model_dir=str(tmp_path), backend="paddle", device="gpu:0", staged_dirs=dirs)

    with pytest.raises(ModuleNotFoundError, match="Paddle's own package index"):
        gpu_stage.setup()


@pytest.mark.gpu
def test_the_paddle_backend_reads_a_page_on_the_gpu(tmp_path) -> None:
    from pipeline.config import expand, load_config
    from pipeline.graph import staged_ocr_dirs

    cfg = load_config(["ocr=paddle_gpu"]).ocr
    gpu_stage = OcrStage(model_dir=str(expand(cfg.model_dir)), backend="paddle", device=cfg.device,
                         staged_dirs=staged_ocr_dirs(cfg), rec_batch_size=cfg.rec_batch_size)

    (row,) = gpu_stage.process_batch(page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES),
                                                                    text_source="ocr")])).to_pylist()

    assert squash(PAGE_LINES[0]) in squash(" ".join(line["text"] for line in row["lines"]))


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


def test_full_width_punctuation_the_recogniser_emits_is_read_as_printed(stage: OcrStage) -> None:
    box = [[10, 10], [200, 10], [200, 40], [10, 40]]
    result = {"rec_texts": ["LEMKE，ROBERTO", "MRN：0a53f662"], "rec_scores": [0.98, 0.97],
              "rec_polys": [box, [[10, 50], [200, 50], [200, 80], [10, 80]]]}

    lines = stage._lines_from_result(result, page_row(0))

    assert [line["text"] for line in lines] == ["LEMKE,ROBERTO", "MRN:0a53f662"]
