"""The ONNX Runtime engine settings of the `paddle_onnx` OCR backend, on CPU or a CUDA card.

A GPU node runs OCR without paddlepaddle-gpu: the same PP-OCRv6 small model dirs as the CPU
default (`pipeline.ocr_models`) under ONNX Runtime's CUDA execution provider, from
`onnxruntime-gpu` (the `[gpu]` extra). Its CUDA and cuDNN libraries are loaded from the
nvidia-* wheels vLLM's torch already installed (`onnxruntime.preload_dlls`), so the node has
one CUDA stack. PaddleOCR (PaddleX's ONNX Runtime runner) takes the providers and their
options through `engine_config`; pages of a batch go through one predict call and their text
lines through recognition batches of `rec_batch_size`.

ONNX Runtime quietly runs on CPU when its CUDA provider fails to load, so the provider is
checked on a real session before the engine is built: a GPU actor never OCRs on CPU unnoticed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# Outside the two sessions' arenas: the CUDA context and cuDNN's workspace (an estimate, which
# benchmarks/gpu_selfcheck.py compares with the memory the actor really holds).
CUDA_CONTEXT_GB = 0.5


def gpu_index(device: str) -> int | None:
    """The card of a PaddleOCR device string ("gpu:0" -> 0); None for "cpu"."""
    if device == "cpu":
        return None
    kind, _, index = device.partition(":")
    if kind != "gpu" or not (index or "0").isdigit():
        raise ValueError(f"ocr device must be 'cpu' or 'gpu[:N]', got {device!r}")
    return int(index or 0)


def onnx_engine_kwargs(device: str, cpu_threads: int, gpu_memory_gb: float = 0.0) -> dict[str, Any]:
    """`device` and `engine_config` of `PaddleOCR(engine="onnxruntime", ...)`.

    On a card, each of the two sessions (detection, recognition) gets an arena limit of half
    the plan's per-actor budget after the CUDA context, so the actor stays within what the plan
    reserved for it; CPU nodes of the model the CUDA provider lacks run on CPU, as ORT assigns.
    """
    index = gpu_index(device)
    # With engine="onnxruntime" PaddleOCR ignores `cpu_threads`: ORT threads go in engine_config.
    config: dict[str, Any] = {"intra_op_num_threads": cpu_threads, "inter_op_num_threads": 1}
    if index is None:
        return {"device": "cpu", "engine_config": {**config, "providers": [CPU_PROVIDER]}}
    if gpu_memory_gb <= CUDA_CONTEXT_GB:
        raise ValueError(f"ocr on {device} needs gpu_memory_gb_per_actor above {CUDA_CONTEXT_GB} GiB "
                         f"(the CUDA context), got {gpu_memory_gb}")
    arena = int((gpu_memory_gb - CUDA_CONTEXT_GB) / 2 * 1024**3)
    cuda = {"device_id": index, "gpu_mem_limit": arena, "arena_extend_strategy": "kSameAsRequested"}
    return {"device": f"gpu:{index}",
            "engine_config": {**config, "providers": [CUDA_PROVIDER, CPU_PROVIDER], "provider_options": [cuda, {}]}}


def require_provider(onnx_file: Path, engine_kwargs: dict[str, Any]) -> None:
    """On a card: open `onnx_file` with the engine's providers and fail unless CUDA's is active."""
    import onnxruntime as ort

    config = engine_kwargs["engine_config"]
    wanted = config["providers"][0]
    if wanted == CPU_PROVIDER:
        return  # always there; no session to open twice
    preload_cuda_libraries(ort)
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise RuntimeError(
            f"ocr device {engine_kwargs['device']}: this onnxruntime has no {CUDA_PROVIDER} "
            f"(available: {ort.get_available_providers()}); install onnxruntime-gpu in place of "
            "onnxruntime (README, GPU)")
    session = ort.InferenceSession(str(onnx_file), providers=config["providers"],
                                   provider_options=config.get("provider_options"))
    active = session.get_providers()
    if not active or active[0] != wanted:
        raise RuntimeError(f"ocr device {engine_kwargs['device']}: ONNX Runtime opened the model with {active}, "
                           f"not {wanted} (CUDA or cuDNN libraries not found?)")
    log.info("ocr onnxruntime providers: %s", active)


def preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels torch installed, where present: one CUDA
    stack for vLLM and OCR (onnxruntime >= 1.21)."""
    try:
        ort.preload_dlls(directory="")
    except Exception as exc:  # no nvidia wheels: ORT then looks on the system library path
        log.info("onnxruntime.preload_dlls found no CUDA wheels (%s); using the system CUDA libraries",
                 type(exc).__name__)
