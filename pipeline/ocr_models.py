"""PaddleOCR model directories built from the PP-OCRv6 small ONNX files in the rapidocr wheel.

PaddleOCR 3.7 with `engine="onnxruntime"` loads each model from a directory holding
`inference.onnx` and `inference.yml`; it checks `Global.model_name` against the name it
is given and builds pre- and post-processing from the yml. The rapidocr wheel ships the
ONNX graphs but no yml, so this module writes one next to a copy of each graph. The yml
content mirrors what PaddleX itself writes for these models
(`paddlex/modules/base/utils/pdparams2safetensors/inference_meta.py` in paddlex 3.7.2).
Nothing here touches the network: a missing source is an error that says how to stage it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.manifest import file_sha256
from pipeline.offline import use_offline_environment

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ROOT = Path("~/.cache/medrec/models")

MODEL_FILE = "inference.onnx"
CONFIG_FILE = "inference.yml"

# Names PaddleX 3.7 binds to the onnxruntime engine (paddlex.modules.*.model_list).
DET_MODEL_NAME = "PP-OCRv6_small_det"
REC_MODEL_NAME = "PP-OCRv6_small_rec"
DET_SOURCE_FILE = "PP-OCRv6_det_small.onnx"
REC_SOURCE_FILE = "PP-OCRv6_rec_small.onnx"

# ImageNet statistics; PaddleX lists them for every PP-OCR det model, v6 included.
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]

_DET_CONFIG: dict[str, Any] = {
    "PreProcess": {
        "transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"DetLabelEncode": None},
            {"DetResizeForTest": {"resize_long": 960}},
            {
                "NormalizeImage": {
                    "mean": _IMAGENET_MEAN,
                    "std": _IMAGENET_STD,
                    "scale": "1./255.",
                    "order": "hwc",
                }
            },
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
        ]
    },
    "PostProcess": {
        "name": "DBPostProcess",
        "thresh": 0.3,
        "box_thresh": 0.6,
        "max_candidates": 1000,
        "unclip_ratio": 1.5,
    },
}

_REC_PREPROCESS: dict[str, Any] = {
    "transform_ops": [
        {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
        {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
        {"RecResizeImg": {"image_shape": [3, 48, 320]}},
        {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}},
    ]
}


@dataclass(frozen=True)
class OcrModelDirs:
    """The detection and recognition model names and directories PaddleOCR is given."""

    det_model_name: str
    det_model_dir: Path
    rec_model_name: str
    rec_model_dir: Path


def rapidocr_models_dir() -> Path | None:
    """The `models/` folder of the installed rapidocr wheel, located without importing it."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def ensure_ocr_model_dirs(
    root: str | Path = DEFAULT_MODEL_ROOT, source_dir: str | Path | None = None
) -> OcrModelDirs:
    """Build the det and rec model dirs under `root` from the ONNX files in `source_dir`.

    `source_dir` defaults to the rapidocr wheel's `models/` folder. A dir that already
    holds the same ONNX bytes (sha256) and the same yml is left untouched, so concurrent
    workers and repeated runs are cheap and never rewrite files in use.
    """
    root = Path(root).expanduser()
    source = Path(source_dir).expanduser() if source_dir is not None else rapidocr_models_dir()
    det_source = _require_source(source, DET_SOURCE_FILE)
    rec_source = _require_source(source, REC_SOURCE_FILE)

    det_dir = root / DET_MODEL_NAME
    rec_dir = root / REC_MODEL_NAME
    det_config = {"Global": {"model_name": DET_MODEL_NAME}, **_DET_CONFIG}
    _build_model_dir(det_source, det_dir, det_config)
    characters = read_character_dict(rec_source)
    rec_config = {
        "Global": {"model_name": REC_MODEL_NAME},
        "PreProcess": _REC_PREPROCESS,
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": characters},
    }
    _build_model_dir(rec_source, rec_dir, rec_config)
    return OcrModelDirs(DET_MODEL_NAME, det_dir, REC_MODEL_NAME, rec_dir)


