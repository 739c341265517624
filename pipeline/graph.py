"""The one place the graph is composed: manifest -> render -> ocr -> classify -> extract -> code -> validate."""

from __future__ import annotations

from functools import partial
from typing import Callable

import ray.data

from pipeline.manifest_source import ManifestDatasource
from pipeline.config import MedrecConfig, PoolConfig, expand
from pipeline.ray_adapter import apply_stage
from pipeline.stages.base import Resources, Stage
from pipeline.stages.classify import ClassifyStage
from pipeline.stages.code import CodeStage
from pipeline.stages.extract import LexiconExtractStage
from pipeline.stages.ocr import OcrStage
from pipeline.stages.render import RenderStage
from pipeline.stages.validate import ValidateStage


def stage_factories(cfg: MedrecConfig) -> list[Callable[[], Stage]]:
    """Each stage as a zero-argument factory, in graph order; Ray builds one per worker."""
    res = cfg.resources
    tasks = Resources(num_cpus=res.tasks.cpus, batch_size=res.tasks.batch_size)

    def pool(p: PoolConfig) -> Resources:
        return Resources(num_cpus=p.cpus_per_actor, batch_size=p.batch_size, concurrency=p.actors,
                         memory_mb=p.memory_mb)

    index_path = str(expand(cfg.terminology.index_path))
    return [
        partial(RenderStage, dpi=cfg.render.dpi, max_side_px=cfg.render.max_side_px,
                max_file_bytes=cfg.render.max_file_bytes, min_text_layer_chars=cfg.render.min_text_layer_chars,
                resources=tasks),
        partial(OcrStage, model_dir=str(expand(cfg.ocr.model_dir)), cpu_threads=res.ocr.threads,
                det_limit_side_len=cfg.ocr.det_limit_side_len,
                resources=pool(res.ocr)),
        partial(ClassifyStage, resources=pool(res.classify)),
        partial(LexiconExtractStage, index_path=index_path, resources=pool(res.extract)),
        partial(CodeStage, index_path=index_path, top_k=cfg.code.top_k, min_score=cfg.code.min_score,
                resources=pool(res.code)),
        partial(ValidateStage, config=cfg.validate_rules, resources=pool(res.validate_pool)),
    ]


def build_graph(cfg: MedrecConfig, manifest_path: str) -> ray.data.Dataset:
    """The lazy dataset of validated page rows; nothing runs until it is consumed."""
    # Blocks of one OCR batch let every OCR actor start on its own pages at once.
    source = ManifestDatasource(manifest_path, rows_per_block=cfg.resources.ocr.batch_size)
    dataset = ray.data.read_datasource(source, num_cpus=cfg.resources.tasks.cpus)
    for factory in stage_factories(cfg):
        dataset = apply_stage(dataset, factory)
    return dataset
