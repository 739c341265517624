"""OpenVINO behind ONNX Runtime's `run` call, on the shipped recognition graph."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ocr_models import REC_SOURCE_FILE, rapidocr_models_dir
from pipeline.ocr_runtime import OpenVinoSession


@pytest.fixture(scope="module")
def rec_model():
    source = rapidocr_models_dir()
    if source is None or not (source / REC_SOURCE_FILE).is_file():
        pytest.skip("the rapidocr wheel with the PP-OCRv6 rec graph is not installed")
    return source / REC_SOURCE_FILE


def test_openvino_answers_as_onnx_runtime_and_pads_line_widths(rec_model) -> None:
    import onnxruntime as ort

    lines = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 200)).astype(np.float32)
    onnx_session = ort.InferenceSession(str(rec_model), providers=["CPUExecutionProvider"])
    expected = onnx_session.run(None, {"x": lines})[0]

    session = OpenVinoSession(rec_model, threads=1, precision="f32", width_step=64)
    (padded,) = session.run(None, {"x": lines})

    # 200 px wide lines are padded to 256: the model reads 8 px per time step.
    assert padded.shape == (2, 256 // 8, expected.shape[-1])
    unpadded = OpenVinoSession(rec_model, threads=1, precision="f32").run(None, {"x": lines})[0]
    assert unpadded.shape == expected.shape
    np.testing.assert_allclose(unpadded, expected, atol=2e-3)
    with pytest.raises(ValueError, match="precision"):
        OpenVinoSession(rec_model, threads=1, precision="int4")


def test_an_answer_outlives_the_next_call(rec_model) -> None:
    # The request's output buffers are shared and reused: what run returned must be a copy.
    rng = np.random.default_rng(1)
    first_lines, second_lines = (rng.uniform(-1, 1, (1, 3, 48, 160)).astype(np.float32) for _ in range(2))
    session = OpenVinoSession(rec_model, threads=1, precision="f32")
    (first,) = session.run(None, {"x": first_lines})
    kept = first.copy()
    session.run(None, {"x": second_lines})
    np.testing.assert_array_equal(first, kept)
