"""OCR stage: page images -> text lines with polygon, box and confidence (PaddleOCR).

Two backends: `paddle_onnx` (the embedded default: ONNX Runtime with model dirs built
from the rapidocr wheel, on CPU or, with `device=gpu:0`, its CUDA provider) and `paddle`
(paddlepaddle-gpu with official model dirs staged locally). Paddle workers grow in memory with the pages they see; Ray Data 2.60 has
no "restart an actor after N calls" for `map_batches` actor pools (`max_calls` applies to
task workers only), so the stage rebuilds its engine in-process after
`recycle_after_pages` pages and releases the old one (and Paddle's cached GPU blocks).
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections import Counter
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from pipeline.checkboxes import page_checkboxes
from pipeline.node_slots import node_slot
from pipeline.ocr_charset import CHARSETS, ensure_charset_rec_dir
from pipeline.ocr_models import OcrModelDirs, ensure_ocr_model_dirs, require_staged_model_dirs
from pipeline.ocr_onnx import onnx_engine_kwargs, require_provider
from pipeline.ocr_quantize import ensure_int8_rec_dir
from pipeline.ocr_runtime import PRECISIONS, RUNTIMES, use_openvino
from pipeline.offline import use_offline_environment, without_torch_for_modelscope
from pipeline.stages.base import PageFailure, Resources, Stage

logger = logging.getLogger(__name__)

TEXT_LAYER = "text_layer"
OCR = "ocr"
BACKENDS = ("paddle_onnx", "paddle")


class OcrStage(Stage):
    """Recognise text lines on page images that have no usable text layer.

    Pages whose `text_source` is "text_layer" already carry their lines from the render
    stage and pass through. Check boxes are read from every page that has pixels (the
    render stage keeps them for text-layer pages with drawings); every page leaves with
    its image dropped.
    """

    name: ClassVar[str] = "ocr"
    required_columns: ClassVar[tuple[str, ...]] = Stage.required_columns + (
        "image",
        "image_width",
        "image_height",
        "text_source",
        "lines",
    )

    def __init__(
        self,
        model_dir: str,
        cpu_threads: int = 1,
        det_limit_side_len: int = 960,
        min_confidence: float = 0.0,
        source_dir: str | None = None,
        resources: Resources | None = None,
        backend: str = "paddle_onnx",
        device: str = "cpu",
        staged_dirs: OcrModelDirs | None = None,
        rec_batch_size: int | None = None,
        recycle_after_pages: int | None = None,
        gpu_memory_gb: float = 0.0,
        runtime: str = "onnxruntime",
        precision: str = "f32",
        rec_width_step: int | None = None,
        graph_optimization_level: int | None = None,
        enable_cpu_mem_arena: bool | None = None,
        execution_mode: str | None = None,
        rec_charset: str = "all",
        engine_build_slots: int | None = None,
    ):
        """
        Args:
            model_dir: root under which the det/rec model dirs are built (e.g.
                `~/.cache/medrec/models`).
            cpu_threads: ONNX Runtime intra-op threads per actor; actors x threads should
                not exceed the node's cores.
            det_limit_side_len: longest side the detector sees; larger pages are scaled
                down for detection only (recognition crops the full-resolution page). 960
                finds the same lines as 1664 on 150 DPI letter pages at a third of the
                detection time.
            min_confidence: recognised lines below this are dropped (and counted).
            source_dir: folder with the PP-OCRv6 small ONNX files; None means the
                rapidocr wheel's `models/`.
            backend: "paddle_onnx" (CPU, ONNX Runtime) or "paddle" (paddlepaddle, GPU).
            device: PaddleOCR device, e.g. "gpu:0" (paddle_onnx: ONNX Runtime's CUDA provider).
            staged_dirs: the paddle backend's official model names and dirs.
            rec_batch_size: text lines per recognition call; None: PaddleOCR's default.
            recycle_after_pages: rebuild the engine after this many pages; None: never.
            gpu_memory_gb: the plan's VRAM budget per actor; caps ONNX Runtime's CUDA arenas.
            runtime: paddle_onnx on CPU only: "onnxruntime" or "openvino" (pipeline.ocr_runtime).
            precision: "f32"; "bf16" with OpenVINO (CPUs with AVX-512 BF16/AMX); "int8" with ONNX
                Runtime: the recognition model quantised, calibrated on drawn pages (pipeline.ocr_quantize).
            rec_width_step: OpenVINO only: text-line batches are padded to a multiple of this
                width so its per-shape kernels are reused; None: no padding.
            graph_optimization_level, enable_cpu_mem_arena, execution_mode: ONNX Runtime
                session options (pipeline.ocr_onnx); None keeps ONNX Runtime's default.
            rec_charset: paddle_onnx only: "all" characters of the recognition dictionary, or
                "latin": its head cut to Latin-script characters and symbols (pipeline.ocr_charset).
            engine_build_slots: OCR engines built at once on this machine (the actors take turns,
                pipeline.node_slots); None: every actor builds when it starts.
        """
        super().__init__(resources)
        if cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {cpu_threads}")
        if det_limit_side_len < 32:
            raise ValueError(f"det_limit_side_len must be >= 32, got {det_limit_side_len}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.model_dir = model_dir
        self.cpu_threads = cpu_threads
        self.det_limit_side_len = det_limit_side_len
        self.min_confidence = min_confidence
        if backend not in BACKENDS:
            raise ValueError(f"ocr backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "paddle" and staged_dirs is None:
            raise ValueError("ocr backend paddle needs staged_dirs (official model names and dirs)")
        if recycle_after_pages is not None and recycle_after_pages < 1:
            raise ValueError(f"recycle_after_pages must be >= 1, got {recycle_after_pages}")
        self.source_dir = source_dir
        self.backend = backend
        self.device = device
        self.staged_dirs = staged_dirs
        self.rec_batch_size = rec_batch_size
        self.recycle_after_pages = recycle_after_pages
        self.gpu_memory_gb = gpu_memory_gb
        if runtime not in RUNTIMES:
            raise ValueError(f"ocr runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "openvino" and (backend != "paddle_onnx" or device != "cpu"):
            raise ValueError("ocr runtime openvino runs the paddle_onnx backend on device cpu")
        if precision not in PRECISIONS or (precision == "bf16" and runtime != "openvino") or (
                precision == "int8" and (runtime != "onnxruntime" or backend != "paddle_onnx" or device != "cpu")):
            raise ValueError(f"ocr precision {precision!r}: f32, bf16 with runtime openvino, "
                             "or int8 with onnxruntime on cpu")
        if rec_width_step is not None and rec_width_step < 1:
            raise ValueError(f"rec_width_step must be >= 1, got {rec_width_step}")
        if engine_build_slots is not None and engine_build_slots < 1:
            raise ValueError(f"engine_build_slots must be >= 1, got {engine_build_slots}")
        self.engine_build_slots = engine_build_slots
        if rec_charset not in CHARSETS or (rec_charset != "all" and backend != "paddle_onnx"):
            raise ValueError(f"ocr rec_charset must be one of {CHARSETS} ('all' on the paddle backend), "
                             f"got {rec_charset!r}")
        self.rec_charset = rec_charset
        self.runtime = runtime
        self.precision = precision
        self.rec_width_step = rec_width_step
        self.session_options = dict(graph_optimization_level=graph_optimization_level,
                                    enable_cpu_mem_arena=enable_cpu_mem_arena, execution_mode=execution_mode)
        self.counters: Counter[str] = Counter()
        self._engine: Any = None
        self._pages_since_build = 0

    def setup(self) -> None:
        """Build or check the local model dirs and load PaddleOCR once per worker."""
        # Production sites are air-gapped: models only ever come from local dirs.
        use_offline_environment()
        turn = nullcontext() if self.engine_build_slots is None else node_slot("ocr-engine-build",
                                                                                self.engine_build_slots)
        with turn:
            self._engine = self._build_engine()
        self._pages_since_build = 0

    def _build_engine(self) -> Any:
        without_torch_for_modelscope()
        from paddleocr import PaddleOCR

        common = dict(
            # Scans are upright; the line-angle classifier reversed a third of upright lines.
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            text_det_limit_side_len=self.det_limit_side_len,
            text_det_limit_type="max",
            text_recognition_batch_size=self.rec_batch_size,
        )
        if self.backend == "paddle":
            dirs = require_staged_model_dirs(self.staged_dirs)
            _require_paddle()
            engine = PaddleOCR(engine="paddle", device=self.device, cpu_threads=self.cpu_threads,
                               **_model_kwargs(dirs), **common)
        else:
            dirs = ensure_ocr_model_dirs(self.model_dir, self.source_dir)
            dirs = replace(dirs, rec_model_dir=ensure_charset_rec_dir(dirs, self.rec_charset))
            if self.precision == "int8":
                dirs = replace(dirs, rec_model_dir=ensure_int8_rec_dir(dirs))
            # ONNX Runtime on CPU, or on a card through its CUDA provider (pipeline.ocr_onnx);
            # runtime=openvino then swaps the CPU sessions for OpenVINO's (pipeline.ocr_runtime).
            onnx = onnx_engine_kwargs(self.device, self.cpu_threads, self.gpu_memory_gb, **self.session_options)
            require_provider(dirs.det_model_dir / "inference.onnx", onnx)
            engine = PaddleOCR(engine="onnxruntime", **onnx, **_model_kwargs(dirs), **common)
            if self.runtime == "openvino":
                use_openvino(engine, self.cpu_threads, self.precision, self.rec_width_step)
        logger.info(
            "ocr engine ready: backend=%s runtime=%s/%s device=%s det=%s rec=%s threads=%d",
            self.backend,
            self.runtime if self.backend == "paddle_onnx" else "paddle",
            self.precision,
            self.device,
            dirs.det_model_name,
            dirs.rec_model_name,
            self.cpu_threads,
        )
        return engine

    def _recycle_engine_if_due(self, pages: int) -> None:
        """After `recycle_after_pages` pages, drop the engine and build a fresh one."""
        self._pages_since_build += pages
        if self.recycle_after_pages is None or self._pages_since_build < self.recycle_after_pages:
            return
        self._engine = None
        gc.collect()
        if self.backend == "paddle":
            import paddle

            # Cached GPU blocks stay reserved after the engine is gone unless released.
            paddle.device.cuda.empty_cache()
        self._engine = self._build_engine()
        self._pages_since_build = 0
        self.counters["engine_rebuilds"] += 1
        logger.info("ocr engine rebuilt after %d pages (rebuild %d)", self.recycle_after_pages,
                    self.counters["engine_rebuilds"])

    def process_pages(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Decode every image page, run them through one predict call, attach lines."""
        done: list[dict[str, Any]] = []
        pixels: dict[int, np.ndarray] = {}
        for index, row in enumerate(rows):
            if row["text_source"] == TEXT_LAYER:
                self.counters["pages_text_layer"] += 1
                done.append(self._guarded(self._text_layer_checkboxes, row))
                continue
            decoded = self._guarded(self._decode_into, row, pixels, index)
            if decoded.get("error_stage"):
                self.counters["pages_failed"] += 1
            done.append(decoded)
        if pixels:
            indices = sorted(pixels)
            # One predict call for the batch; if it raises, the stage base retries page by
            # page and quarantines only a page the engine rejects alone.
            results = self._engine.predict([pixels[i] for i in indices])
            for index, result in zip(indices, results, strict=True):
                lines = self._lines_from_result(result, rows[index])
                checkboxes = self._checkboxes(pixels[index][:, :, 0], rows[index], lines)
                done[index] = {**rows[index], "image": None, "text_source": OCR, "lines": lines,
                               "checkboxes": checkboxes}
                self.counters["pages_ocr"] += 1
                logger.debug(
                    "ocr page %s/%s/%s: %d lines",
                    rows[index]["facility_id"],
                    rows[index]["document_id"],
                    rows[index]["page_index"],
                    len(lines),
                )
            self._recycle_engine_if_due(len(indices))
        return done

    def _checkboxes(self, gray: np.ndarray, row: dict[str, Any], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        checkboxes = page_checkboxes(gray, row["dpi"] or 150, lines)
        self.counters["checkboxes"] += len(checkboxes)
        return checkboxes

    def _text_layer_checkboxes(self, row: dict[str, Any]) -> dict[str, Any]:
        """A born-digital page keeps its text; its drawn check boxes are read from its pixels."""
        if row["image"] is None:
            return {**row, "image": None}
        gray = decode_gray_page(row)[:, :, 0]
        return {**row, "image": None, "checkboxes": self._checkboxes(gray, row, row["lines"] or [])}

    def _decode_into(
        self, row: dict[str, Any], pixels: dict[int, np.ndarray], index: int
    ) -> dict[str, Any]:
        # Runs under `_guarded` so a bad image becomes an error row; good pixels wait
        # in `pixels` for the batch's single predict call.
        pixels[index] = decode_gray_page(row)
        return row

    def _lines_from_result(self, result: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
        bounds = np.array([row["image_width"], row["image_height"]], dtype=np.float32)
        kept: list[tuple[str, float, np.ndarray]] = []
        for text, score, poly in zip(
            result["rec_texts"], result["rec_scores"], result["rec_polys"], strict=True
        ):
            if not text.strip():
                self.counters["lines_dropped_empty"] += 1
            elif score < self.min_confidence:
                self.counters["lines_dropped_low_confidence"] += 1
            else:
                polygon = np.clip(np.asarray(poly, dtype=np.float32).reshape(4, 2), 0, bounds)
                kept.append((text, float(score), polygon))
        self.counters["lines"] += len(kept)
        order = reading_order([polygon for _, _, polygon in kept])
        return [
            {
                "line_id": line_id,
                "text": kept[i][0].translate(_HALF_WIDTH),
                "confidence": kept[i][1],
                "polygon": kept[i][2].tolist(),
                "bbox": [*kept[i][2].min(axis=0).tolist(), *kept[i][2].max(axis=0).tolist()],
            }
            for line_id, i in enumerate(order)
        ]


# PP-OCR's recognisers are trained on Chinese and English and now and then read a comma or
# colon as its full-width form ("LEMKE，ROBERTO"); the page printed the ASCII one.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def _model_kwargs(dirs: OcrModelDirs) -> dict[str, str]:
    return dict(
        text_detection_model_name=dirs.det_model_name,
        text_detection_model_dir=str(dirs.det_model_dir),
        text_recognition_model_name=dirs.rec_model_name,
        text_recognition_model_dir=str(dirs.rec_model_dir),
    )


def _require_paddle() -> None:
    if importlib.util.find_spec("paddle") is None:
        raise ModuleNotFoundError(
            "ocr backend paddle needs paddlepaddle-gpu 3.x, which comes from Paddle's own package index, "
            "not PyPI: see the README's GPU section")


def decode_gray_page(row: dict[str, Any]) -> np.ndarray:
    """Raw 8-bit grayscale bytes of a page row -> an HxWx3 uint8 array, as PaddleOCR expects."""
    image, width, height = row["image"], row["image_width"], row["image_height"]
    if image is None:
        raise PageFailure("undecodable_image", "page has no image to OCR")
    if width is None or height is None or width <= 0 or height <= 0:
        raise PageFailure("undecodable_image", f"invalid image size {width}x{height}")
    if len(image) != width * height:
        raise PageFailure(
            "undecodable_image",
            f"image has {len(image)} bytes, expected {width}x{height}={width * height}",
        )
    gray = np.frombuffer(image, np.uint8).reshape(height, width)
    return np.repeat(gray[:, :, None], 3, axis=2)


def reading_order(polygons: list[np.ndarray]) -> list[int]:
    """Indices of 4x2 polygons in reading order: top-to-bottom, then left-to-right.

    A polygon whose vertical centre falls inside the vertical span of a row's first
    polygon joins that row, so a label and its value on one baseline read left to right
    even when their tops differ by a few pixels.
    """
    by_top = sorted(
        range(len(polygons)), key=lambda i: (polygons[i][:, 1].min(), polygons[i][:, 0].min())
    )
    rows: list[list[int]] = []
    row_bottom = float("-inf")
    for i in by_top:
        ys = polygons[i][:, 1]
        if rows and (ys.min() + ys.max()) / 2 <= row_bottom:
            rows[-1].append(i)
        else:
            rows.append([i])
            row_bottom = float(ys.max())
    return [i for row in rows for i in sorted(row, key=lambda i: polygons[i][:, 0].min())]
