"""The environment that keeps every medrec process off the network.

Set in the driver before Ray starts and passed to every worker. ONNX Runtime reads its
variable at import, so `use_offline_environment` runs before onnxruntime or paddleocr load.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # no Hugging Face hub calls
    "TRANSFORMERS_OFFLINE": "1",
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",  # no PaddleX model-hoster probe
    "ORT_DISABLE_TELEMETRY": "1",  # no ONNX Runtime telemetry file under $HOME
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",  # vLLM would otherwise report usage stats
    "DO_NOT_TRACK": "1",  # Ray's dashboard would otherwise report usage stats
}


def use_offline_environment() -> None:
    """Set OFFLINE_ENV in this process."""
    os.environ.update(OFFLINE_ENV)


def without_torch_for_modelscope() -> None:
    """Keep PaddleOCR's import from loading torch.

    PaddleX imports ModelScope at import time (for model downloads medrec never makes), and
    ModelScope's logger imports torch, when it is installed, only to ask whether the process
    runs under torch.distributed. In an OCR actor that import was a third of the start-up
    (4.0 -> 2.6 CPU s for `import paddleocr` measured here; tens of seconds of wall time on a
    busy node). The answer is fixed here: not distributed, the main process. Nothing is done
    where torch is already loaded (nothing to save) or ModelScope's module is already in.
    """
    import sys
    import types

    name = "modelscope.utils.torch_utils"
    if "torch" in sys.modules or name in sys.modules:
        return
    answers = types.ModuleType(name, "ModelScope's torch.distributed questions, answered for an OCR process")
    answers.is_dist = lambda: False  # type: ignore[attr-defined]
    answers.is_master = lambda: True  # type: ignore[attr-defined]
    sys.modules[name] = answers
