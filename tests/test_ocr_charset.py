"""The Latin-only recognition model: its head cut to the kept characters, built once, and read by the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.ocr_charset import STAMP_FILE, charset_rec_dir, ensure_charset_rec_dir, kept_characters, prune_rec_head
from pipeline.ocr_models import ensure_ocr_model_dirs
from pipeline.schemas import page_rows_to_table
from pipeline.stages.ocr import OcrStage
from tests.stages.test_ocr import PAGE_LINES, draw_page, page_row, squash


def test_latin_keeps_latin_greek_and_symbols_and_drops_other_scripts() -> None:
    characters = ["a", "Z", "é", "µ", "β", "≥", "✓", "□", "中", "口", "д", "ا", "：", "ab"]

    assert [characters[i] for i in kept_characters(characters)] == ["a", "Z", "é", "µ", "β", "≥", "✓", "□"]


def _head_model(path, weight: np.ndarray, bias: np.ndarray, characters: list[str]) -> None:
    """A graph ending as a PP-OCR rec head does: MatMul, bias Add, Identity, Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classes = weight.shape[1]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Add", ["logits", "b"], ["biased"]),
         helper.make_node("Identity", ["biased"], ["same"]), helper.make_node("Softmax", ["same"], ["probs"], axis=-1)],
        "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", weight.shape[0]])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, "T", classes])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
        value_info=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", classes])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    helper.set_model_props(model, {"character": "\n".join(characters)})
    onnx.save(model, str(path))


def test_the_pruned_head_scores_blank_the_kept_characters_and_space(tmp_path) -> None:
    import onnxruntime as ort

    characters = ["a", "中", "b", "д"]
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, len(characters) + 2)).astype(np.float32)
    bias = rng.normal(size=len(characters) + 2).astype(np.float32)
    _head_model(tmp_path / "full.onnx", weight, bias, characters)
    keep = kept_characters(characters)

    prune_rec_head(tmp_path / "full.onnx", tmp_path / "latin.onnx", keep, len(characters))

    x = rng.normal(size=(1, 5, 8)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "latin.onnx"), providers=["CPUExecutionProvider"])
    logits = x @ weight + bias
    kept_logits = logits[..., [0, 1, 3, 5]]  # blank, "a", "b", space
    expected = np.exp(kept_logits) / np.exp(kept_logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5)
    assert session.get_modelmeta().custom_metadata_map["character"] == "a\nb"


@pytest.mark.slow
def test_the_latin_rec_model_is_built_once_and_reads_a_page(tmp_path) -> None:
    dirs = ensure_ocr_model_dirs(tmp_path)

    built = ensure_charset_rec_dir(dirs, "latin")

    assert built == charset_rec_dir(dirs, "latin") != dirs.rec_model_dir
    assert ensure_charset_rec_dir(dirs, "all") == dirs.rec_model_dir
    assert json.loads((built / STAMP_FILE).read_text())["charset"] == "latin"
    before = (built / "inference.onnx").stat().st_mtime_ns
    assert ensure_charset_rec_dir(dirs, "latin") == built
    assert (built / "inference.onnx").stat().st_mtime_ns == before  # the stamp matched: not rebuilt

    stage = OcrStage(model_dir=str(tmp_path), runtime="openvino", precision="bf16", rec_batch_size=1,
                     rec_width_step=64, rec_charset="latin")
    (row,) = stage.process_batch(page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES),
                                                              text_source=None)])).to_pylist()
    assert stage._engine.paddlex_pipeline.text_rec_model.runner._get_model_path().parent == built
    assert [squash(line["text"]) for line in row["lines"]] == [squash(line) for line in PAGE_LINES]


def test_an_unknown_charset_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="rec_charset"):
        OcrStage(model_dir=str(tmp_path), rec_charset="cyrillic")
