"""The ONNX Runtime OCR engine option: CUDA settings from the plan's budget, and its code path on CPU."""

from __future__ import annotations

import pytest

from pipeline.config import expand, load_config
from pipeline.graph import gpu_plan, stage_factories
from pipeline.ocr_models import ensure_ocr_model_dirs
from pipeline.ocr_onnx import CPU_PROVIDER, CUDA_PROVIDER, onnx_engine_kwargs, require_provider
from pipeline.schemas import page_rows_to_table
from pipeline.stages.ocr import OcrStage
from tests.stages.test_ocr import PAGE_LINES, draw_page, page_row, squash

GIB = 1024**3


def test_a_card_gets_the_cuda_provider_with_arenas_inside_the_plans_budget() -> None:
    kwargs = onnx_engine_kwargs("gpu:1", cpu_threads=2, gpu_memory_gb=1.5)

    config = kwargs["engine_config"]
    assert kwargs["device"] == "gpu:1"
    assert config["providers"] == [CUDA_PROVIDER, CPU_PROVIDER]
    # 1.5 GiB less 0.5 GiB of CUDA context, split between the detection and recognition sessions.
    assert config["provider_options"][0] == {"device_id": 1, "gpu_mem_limit": GIB // 2,
                                             "arena_extend_strategy": "kSameAsRequested"}
    assert config["intra_op_num_threads"] == 2


def test_cpu_gets_the_cpu_provider_and_bad_settings_are_refused() -> None:
    assert onnx_engine_kwargs("cpu", cpu_threads=1)["engine_config"]["providers"] == [CPU_PROVIDER]
    with pytest.raises(ValueError, match="'cpu' or 'gpu"):
        onnx_engine_kwargs("cuda:0", cpu_threads=1)
    with pytest.raises(ValueError, match="above 0.5 GiB"):
        onnx_engine_kwargs("gpu:0", cpu_threads=1, gpu_memory_gb=0.25)


def test_a_card_without_onnxruntime_gpu_is_a_clear_start_up_error(tmp_path) -> None:
    import onnxruntime

    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    dirs = ensure_ocr_model_dirs(tmp_path)

    with pytest.raises(RuntimeError, match="install onnxruntime-gpu in place of onnxruntime"):
        require_provider(dirs.det_model_dir / "inference.onnx", onnx_engine_kwargs("gpu:0", 1, 1.5))


def test_the_gpu_option_plans_ocr_on_the_cards_with_its_budget() -> None:
    cfg = load_config(["resources=gpu_node", "ocr=onnx_gpu"])

    ocr = [factory() for factory in stage_factories(cfg)][1]

    assert (ocr.backend, ocr.device, ocr.gpu_memory_gb, ocr.rec_batch_size) == ("paddle_onnx", "gpu:0", 1.5, 32)
    assert ocr.resources.num_gpus == gpu_plan(cfg).ocr_gpus_per_actor > 0


def test_the_engine_path_reads_a_batch_of_pages_with_the_cpu_provider(tmp_path) -> None:
    # The GPU option's settings (batched recognition, explicit providers) with the CPU provider.
    cfg = load_config(["ocr=onnx_gpu"]).ocr
    stage = OcrStage(model_dir=str(tmp_path), device="cpu", rec_batch_size=cfg.rec_batch_size,
                     det_limit_side_len=cfg.det_limit_side_len)
    pages = [page_row(i, image=draw_page(PAGE_LINES[i:] + PAGE_LINES[:i]), text_source=None) for i in range(2)]

    rows = stage.process_batch(page_rows_to_table(pages)).to_pylist()

    for row in rows:
        assert row["error_stage"] is None
        recognised = squash(" ".join(line["text"] for line in row["lines"]))
        assert all(squash(line) in recognised for line in PAGE_LINES)
    assert stage.counters["pages_ocr"] == 2


@pytest.mark.gpu
def test_the_cuda_provider_reads_a_page_on_the_card(tmp_path) -> None:
    cfg = load_config(["ocr=onnx_gpu"]).ocr
    stage = OcrStage(model_dir=str(expand(cfg.model_dir)), device=cfg.device, rec_batch_size=cfg.rec_batch_size,
                     gpu_memory_gb=cfg.gpu_memory_gb_per_actor)

    (row,) = stage.process_batch(page_rows_to_table([page_row(0, image=draw_page(PAGE_LINES),
                                                              text_source=None)])).to_pylist()

    assert squash(PAGE_LINES[0]) in squash(" ".join(line["text"] for line in row["lines"]))
