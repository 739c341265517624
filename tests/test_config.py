"""Every config group option composes, validates and builds every stage; bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from pydantic import ValidationError

from pipeline.config import CONF_DIR, MedrecConfig, expand, load_config
from pipeline.graph import gpu_plan, stage_factories
from pipeline.stages.base import Stage

GROUPS = ("ocr", "extract", "terminology", "resources", "writer")
STAGE_ORDER = ["render", "ocr", "classify", "extract", "code", "validate"]
# LLM backends: the first code stage's candidates for the lexicon's mentions go into the prompt.
LLM_STAGE_ORDER = ["render", "ocr", "classify", "extract", "code", "extract_llm", "code", "validate"]


def group_options() -> list[str]:
    """`group=option` for every yaml file in each config group folder."""
    return [f"{group}={path.stem}" for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def test_every_group_has_an_option() -> None:
    assert {option.split("=")[0] for option in group_options()} == set(GROUPS)


def runnable(override: str, tmp_path: Path) -> list[str]:
    """`override` plus what the vLLM option needs to build: a staged model and the plan's sizes."""
    if override != "extract=vllm":
        return [override]
    (tmp_path / "config.json").write_text("{}")
    return [override, f"extract.model_path={tmp_path}", "extract.tensor_parallel_size=1",
            "extract.gpu_memory_utilization=0.9", "extract.max_num_seqs=64", "extract.replicas=1"]


@pytest.mark.parametrize("override", group_options())
def test_each_group_option_composes_and_builds_every_stage(override: str, tmp_path: Path) -> None:
    cfg = load_config(runnable(override, tmp_path))

    stages = [factory() for factory in stage_factories(cfg)]

    assert isinstance(cfg, MedrecConfig)
    assert all(isinstance(stage, Stage) for stage in stages)
    assert [stage.name for stage in stages] == (STAGE_ORDER if cfg.extract.backend == "lexicon" else LLM_STAGE_ORDER)
    by_name = {stage.name: stage for stage in stages}
    assert by_name["render"].dpi == cfg.render.dpi
    assert by_name["ocr"].model_dir == str(expand(cfg.ocr.model_dir))
    plan = gpu_plan(cfg)  # a GPU profile sizes the OCR pool from VRAM arithmetic
    assert by_name["ocr"].resources.concurrency == (plan.ocr_actors if plan else cfg.resources.ocr.actors)
    assert by_name["extract"].index_path == by_name["code"].index_path == str(expand(cfg.terminology.index_path))
    assert (by_name["code"].top_k, by_name["code"].min_score) == (cfg.code.top_k, cfg.code.min_score)
    assert by_name["validate"].config.min_confidence == cfg.validate_rules.min_confidence
    # Nothing heavy is loaded before setup.
    assert by_name["code"].index is None and by_name["extract"].extractor is None


def test_the_shared_terminology_option_reads_the_shared_extracts() -> None:
    cfg = load_config(["terminology=shared", "terminology.shared_dir=/data/shared"])

    # The bundled tabular XML stays: it brings the inclusion terms the order-file TSV lacks.
    assert cfg.terminology.sources.icd10cm_xml == "bundled"
    assert cfg.terminology.sources.icd10cm_tsv == "/data/shared/terminology/icd10cm_2026.tsv.gz"
    assert cfg.terminology.sources.loinc_table == "/data/shared/terminology/loinc_core.tsv.gz"


def test_overrides_reach_the_stages(tmp_path: Path) -> None:
    cfg = load_config(["render.dpi=200", "code.top_k=3", "validate.today=2025-06-01",
                       f"terminology.index_path={tmp_path / 'index'}"])

    render, *_, code, validate = [factory() for factory in stage_factories(cfg)]

    assert render.dpi == 200
    assert code.top_k == 3 and code.index_path == str(tmp_path / "index")
    assert validate.config.today == "2025-06-01"


