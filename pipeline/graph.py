"""The one place the graph is composed: manifest -> render -> ocr -> classify -> extract -> code -> validate."""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from pipeline.manifest_source import ManifestDatasource, manifest_blocks
from pipeline.config import ExtractConfig, MedrecConfig, OcrConfig, PoolConfig, VllmExtractConfig, expand
from pipeline.llm.engines import OpenAIEngine, VllmEngine, require_local_model, vllm_engine_kwargs, vllm_sampling_kwargs
from pipeline.llm.parse import MergeSettings
from pipeline.ocr_models import OcrModelDirs
from pipeline.placement import GpuLayout, Placement, SlotAssigner, layout_for_plan, reserve
from pipeline.plan import Plan, llm_spec_for, plan_for_config
from pipeline.ray_adapter import LedgerClient, StageBefore, apply_stage, apply_stages
from pipeline.stages.base import Resources, Stage
from pipeline.stages.classify import ClassifyStage
from pipeline.stages.code import CodeStage
from pipeline.stages.extract import LexiconExtractStage
from pipeline.stages.extract_llm import LlmExtractStage
from pipeline.stages.ocr import OcrStage
from pipeline.stages.render import RenderStage
from pipeline.stages.validate import ValidateStage
from pipeline.store import Fingerprints
from pipeline.store_writes import commit_ocr_batch, commit_page_batch, read_stored_ocr


def staged_ocr_dirs(ocr: OcrConfig) -> OcrModelDirs | None:
    """The paddle backend's official model dirs as the config names them; None for the embedded backend."""
    if ocr.backend != "paddle":
        return None
    return OcrModelDirs(ocr.det_model_name, expand(ocr.det_model_dir), ocr.rec_model_name, expand(ocr.rec_model_dir))


def ocr_runtime_kwargs(ocr: OcrConfig) -> dict:
    """The embedded backend's runtime and session settings as OcrStage arguments."""
    return dict(runtime=ocr.runtime, precision=ocr.precision, rec_width_step=ocr.rec_width_step,
                rec_charset=ocr.rec_charset,
                graph_optimization_level=ocr.graph_optimization_level,
                enable_cpu_mem_arena=ocr.enable_cpu_mem_arena, execution_mode=ocr.execution_mode)


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
                         concurrency=p.actors, memory_mb=p.memory_mb, nice=p.nice)

    index_path = str(expand(cfg.terminology.index_path))
    coder = partial(CodeStage, index_path=index_path, top_k=cfg.code.top_k, min_score=cfg.code.min_score,
                    resources=pool(res.code))
    return [
        partial(RenderStage, dpi=cfg.render.dpi, max_side_px=cfg.render.max_side_px,
                max_file_bytes=cfg.render.max_file_bytes, min_text_layer_chars=cfg.render.min_text_layer_chars,
                max_image_pixels=cfg.render.max_image_pixels, resources=tasks),
        partial(OcrStage, model_dir=str(expand(cfg.ocr.model_dir)), cpu_threads=res.ocr.threads,
                source_dir=str(expand(cfg.ocr.source_dir)) if cfg.ocr.source_dir else None,
                det_limit_side_len=cfg.ocr.det_limit_side_len, backend=cfg.ocr.backend, device=cfg.ocr.device,
                staged_dirs=staged_ocr_dirs(cfg.ocr), recycle_after_pages=cfg.ocr.recycle_after_pages,
                rec_batch_size=cfg.ocr.rec_batch_size, gpu_memory_gb=cfg.ocr.gpu_memory_gb_per_actor,
                engine_build_slots=res.ocr_engine_builds,
                **ocr_runtime_kwargs(cfg.ocr), resources=ocr_resources(cfg, gpu_plan(cfg))),
        partial(ClassifyStage, resources=pool(res.classify)),
        partial(LexiconExtractStage, index_path=index_path, resources=pool(res.extract)),
        *llm_extract_factories(cfg, coder),
        coder,
        partial(ValidateStage, config=cfg.validate_rules, resources=pool(res.validate_pool)),
    ]


