"""PaddleOCR's import in an OCR process leaves torch unloaded."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


def test_paddleocr_imports_without_torch_once_modelscopes_question_is_answered() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: nothing to keep out")
    probe = ("import sys; from pipeline.offline import without_torch_for_modelscope; "
             "without_torch_for_modelscope(); import paddleocr; print('torch' in sys.modules)")

    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout

    assert loaded.strip().splitlines()[-1] == "False"