def read_character_dict(rec_onnx: Path) -> list[str]:
    """The recognition alphabet stored in the ONNX file's `character` metadata.

    Checked against the output width: CTC adds a blank in front and PaddleX a space at
    the end, so a mismatch means the file is not the PP-OCR rec model it claims to be.
    """
    use_offline_environment()
    import onnxruntime as ort

    session = ort.InferenceSession(str(rec_onnx), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if "character" not in metadata:
        raise ValueError(f"{rec_onnx} has no 'character' metadata; it is not a PP-OCR rec model")
    characters = metadata["character"].split("\n")
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(characters) + 2:
        raise ValueError(
            f"{rec_onnx}: {len(characters)} characters in metadata but {classes} output classes"
        )
    return characters


def _require_source(source_dir: Path | None, file_name: str) -> Path:
    if source_dir is not None and (source_dir / file_name).is_file():
        return source_dir / file_name
    where = source_dir / file_name if source_dir is not None else f"rapidocr/models/{file_name}"
    raise FileNotFoundError(
        f"OCR model source {where} not found. Install the rapidocr 3.10 wheel "
        f"(pip install rapidocr==3.10.0, which ships it) or copy {file_name} into a "
        f"folder and pass that folder as the OCR source_dir."
    )


def _build_model_dir(source: Path, target: Path, config: dict[str, Any]) -> None:
    config_text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    model_path = target / MODEL_FILE
    config_path = target / CONFIG_FILE
    model_current = model_path.is_file() and file_sha256(model_path) == file_sha256(source)
    config_current = config_path.is_file() and config_path.read_text("utf-8") == config_text
    if model_current and config_current:
        logger.debug("OCR model dir %s is up to date", target)
        return
    target.mkdir(parents=True, exist_ok=True)
    if not model_current:
        _atomic_write(model_path, lambda tmp: shutil.copyfile(source, tmp))
    if not config_current:
        _atomic_write(config_path, lambda tmp: tmp.write_text(config_text, "utf-8"))
    logger.info("built OCR model dir %s from %s", target, source)


def _atomic_write(path: Path, write) -> None:
    # Write beside the target and rename, so a reader never sees a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)



# Official PaddleX inference dirs for engine="paddle": a program (inference.json in Paddle 3,
# inference.pdmodel before), its weights and the pre/post-processing yml.
PADDLE_PROGRAM_FILES = ("inference.json", "inference.pdmodel")
PADDLE_WEIGHTS_FILE = "inference.pdiparams"
# Where Paddle publishes the official dirs (paddlex 3.7 `_BosModelHoster`), for staging only.
PADDLE_MODEL_URL = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_inference_model/paddle3.0.0/{name}_infer.tar"


def missing_paddle_model_files(model_dir: Path, model_name: str) -> list[str]:
    """What a dir lacks to be the official Paddle inference dir of `model_name` ([] if complete)."""
    missing = []
    if not any((model_dir / name).is_file() for name in PADDLE_PROGRAM_FILES):
        missing.append(" or ".join(PADDLE_PROGRAM_FILES))
    for name in (PADDLE_WEIGHTS_FILE, CONFIG_FILE):
        if not (model_dir / name).is_file():
            missing.append(name)
    if (model_dir / CONFIG_FILE).is_file():
        declared = (yaml.safe_load((model_dir / CONFIG_FILE).read_text("utf-8")) or {}).get("Global", {}).get("model_name")
        if declared != model_name:
            missing.append(f"{CONFIG_FILE} Global.model_name {model_name} (it says {declared})")
    return missing


def paddle_staging_hint(model_dir: Path, model_name: str) -> str:
    """How to stage an official model dir on an air-gapped node."""
    return (f"on a connected machine download {PADDLE_MODEL_URL.format(name=model_name)} "
            f"(or the Hugging Face repo PaddlePaddle/{model_name}), extract it and copy "
            f"its {model_name}_infer/ contents to {model_dir}")


def require_staged_model_dirs(dirs: OcrModelDirs) -> OcrModelDirs:
    """`dirs` when both hold complete official inference dirs, else an error saying how to stage them."""
    problems = [
        f"{path}: missing {', '.join(missing)}; {paddle_staging_hint(path, name)}"
        for name, path in ((dirs.det_model_name, dirs.det_model_dir), (dirs.rec_model_name, dirs.rec_model_dir))
        if (missing := missing_paddle_model_files(Path(path), name))
    ]
    if problems:
        raise FileNotFoundError("OCR model dirs are not staged: " + " | ".join(problems))
    return dirs