def llm_extract_factories(cfg: MedrecConfig, coder: Callable[[], Stage]) -> list[Callable[[], Stage]]:
    """With an LLM backend: the code stage (its candidates for the lexicon's mentions become the
    page's candidate list) and the LLM stage; nothing with the lexicon backend."""
    extract = cfg.extract
    if isinstance(extract, ExtractConfig):
        return []
    merge = MergeSettings(llm_confidence=extract.llm_confidence, llm_only_confidence=extract.llm_only_confidence)
    replicas = extract.replicas
    if isinstance(extract, VllmExtractConfig):
        require_local_model(extract.model_path)  # fail on the driver, before any actor starts
        plan = gpu_plan(cfg)
        sizes = vllm_sizes(extract, plan)
        engine_kwargs = vllm_engine_kwargs(
            str(expand(extract.model_path)), extract.model_name, extract.max_model_len, extract.dtype,
            extract.kv_cache_dtype, sizes["tensor_parallel_size"], sizes["gpu_memory_utilization"],
            sizes["max_num_seqs"], placed=plan is not None)
        replicas = sizes["replicas"]
        if replicas is None:
            raise ValueError("extract.replicas is null: run `medrec plan` and pass its engine count")
        engine = partial(VllmEngine, engine_kwargs, vllm_sampling_kwargs(extract.max_output_tokens))
        gpus = engine_actor_gpus(sizes["tensor_parallel_size"], sizes["gpus_per_worker"], placed=plan is not None)
    else:
        engine = partial(OpenAIEngine, extract.base_url, extract.model_name, extract.max_output_tokens,
                         timeout_s=extract.timeout_s, max_retries=extract.max_retries, backoff_s=extract.backoff_s,
                         concurrency=extract.concurrency, api_key_env=extract.api_key_env,
                         extra_body=extract.extra_body)
        gpus = 0.0
    resources = Resources(num_cpus=extract.cpus_per_replica, num_gpus=gpus, batch_size=extract.batch_size,
                          concurrency=replicas)
    return [coder, partial(LlmExtractStage, engine_factory=engine, merge=merge, resources=resources)]


def engine_actor_gpus(tensor_parallel_size: int, gpus_per_worker: float, placed: bool) -> float:
    """The Ray GPU request of one engine actor. Ray refuses fractions above 1, so a
    tensor-parallel engine takes whole cards: unplanned, the actor holds them all; placed on
    the plan's shared cards, the actor holds none and vLLM's Ray workers take the plan's share
    of one card each (`pipeline.placement`)."""
    if tensor_parallel_size == 1:
        return gpus_per_worker
    return 0.0 if placed else float(tensor_parallel_size)


def vllm_sizes(extract: VllmExtractConfig, plan: Plan | None) -> dict:
    """The engine sizes: each one set in the extract config wins, a null one comes from the GPU plan."""
    planned = plan.llm if plan is not None else None
    sizes = {}
    for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "replicas"):
        configured = getattr(extract, key)
        sizes[key] = configured if configured is not None or planned is None else getattr(planned, key)
    # A planned engine shares its cards with OCR actors, so it asks Ray for its planned share of
    # each GPU; an engine sized by hand takes whole GPUs.
    sizes["gpus_per_worker"] = planned.gpus_per_worker if planned is not None else 1.0
    return sizes


def _pools_and_ledger(cfg: MedrecConfig) -> tuple[Mapping[str, SlotAssigner], LedgerClient]:
    """The GPU plan's placed pools (none on a CPU profile) and the run's one attempts ledger
    (pages that kill workers), which every stage of the graph shares."""
    placement = place_gpu_pools(cfg)
    return (placement.assigners if placement is not None else {}), LedgerClient.create(cfg.faults.max_worker_deaths)


def gpu_layout(cfg: MedrecConfig) -> GpuLayout | None:
    """The GPU plan as members per card; None on a CPU profile or when nothing runs on the GPUs."""
    plan = gpu_plan(cfg)
    if plan is None:
        return None
    return layout_for_plan(plan, llm_cpus=cfg.extract.cpus_per_replica if plan.llm else 1.0,
                           ocr_memory_mb=cfg.resources.ocr.memory_mb)


def place_gpu_pools(cfg: MedrecConfig) -> Placement | None:
    """Reserve the cards of the GPU plan on the running Ray cluster (one bundle per card)."""
    layout = gpu_layout(cfg)
    return reserve(layout) if layout is not None else None


OCR_STAGES = 2  # render and ocr lead `stage_factories`; their output is stored and reused
# CPU stages after OCR that hold a small model or none: run together in one actor pool
# (`resources.fuse_light_stages`). An LLM stage between them keeps its own pool.
LIGHT_STAGES = ("classify", "extract", "code", "validate")


def stage_groups(factories: list[Callable[[], Stage]], fuse: bool) -> list[list[Callable[[], Stage]]]:
    """The stages in graph order, consecutive light stages in one group when `fuse`, each
    other stage alone."""
    groups: list[list[Callable[[], Stage]]] = []
    previous_light = False
    for factory in factories:
        light = fuse and factory().name in LIGHT_STAGES
        if light and previous_light:
            groups[-1].append(factory)
        else:
            groups.append([factory])
        previous_light = light
    return groups


