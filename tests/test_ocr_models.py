"""Building the local PaddleOCR model dirs from the rapidocr wheel's ONNX files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.ocr_models import (
    DET_MODEL_NAME,
    DET_SOURCE_FILE,
    REC_MODEL_NAME,
    ensure_ocr_model_dirs,
)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_paddlex_model_dirs(tmp_path: Path) -> None:
    dirs = ensure_ocr_model_dirs(tmp_path)

    assert (dirs.det_model_name, dirs.rec_model_name) == (DET_MODEL_NAME, REC_MODEL_NAME)
    det = yaml.safe_load((dirs.det_model_dir / "inference.yml").read_text("utf-8"))
    rec = yaml.safe_load((dirs.rec_model_dir / "inference.yml").read_text("utf-8"))
    assert det["Global"]["model_name"] == DET_MODEL_NAME
    assert det["PostProcess"]["name"] == "DBPostProcess"
    assert rec["Global"]["model_name"] == REC_MODEL_NAME
    assert rec["PostProcess"]["name"] == "CTCLabelDecode"
    assert {"A", "z", "0", "/", "%"} <= set(rec["PostProcess"]["character_dict"])
    assert (dirs.det_model_dir / "inference.onnx").stat().st_size > 0
    assert (dirs.rec_model_dir / "inference.onnx").stat().st_size > 0


def test_building_twice_rewrites_nothing(tmp_path: Path) -> None:
    first = ensure_ocr_model_dirs(tmp_path)
    before = snapshot(tmp_path)

    second = ensure_ocr_model_dirs(tmp_path)

    assert second == first
    assert snapshot(tmp_path) == before


def test_a_damaged_dir_is_rebuilt(tmp_path: Path) -> None:
    dirs = ensure_ocr_model_dirs(tmp_path)
    model = dirs.det_model_dir / "inference.onnx"
    intact = model.read_bytes()
    model.write_bytes(b"truncated")

    ensure_ocr_model_dirs(tmp_path)

    assert model.read_bytes() == intact


def test_missing_source_names_the_path(tmp_path: Path) -> None:
    source = tmp_path / "staged"
    source.mkdir()

    with pytest.raises(FileNotFoundError) as error:
        ensure_ocr_model_dirs(tmp_path / "models", source_dir=source)

    assert str(source / DET_SOURCE_FILE) in str(error.value)
    assert "rapidocr" in str(error.value)
    assert not (tmp_path / "models").exists()
