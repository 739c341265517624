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