@pytest.mark.parametrize(
    "override, key",
    [
        ("render.dpi=5", ("render", "dpi")),
        ("resources.ocr.actors=0", ("resources", "ocr", "actors")),
        ("code.min_score=1.5", ("code", "min_score")),
        ("+foo=1", ("foo",)),
        ("+render.colour=1", ("render", "colour")),
    ],
)
def test_bad_value_raises_naming_the_key(override: str, key: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        load_config([override])

    assert [error["loc"] for error in raised.value.errors()] == [key]
    assert ".".join(key) in str(raised.value)


def test_unknown_key_without_plus_is_refused_by_hydra() -> None:
    with pytest.raises(ConfigCompositionException, match="foo"):
        load_config(["foo=1"])


def test_the_gpu_ocr_backend_needs_its_model_dirs_and_a_vram_budget() -> None:
    with pytest.raises(ValidationError, match=r"needs \['det_model_dir'\]"):
        load_config(["ocr=paddle_gpu", "ocr.det_model_dir=null"])
    with pytest.raises(ValidationError, match="gpu_memory_gb_per_actor > 0"):
        load_config(["ocr=paddle_gpu", "ocr.gpu_memory_gb_per_actor=0"])


def test_openvino_is_a_cpu_runtime_of_the_onnx_backend_and_bf16_needs_it() -> None:
    with pytest.raises(ValidationError, match="openvino runs the paddle_onnx backend on device cpu"):
        load_config(["ocr=onnx_gpu", "+ocr.runtime=openvino"])
    with pytest.raises(ValidationError, match="bf16 needs runtime openvino"):
        load_config(["ocr=paddle_onnx", "ocr.runtime=onnxruntime"])
    with pytest.raises(ValidationError, match="int8 needs runtime onnxruntime"):
        load_config(["ocr=paddle_onnx", "ocr.precision=int8"])


def test_the_latin_head_is_the_default_and_the_engine_before_keeps_every_character() -> None:
    assert load_config([]).ocr.rec_charset == "latin"
    assert load_config(["ocr=paddle_onnx_ort"]).ocr.rec_charset == "all"
    assert load_config(["ocr=paddle_onnx_all_scripts"]).ocr.rec_charset == "all"
    with pytest.raises(ValidationError, match="rec_charset other than 'all' needs backend paddle_onnx"):
        load_config(["ocr=paddle_gpu", "+ocr.rec_charset=latin"])


def test_the_vllm_option_takes_its_pool_from_the_plan_values(tmp_path: Path) -> None:
    cfg = load_config(runnable("extract=vllm", tmp_path) + ["extract.tensor_parallel_size=2", "extract.replicas=3"])

    llm = next(factory() for factory in stage_factories(cfg) if factory().name == "extract_llm")

    assert (llm.resources.num_gpus, llm.resources.concurrency) == (2.0, 3)
    assert cfg.extract.architecture.num_kv_heads == 8 and cfg.extract.weights_gb == 15.3
    assert llm.engine is None  # nothing is loaded before setup


def test_the_vllm_option_refuses_to_build_without_the_plan_or_the_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="extract.tensor_parallel_size, extract.gpu_memory_utilization, "
                                         "extract.max_num_seqs are null"):
        stage_factories(load_config(["extract=vllm", f"extract.model_path={tmp_path}"]))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        stage_factories(load_config(["extract=vllm", f"extract.model_path={tmp_path / 'absent'}"]))


@pytest.mark.parametrize("override, key", [
    ("extract.gpu_memory_utilization=1.5", ("extract", "vllm", "gpu_memory_utilization")),
    ("extract.kv_cache_dtype=int3", ("extract", "vllm", "kv_cache_dtype")),
])
def test_bad_vllm_values_name_their_key(override: str, key: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        load_config(["extract=vllm", override])

    assert [error["loc"] for error in raised.value.errors()] == [key]


def test_on_a_gpu_profile_the_vllm_sizes_left_null_come_from_the_plan(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    cfg = load_config(["extract=vllm", f"extract.model_path={tmp_path}", "resources=gpu_node",
                       "extract.max_num_seqs=32"])
    planned = gpu_plan(cfg).llm

    llm = next(factory() for factory in stage_factories(cfg) if factory().name == "extract_llm")
    engine_kwargs = llm.engine_factory.args[0]

    assert llm.resources.concurrency == planned.replicas == 8  # one engine per H100 of the node
    assert llm.resources.num_gpus == planned.tensor_parallel_size * planned.gpus_per_worker
    assert engine_kwargs["gpu_memory_utilization"] == planned.gpu_memory_utilization
    assert engine_kwargs["max_num_seqs"] == 32  # a size set in the config wins over the plan


def test_a_gpu_profile_selects_gpu_ocr_unless_the_command_line_says_otherwise() -> None:
    assert load_config(["resources=gpu_24gb"]).ocr.backend == "paddle"
    assert load_config(["resources=gpu_24gb", "ocr=paddle_onnx"]).ocr.backend == "paddle_onnx"
    assert load_config([]).ocr.backend == "paddle_onnx"
