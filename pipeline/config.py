"""Validated configuration: the Hydra-composed tree checked by pydantic models.

Hydra composes `conf/`; `load_config` turns the result into these models, so a wrong
value fails at start-up with the key that is wrong, not deep inside a Ray worker.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from terminology_index.build import IndexSources

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OcrConfig(_Strict):
    backend: Literal["paddle_onnx"]
    model_dir: str
    det_limit_side_len: int = Field(960, ge=320, le=6000)


class ExtractConfig(_Strict):
    backend: Literal["lexicon"]


class TerminologyConfig(_Strict):
    index_path: str
    sources: IndexSources
    shared_dir: str | None = None


class PoolConfig(_Strict):
    """An actor pool: how many actors and what each one is given."""

    actors: int = Field(1, ge=1, le=512)
    cpus_per_actor: float = Field(1.0, gt=0, le=64)
    threads_per_actor: int | None = Field(None, ge=1, le=64)  # None: the CPUs the actor is given, at least 1
    batch_size: int = Field(4, ge=1, le=1024)
    memory_mb: int | None = Field(None, ge=16)  # measured resident set per actor, reserved in Ray

    @property
    def threads(self) -> int:
        return self.threads_per_actor or max(1, round(self.cpus_per_actor))


class TaskConfig(_Strict):
    cpus: float = Field(0.1, gt=0, le=64)
    batch_size: int = Field(4, ge=1, le=1024)
    assembly_partitions: int = Field(4, ge=1, le=10000)


class ResourcesConfig(_Strict):
    num_cpus: int | None = Field(None, ge=1)
    ocr: PoolConfig
    extract: PoolConfig
    code: PoolConfig
    classify: PoolConfig
    validate_pool: PoolConfig = Field(alias="validate")  # `validate` would shadow a pydantic method
    tasks: TaskConfig

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WriterConfig(_Strict):
    pipeline_version_tag: str = "medrec"
    fhir_recorded: str = "1970-01-01T00:00:00Z"
    progress: bool = True


class RenderConfig(_Strict):
    dpi: int = Field(150, ge=72, le=600)
    max_side_px: int = Field(2600, ge=256, le=20000)
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1)
    min_text_layer_chars: int = Field(40, ge=0)


class CodeConfig(_Strict):
    top_k: int = Field(5, ge=1, le=50)
    min_score: float = Field(0.5, ge=0, le=1)


class ValidateConfig(_Strict):
    min_confidence: float = Field(0.75, ge=0, le=1)
    earliest_birth_year: int = Field(1900, ge=1800)
    today: str | None = None

    @field_validator("today")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # raises with the bad value at start-up, not in a worker
        return value


class MedrecConfig(_Strict):
    input: str | None = None
    output: str | None = None
    facility_id: str | None = None
    n_documents: int = Field(28, ge=1)
    seed: int = 7
    include_bad_files: bool = False
    ocr: OcrConfig
    extract: ExtractConfig
    terminology: TerminologyConfig
    resources: ResourcesConfig
    writer: WriterConfig
    render: RenderConfig
    code: CodeConfig
    validate_rules: ValidateConfig = Field(alias="validate")  # `validate` would shadow a pydantic method

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def compose(overrides: list[str]) -> dict:
    """Compose `conf/` with Hydra and `key=value` overrides into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    if not (CONF_DIR / "config.yaml").is_file():
        raise FileNotFoundError(f"config folder {CONF_DIR} not found: install medrec from its checkout (pip install -e .)")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def load_config(overrides: list[str]) -> MedrecConfig:
    """The validated config for `key=value` overrides; a bad value raises naming its key."""
    tree = compose(overrides)
    tree.pop("local", None)
    return MedrecConfig.model_validate(tree)


def expand(path: str) -> Path:
    return Path(os.path.expanduser(path)).resolve()
