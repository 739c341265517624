"""An int8 copy of the recognition model, calibrated on pages drawn in code (`ocr.precision=int8`).

Recognition is four fifths of the OCR stage's CPU time, two thirds of it in convolutions
(ONNX Runtime's profile of the PP-OCRv6 small rec graph). Static int8 quantisation (QDQ,
per-channel weights, activations calibrated) lets ONNX Runtime run those convolutions with
its int8 kernels (AVX-512 VNNI where the CPU has them). Dynamic quantisation turns them into
ConvInteger, which ONNX Runtime runs slower than f32, so the activations are calibrated here.

The shipped graph is opset 11, which has no per-channel DequantizeLinear: it is converted to
opset 13 first. Calibration inputs are the recognition batches the f32 engine sees on a few
scanned-looking pages drawn by `pipeline.synth` (fixed seed): no patient data, no download,
the same bytes on every machine for the same wheel. Detection stays f32: quantised, it
found fewer lines on the kit pages (CER up by 0.02) for a few per cent of the page's time.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.ocr_models import CONFIG_FILE, MODEL_FILE, OcrModelDirs, _atomic_write
from pipeline.manifest import file_sha256
from pipeline.offline import without_torch_for_modelscope

logger = logging.getLogger(__name__)

INT8_SUFFIX = "_int8"
STAMP_FILE = "quantized_from.json"
# Changing any of these changes the int8 graph: it is part of the stamp, so dirs are rebuilt.
RECIPE = {"opset": 13, "format": "QDQ", "per_channel": True, "activations": "QUInt8", "weights": "QInt8",
          # The backbone's convolutions (two thirds of the time); the first one, which reads the pixels,
          # and the neck (its last convolutions and its attention) stay f32: quantised, the
          # kit's word-bag F1 fell by 0.0065 (benchmarks/ocr_engines.py).
          "ops": ["Conv"], "exclude": ["Conv.0", "Conv.52", "Conv.53", "Conv.54", "Conv.55", "Conv.56"],
          "calibration": "MinMax", "pages": 4, "seed": 15, "dpi": 200, "max_batches": 40}


def int8_rec_dir(dirs: OcrModelDirs) -> Path:
    """Where the int8 recognition dir of `dirs` lives: beside the f32 one."""
    return dirs.rec_model_dir.with_name(dirs.rec_model_dir.name + INT8_SUFFIX)


def ensure_int8_rec_dir(dirs: OcrModelDirs) -> Path:
    """Build (once) the int8 recognition dir from the f32 one; returns its path.

    A dir whose stamp names the same f32 graph (sha256) and recipe is left as it is; a build
    takes about a minute of CPU (calibration pages, then quantisation), so it is done on the
    driver before actors start (`pipeline.run.prepare_models`).
    """
    target = int8_rec_dir(dirs)
    source = dirs.rec_model_dir / MODEL_FILE
    stamp = {"source_sha256": file_sha256(source), "recipe": RECIPE}
    stamp_path = target / STAMP_FILE
    if (target / MODEL_FILE).is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return target
    logger.info("building the int8 OCR recognition model in %s (calibrating on drawn pages)", target)
    target.mkdir(parents=True, exist_ok=True)
    batches = calibration_batches(dirs)
    _atomic_write(target / MODEL_FILE, lambda tmp: quantize_rec(source, tmp, batches, target))
    _atomic_write(target / CONFIG_FILE, lambda tmp: shutil.copyfile(dirs.rec_model_dir / CONFIG_FILE, tmp))
    _atomic_write(stamp_path, lambda tmp: tmp.write_text(json.dumps(stamp)))
    return target


def calibration_pages() -> list[np.ndarray]:
    """Scanned-looking pages of every synthetic document type, as HxWx3 uint8 arrays."""
    from pipeline.synth.documents import BUILDERS
    from pipeline.synth.patients import make_patient, make_visit
    from pipeline.synth.render import degrade, draw_page

    rng = random.Random(RECIPE["seed"])
    pages = []
    for number, builder in enumerate(sorted(BUILDERS)):
        patient = make_patient(rng, number % 3, number)
        document = BUILDERS[builder](rng, patient, make_visit(rng, patient), "Calibration Clinic")
        gray = np.asarray(degrade(draw_page(document.pages[0], RECIPE["dpi"]), rng))
        pages.append(np.repeat(gray[:, :, None], 3, axis=2))
        if len(pages) == RECIPE["pages"]:
            break
    return pages


def calibration_batches(dirs: OcrModelDirs) -> list[dict[str, np.ndarray]]:
    """The recognition inputs the f32 engine builds for the calibration pages."""
    without_torch_for_modelscope()
    from paddleocr import PaddleOCR

    engine = PaddleOCR(engine="onnxruntime", device="cpu",
                       engine_config={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
                       text_detection_model_name=dirs.det_model_name, text_detection_model_dir=str(dirs.det_model_dir),
                       text_recognition_model_name=dirs.rec_model_name, text_recognition_model_dir=str(dirs.rec_model_dir),
                       use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False)
    runner = engine.paddlex_pipeline.text_rec_model.runner
    session, seen = runner.session, []

    class Recording:
        """The f32 session, keeping a copy of every batch it is given."""

        def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
            seen.append({name: array.copy() for name, array in feeds.items()})
            return session.run(names, feeds)

    runner.session = Recording()
    engine.predict(calibration_pages())
    step = max(1, len(seen) // RECIPE["max_batches"])
    return seen[::step][: RECIPE["max_batches"]]


def quantize_rec(source: Path, output: Path, batches: list[dict[str, np.ndarray]], workdir: Path) -> None:
    """Static QDQ int8 quantisation of the rec graph at `source` into `output`."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    opset13 = workdir / ".opset13.onnx"
    try:
        onnx.save(version_converter.convert_version(onnx.load(str(source)), RECIPE["opset"]), str(opset13))
        quantize_static(str(opset13), str(output), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=RECIPE["ops"], nodes_to_exclude=RECIPE["exclude"],
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        opset13.unlink(missing_ok=True)
