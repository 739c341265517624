"""The one place the graph is composed: manifest -> render -> ocr -> classify -> extract -> code -> validate."""

from __future__ import annotations

from functools import partial
from typing import Callable

import ray.data

from pipeline.manifest_source import ManifestDatasource
from pipeline.config import MedrecConfig, OcrConfig, PoolConfig, expand
from pipeline.ocr_models import OcrModelDirs
from pipeline.plan import Plan, llm_spec_for, plan_for_config
from pipeline.ray_adapter import apply_stage
from pipeline.stages.base import Resources, Stage
from pipeline.stages.classify import ClassifyStage
from pipeline.stages.code import CodeStage
from pipeline.stages.extract import LexiconExtractStage
from pipeline.stages.ocr import OcrStage
from pipeline.stages.render import RenderStage
from pipeline.stages.validate import ValidateStage, ValidationConfig


def staged_ocr_dirs(ocr: OcrConfig) -> OcrModelDirs | None:
    """The paddle backend's official model dirs as the config names them; None for the embedded backend."""
    if ocr.backend != "paddle":
        return None
    return OcrModelDirs(ocr.det_model_name, expand(ocr.det_model_dir), ocr.rec_model_name, expand(ocr.rec_model_dir))


def gpu_plan(cfg: MedrecConfig) -> Plan | None:
    """The VRAM plan when the resources profile describes GPUs; None on a CPU profile."""
    return plan_for_config(cfg, llm_spec_for(cfg)) if cfg.resources.gpu else None


def ocr_resources(cfg: MedrecConfig, plan: Plan | None) -> Resources:
    """The OCR pool: from the profile on CPU, from the plan on a GPU profile."""
    p = cfg.resources.ocr
    if plan is None:
        return Resources(num_cpus=p.cpus_per_actor, num_gpus=p.gpus_per_actor, batch_size=p.batch_size,
                         concurrency=p.actors, memory_mb=p.memory_mb)
    return Resources(num_cpus=plan.cpus_per_ocr_actor, num_gpus=plan.ocr_gpus_per_actor, batch_size=p.batch_size,
                     concurrency=plan.ocr_actors, memory_mb=p.memory_mb)


def stage_factories(cfg: MedrecConfig) -> list[Callable[[], Stage]]:
    """Each stage as a zero-argument factory, in graph order; Ray builds one per worker."""
    res = cfg.resources
    tasks = Resources(num_cpus=res.tasks.cpus, batch_size=res.tasks.batch_size)

    def pool(p: PoolConfig) -> Resources:
        return Resources(num_cpus=p.cpus_per_actor, num_gpus=p.gpus_per_actor, batch_size=p.batch_size,
                         concurrency=p.actors, memory_mb=p.memory_mb)

    index_path = str(expand(cfg.terminology.index_path))
    return [
        partial(RenderStage, dpi=cfg.render.dpi, max_side_px=cfg.render.max_side_px,
                max_file_bytes=cfg.render.max_file_bytes, min_text_layer_chars=cfg.render.min_text_layer_chars,
                resources=tasks),
        partial(OcrStage, model_dir=str(expand(cfg.ocr.model_dir)), cpu_threads=res.ocr.threads,
                det_limit_side_len=cfg.ocr.det_limit_side_len, backend=cfg.ocr.backend, device=cfg.ocr.device,
                staged_dirs=staged_ocr_dirs(cfg.ocr), recycle_after_pages=cfg.ocr.recycle_after_pages,
                rec_batch_size=cfg.ocr.rec_batch_size if cfg.ocr.backend == "paddle" else None,
                resources=ocr_resources(cfg, gpu_plan(cfg))),
        partial(ClassifyStage, resources=pool(res.classify)),
        partial(LexiconExtractStage, index_path=index_path, resources=pool(res.extract)),
        partial(CodeStage, index_path=index_path, top_k=cfg.code.top_k, min_score=cfg.code.min_score,
                resources=pool(res.code)),
        partial(ValidateStage, config=ValidationConfig(**cfg.validate_rules.model_dump()), resources=pool(res.validate_pool)),
    ]


def build_graph(cfg: MedrecConfig, manifest_path: str) -> ray.data.Dataset:
    """The lazy dataset of validated page rows; nothing runs until it is consumed."""
    # Blocks of one OCR batch let every OCR actor start on its own pages at once.
    source = ManifestDatasource(manifest_path, rows_per_block=cfg.resources.ocr.batch_size)
    dataset = ray.data.read_datasource(source, num_cpus=cfg.resources.tasks.cpus)
    for factory in stage_factories(cfg):
        dataset = apply_stage(dataset, factory)
    return dataset
