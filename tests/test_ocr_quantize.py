"""The int8 recognition model: built once from the f32 one, calibrated on drawn pages, and read by the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.ocr_models import ensure_ocr_model_dirs
from pipeline.ocr_quantize import RECIPE, STAMP_FILE, ensure_int8_rec_dir, int8_rec_dir
from pipeline.schemas import page_rows_to_table
from pipeline.stages.ocr import OcrStage
from tests.stages.test_ocr import PAGE_LINES, draw_page, page_row, squash


@pytest.mark.slow
def test_the_int8_rec_model_is_built_once_and_reads_a_page_as_f32_does(tmp_path) -> None:
    dirs = ensure_ocr_model_dirs(tmp_path)

    built = ensure_int8_rec_dir(dirs)

    assert built == int8_rec_dir(dirs) != dirs.rec_model_dir
    stamp = json.loads((built / STAMP_FILE).read_text())
    assert stamp["recipe"] == RECIPE
    before = (built / "inference.onnx").stat().st_mtime_ns
    assert ensure_int8_rec_dir(dirs) == built
    assert (built / "inference.onnx").stat().st_mtime_ns == before  # the stamp matched: not rebuilt

    stage = OcrStage(model_dir=str(tmp_path), precision="int8")
    (row,) = stage.process_batch(page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES),
                                                              text_source=None)])).to_pylist()
    assert Path(stage._engine.paddlex_pipeline.text_rec_model.runner._get_model_path()).parent == built
    assert [squash(line["text"]) for line in row["lines"]] == [squash(line) for line in PAGE_LINES]
