"""`medrec models check`: which model dirs are staged, where, with checksums, and what is missing.

Covers every OCR backend in `conf/ocr/` and the LLM of an extract config with
`backend: vllm`. Nothing is downloaded or built here: a missing dir comes with the
command that stages it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.manifest import file_sha256
from pipeline.ocr_models import (
    CONFIG_FILE,
    DET_MODEL_NAME,
    DET_SOURCE_FILE,
    MODEL_FILE,
    REC_MODEL_NAME,
    REC_SOURCE_FILE,
    missing_paddle_model_files,
    paddle_staging_hint,
    rapidocr_models_dir,
)

LLM_REQUIRED_FILES = ("config.json",)


@dataclass(frozen=True)
class ModelDirStatus:
    """One model dir: whether it is complete, its files' sha256, and how to fix it if not."""

    role: str  # e.g. "ocr paddle det"
    model_name: str
    path: Path
    checksums: tuple[tuple[str, str], ...]  # (file name relative to path, sha256)
    missing: tuple[str, ...]
    how_to_stage: str

    @property
    def staged(self) -> bool:
        return not self.missing


def directory_checksums(path: Path) -> tuple[tuple[str, str], ...]:
    """sha256 of every file under `path`, by relative name; () if it is not a dir."""
    if not path.is_dir():
        return ()
    return tuple((str(file.relative_to(path)), file_sha256(file))
                 for file in sorted(path.rglob("*")) if file.is_file())


def check_paddle_dir(role: str, model_name: str, path: Path) -> ModelDirStatus:
    """An official Paddle inference dir (engine="paddle")."""
    missing = missing_paddle_model_files(path, model_name) if path.is_dir() else [f"the folder {path}"]
    return ModelDirStatus(role, model_name, path, directory_checksums(path), tuple(missing),
                          paddle_staging_hint(path, model_name))


def check_onnx_dirs(model_dir: Path, source_dir: Path | None) -> list[ModelDirStatus]:
    """The embedded backend's dirs, which `medrec run` builds from the rapidocr wheel's ONNX files."""
    source = source_dir if source_dir is not None else rapidocr_models_dir()
    statuses = []
    for role, name, source_file in (("ocr paddle_onnx det", DET_MODEL_NAME, DET_SOURCE_FILE),
                                    ("ocr paddle_onnx rec", REC_MODEL_NAME, REC_SOURCE_FILE)):
        path = model_dir / name
        missing = [file for file in (MODEL_FILE, CONFIG_FILE) if not (path / file).is_file()]
        has_source = source is not None and (source / source_file).is_file()
        hint = (f"built on the next `medrec run` from {source / source_file}" if has_source else
                f"install rapidocr==3.10.0 (it ships {source_file}); `medrec run` then builds {path}")
        statuses.append(ModelDirStatus(role, name, path, directory_checksums(path), tuple(missing), hint))
    return statuses


def check_llm_dir(model_name: str, path: Path) -> ModelDirStatus:
    """A Hugging Face-format model dir as vLLM loads it: config.json, tokenizer and safetensors."""
    missing = [] if path.is_dir() else [f"the folder {path}"]
    if path.is_dir():
        missing += [name for name in LLM_REQUIRED_FILES if not (path / name).is_file()]
        if not any(path.glob("*.safetensors")):
            missing.append("*.safetensors weights")
        if not any(path.glob("tokenizer*")):
            missing.append("tokenizer files")
    hint = (f"on a connected machine `huggingface-cli download <org>/{model_name} --local-dir {model_name}`, "
            f"then copy the folder to {path}")
    return ModelDirStatus("llm", model_name, path, directory_checksums(path), tuple(missing), hint)


def render_check(statuses: list[ModelDirStatus]) -> str:
    """One block per dir: staged or missing, where, checksums or how to stage."""
    lines = []
    for status in statuses:
        state = "staged" if status.staged else "MISSING"
        lines.append(f"[{state}] {status.role}: {status.model_name} at {status.path}")
        lines += [f"    sha256 {digest}  {name}" for name, digest in status.checksums]
        if not status.staged:
            lines.append(f"    missing: {', '.join(status.missing)}")
            lines.append(f"    stage: {status.how_to_stage}")
    staged = sum(status.staged for status in statuses)
    lines.append(f"{staged} of {len(statuses)} model dirs staged")
    return "\n".join(lines)
