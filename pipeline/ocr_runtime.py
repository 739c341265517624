"""OpenVINO under the PaddleOCR pipeline, in place of its ONNX Runtime CPU sessions.

PaddleOCR 3.7 (`engine="onnxruntime"`) runs each model through a PaddleX
`ONNXRuntimeRunner`, which takes its session options from `engine_config` (built in
`pipeline.ocr_onnx`, the one place for them) and calls
`session.run(output_names, feeds)` on every batch. PaddleX reaches OpenVINO only through
its high-performance-inference plugin (ultra-infer, not on PyPI for this platform), so the
OpenVINO runtime here keeps PaddleOCR's pre- and post-processing and replaces the runner's
session with an OpenVINO compiled model behind the same `run` call.
Measured on this machine (benchmarks/ocr_engines.py): OpenVINO with bf16 inference on a
CPU that has AVX-512 BF16 reads the kit's pages at the fp32 accuracy bound for about half
the recognition CPU time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16", "int8")  # int8: ONNX Runtime only (pipeline.ocr_quantize)


class OpenVinoSession:
    """An OpenVINO compiled model that answers ONNX Runtime's `InferenceSession.run` call."""

    def __init__(self, model_path: Path, threads: int, precision: str, width_step: int | None = None):
        if precision not in ("f32", "bf16"):
            raise ValueError(f"OpenVINO precision must be f32 or bf16, got {precision!r}")
        import openvino as ov

        core = ov.Core()
        # One stream, `threads` threads: the actor pool, not OpenVINO, spreads pages over cores.
        self._compiled = core.compile_model(str(model_path), "CPU", {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        })
        self._request = self._compiled.create_infer_request()
        self._width_step = width_step
        self._inputs = [port.any_name for port in self._compiled.inputs]
        self._outputs = {port.any_name: port for port in self._compiled.outputs}

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {name: self._padded(feeds[name]) for name in self._inputs}
        # Shared, then copied once: the request reuses its output buffers on the next call.
        results = self._request.infer(inputs, share_inputs=True, share_outputs=True)
        names = output_names or list(self._outputs)
        return [np.array(results[self._outputs[name]]) for name in names]

    def _padded(self, batch: np.ndarray) -> np.ndarray:
        # OpenVINO's CPU plugin prepares kernels per input shape and caches them: text-line
        # batches come in every width, so round widths up (zeros, as PaddleX pads a batch).
        if self._width_step is None or batch.shape[-1] % self._width_step == 0:
            return batch
        width = -(-batch.shape[-1] // self._width_step) * self._width_step
        padding = [(0, 0)] * (batch.ndim - 1) + [(0, width - batch.shape[-1])]
        return np.pad(batch, padding)


def use_openvino(paddle_ocr: Any, threads: int, precision: str, rec_width_step: int | None) -> None:
    """Run the det and rec models of a PaddleOCR (engine="onnxruntime") on OpenVINO."""
    pipeline = paddle_ocr.paddlex_pipeline
    for predictor, width_step in ((pipeline.text_det_model, None), (pipeline.text_rec_model, rec_width_step)):
        runner = predictor.runner
        model_path = runner._get_model_path()
        session = OpenVinoSession(Path(model_path), threads, precision, width_step)
        missing = set(runner._output_names) - set(session._outputs)
        if missing or sorted(runner._input_names) != sorted(session._inputs):
            raise RuntimeError(f"OpenVINO sees other inputs/outputs than ONNX Runtime in {model_path}")
        runner.session = session