def store_graph_steps(cfg: MedrecConfig, ocr: bool) -> tuple[list[Callable[[], Stage]], list[list[Callable[[], Stage]]]]:
    """The stages a store run applies: (render and OCR, only when some page needs OCR; the
    groups after OCR, light stages fused into one pool when configured). A re-run on stored
    OCR output starts no render task and no OCR actor."""
    factories = stage_factories(cfg)
    return (factories[:OCR_STAGES] if ocr else []), stage_groups(factories[OCR_STAGES:],
                                                                  cfg.resources.fuse_light_stages)


def light_actors_without_ocr(cfg: MedrecConfig) -> int:
    """The light pool's width on a run with no page to OCR: configured, or the cluster's CPUs."""
    return cfg.resources.light_actors_without_ocr or max(1, int(ray.cluster_resources().get("CPU", 1)))


def build_store_graph(cfg: MedrecConfig, output: str, fp: Fingerprints, to_ocr: str | None,
                      ocr_stored: pa.Table) -> ray.data.Dataset:
    """The graph of a store run: pages to OCR (render, OCR, committed to the store) and pages
    whose OCR is stored, then extraction onward, each batch committed by the worker that
    validated it. Yields one small summary row per committed batch."""
    ocr_steps, groups = store_graph_steps(cfg, ocr=to_ocr is not None)
    placed, ledger = _pools_and_ledger(cfg)
    tasks = dict(batch_format="pyarrow", num_cpus=cfg.resources.tasks.cpus, zero_copy_batch=True)
    # The worker that ran OCR commits each block it produced (so a kill redoes at most those),
    # and the one that validated a batch commits its results.
    commit_ocr = partial(commit_ocr_batch, output=output, fp=fp)
    commit_pages = partial(commit_page_batch, output=output, fp=fp)
    read_stored = partial(read_stored_ocr, output=output)
    # With no page to OCR, the first stage after OCR reads the stored OCR output itself: no task
    # workers start beside its pool, each importing the package (issue 12). Beside pages being
    # OCR-ed the read stays a task, so the pool receives page rows only.
    before = read_stored if to_ocr is None else None
    # Stored OCR rows enter as blocks whose metadata the driver computes (`from_blocks`):
    # `from_arrow` computes it in remote tasks, which on a fresh cluster waited about 2 s for a
    # task worker before the graph could start (issue 12).
    sources = []
    if to_ocr is not None:
        # Blocks of the OCR batch size, each OCR actor's first one of one page: render and OCR
        # take a block as their batch, so OCR's first output waits for one page, not a batch.
        ocr_pool = ocr_steps[-1]().resources
        blocks = dict(rows_per_block=ocr_pool.batch_size, one_page_blocks=ocr_pool.concurrency or 1)
        if cfg.resources.render_in_ocr_pool:
            render, ocr = ocr_steps
            dataset = apply_stage(ray.data.from_blocks(manifest_blocks(pq.read_table(to_ocr), **blocks)), ocr, placed,
                                  ledger, then=commit_ocr, before=StageBefore(render, ledger), blocks_as_batches=True)
        else:
            dataset = ray.data.read_datasource(ManifestDatasource(to_ocr, **blocks), num_cpus=cfg.resources.tasks.cpus)
            for number, factory in enumerate(ocr_steps, 1):
                dataset = apply_stage(dataset, factory, placed, ledger,
                                      then=commit_ocr if number == len(ocr_steps) else None, blocks_as_batches=True)
        sources.append(dataset)
        if ocr_stored.num_rows:
            sources.append(ray.data.from_blocks([ocr_stored]).map_batches(
                read_stored, batch_size=cfg.resources.tasks.batch_size, **tasks))
    else:
        # A block per batch of the pool, so a pool of several actors shares the pages.
        rows = groups[0][0]().resources.batch_size
        sources.append(ray.data.from_blocks([ocr_stored.slice(start, rows)
                                             for start in range(0, ocr_stored.num_rows, rows)]))
    dataset = sources[0] if len(sources) == 1 else sources[0].union(*sources[1:])
    for number, group in enumerate(groups, 1):
        then = commit_pages if number == len(groups) else None
        first = before if number == 1 else None
        if len(group) == 1:
            dataset = apply_stage(dataset, group[0], placed, ledger, then=then, before=first)
        else:
            # `resources.light_setup`: the light pool loads on its first page or when it starts.
            dataset = apply_stages(dataset, group, ledger, then=then, before=first,
                                   defer_setup=to_ocr is not None and cfg.resources.light_setup == "first_batch",
                                   actors=None if to_ocr is not None else light_actors_without_ocr(cfg))
    return dataset
