"""`medrec models check` on a temporary model folder, with and without the files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.models_check import check_llm_dir, check_paddle_dir
from pipeline.ocr_models import OcrModelDirs, require_staged_model_dirs

PADDLE_MODELS = ("PP-OCRv5_server_det", "PP-OCRv5_server_rec")
ONNX_MODELS = ("PP-OCRv6_small_det", "PP-OCRv6_small_rec")


def stage_paddle_dir(path: Path, model_name: str, declared: str | None = None) -> None:
    """An official-layout inference dir: program, weights and the yml naming the model."""
    path.mkdir(parents=True)
    (path / "inference.json").write_text('{"program": "' + model_name + '"}')
    (path / "inference.pdiparams").write_bytes(model_name.encode() * 100)
    (path / "inference.yml").write_text(yaml.safe_dump({"Global": {"model_name": declared or model_name}}))


def test_a_complete_paddle_dir_is_staged_with_the_sha256_of_each_file(tmp_path: Path) -> None:
    stage_paddle_dir(tmp_path / "det", "PP-OCRv5_server_det")

    status = check_paddle_dir("ocr paddle_gpu det", "PP-OCRv5_server_det", tmp_path / "det")

    assert status.staged
    expected = {name: hashlib.sha256((tmp_path / "det" / name).read_bytes()).hexdigest()
                for name in ("inference.json", "inference.pdiparams", "inference.yml")}
    assert dict(status.checksums) == expected


def test_missing_weights_and_a_wrong_model_name_are_reported(tmp_path: Path) -> None:
    stage_paddle_dir(tmp_path / "det", "PP-OCRv5_server_det", declared="PP-OCRv5_mobile_det")
    (tmp_path / "det" / "inference.pdiparams").unlink()

    status = check_paddle_dir("ocr paddle_gpu det", "PP-OCRv5_server_det", tmp_path / "det")

    assert not status.staged
    assert status.missing == ("inference.pdiparams",
                              "inference.yml Global.model_name PP-OCRv5_server_det (it says PP-OCRv5_mobile_det)")
    assert "PP-OCRv5_server_det_infer.tar" in status.how_to_stage
    with pytest.raises(FileNotFoundError, match="inference.pdiparams"):
        require_staged_model_dirs(OcrModelDirs("PP-OCRv5_server_det", tmp_path / "det",
                                               "PP-OCRv5_server_det", tmp_path / "det"))


def test_an_llm_dir_needs_config_tokenizer_and_safetensors(tmp_path: Path) -> None:
    assert check_llm_dir("Qwen3-8B", tmp_path / "absent").missing == (f"the folder {tmp_path / 'absent'}",)
    model = tmp_path / "Qwen3-8B"
    model.mkdir()
    (model / "config.json").write_text("{}")

    assert check_llm_dir("Qwen3-8B", model).missing == ("*.safetensors weights", "tokenizer files")
    (model / "model-00001-of-00001.safetensors").write_bytes(b"weights")
    (model / "tokenizer.json").write_text("{}")
    assert check_llm_dir("Qwen3-8B", model).staged


def test_the_command_fails_until_the_configured_ocr_dirs_are_staged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "models"
    command = ["models", "check", "ocr=paddle_gpu", f"ocr.model_dir={root}"]

    assert main(command) == 1
    first = capsys.readouterr().out
    assert f"[MISSING] ocr paddle_gpu det: PP-OCRv5_server_det at {root / 'PP-OCRv5_server_det'}" in first
    assert "0 of 4 model dirs staged" in first

    for name in PADDLE_MODELS:
        stage_paddle_dir(root / name, name)
    assert main(command) == 0  # the embedded backend's dirs are built at run time, not required here
    assert "2 of 4 model dirs staged" in capsys.readouterr().out
    for name in ONNX_MODELS:  # the layout `medrec run` builds from the rapidocr wheel
        (root / name).mkdir(parents=True)
        (root / name / "inference.onnx").write_bytes(b"onnx")
        (root / name / "inference.yml").write_text(yaml.safe_dump({"Global": {"model_name": name}}))

    assert main(command) == 0
    second = capsys.readouterr().out
    assert "4 of 4 model dirs staged" in second
    assert hashlib.sha256(b"onnx").hexdigest() in second
