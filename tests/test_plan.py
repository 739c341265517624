"""The VRAM plan against hand-checked arithmetic, and `medrec plan` for every GPU profile."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace

import pytest

from pipeline.cli import main
from pipeline.config import CONF_DIR, GpuConfig, load_config
from pipeline.graph import gpu_plan, stage_factories
from pipeline.plan import DEFAULT_LLM_MODEL_FILE, LlmModelSpec, OcrDemand, make_plan, parse_gpu_query, parse_mig_slices
from pipeline.plan import plannable_gpus, profile_from_detected

QWEN3_8B = {  # Qwen/Qwen3-8B config.json: 36 layers, 8 KV heads, head_dim 128; bf16 weights 15.3 GiB
    "backend": "vllm", "model_path": "/models/Qwen3-8B", "model_name": "Qwen3-8B",
    "max_model_len": 8192, "max_output_tokens": 1024, "dtype": "bfloat16", "kv_cache_dtype": "auto",
    "weights_gb": 15.3, "architecture": {"num_layers": 36, "num_kv_heads": 8, "head_dim": 128},
    "tensor_parallel_size": None, "gpu_memory_utilization": None, "max_num_seqs": None, "replicas": None,
}
LLAMA_70B = {  # Llama-3.1-70B shape: 80 layers, 8 KV heads, head_dim 128; 70.6e9 x 2 bytes = 131.4 GiB
    **QWEN3_8B, "model_name": "Llama-70B", "weights_gb": 131.4,
    "architecture": {"num_layers": 80, "num_kv_heads": 8, "head_dim": 128},
}
OCR_ON_GPU = OcrDemand(gpu_memory_gb=2.0, cpus=2.0)
GPU_PROFILES = ("gpu_24gb", "gpu_48gb", "gpu_96gb", "gpu_node")


def card(memory_gb: float, per_node: int, cpus: int) -> GpuConfig:
    # reserve 1 GiB per card, 2 GiB LLM overhead per card, <= 4 OCR actors, <= 30 % of a card for OCR.
    return GpuConfig(name="test", memory_gb=memory_gb, per_node=per_node, cpus_per_node=cpus)


def test_extract_config_keys_make_the_spec_and_the_kv_bytes() -> None:
    spec = LlmModelSpec.from_extract_config(QWEN3_8B)

    # 2 (K, V) x 36 layers x 8 KV heads x 128 head_dim x 2 bytes (bf16) = 147,456 bytes per token;
    # x 8192 tokens = 1,207,959,552 bytes = 1.125 GiB per full-context sequence.
    assert spec.kv_bytes_per_token == 147_456
    assert spec.kv_bytes_per_sequence == 1_207_959_552
    assert spec.tensor_parallel_size is None and spec.max_num_seqs is None
    # An fp8 cache stores 1 byte per element: half the bytes.
    assert LlmModelSpec.from_extract_config({**QWEN3_8B, "kv_cache_dtype": "fp8"}).kv_bytes_per_token == 73_728


def test_the_shipped_model_file_reads_as_the_same_spec() -> None:
    shipped = LlmModelSpec.from_file(DEFAULT_LLM_MODEL_FILE)

    assert (shipped.num_layers, shipped.num_kv_heads, shipped.head_dim) == (36, 8, 128)
    assert shipped.kv_bytes_per_token == 147_456 and shipped.weights_gb == 15.3


def test_one_24gb_card_leaves_the_llm_three_sequences() -> None:
    plan = make_plan(card(24, 1, 16), OCR_ON_GPU, LlmModelSpec.from_extract_config(QWEN3_8B), other_cpus=6)

    # Usable 24 - 1 = 23 GiB. TP 1: weights 15.3 + one sequence 1.125 + overhead 2 = 18.4 <= 23 - 2 (one OCR actor).
    # OCR actors: room left for 16 sequences is 23 - (15.3 + 18 + 2) < 0, so the floor of one actor.
    # utilization = floor((24 - 1 - 2) / 24, 2 places) = floor(0.875) = 0.87;
    # KV = 0.87 x 24 - 2 - 15.3 = 3.58 GiB -> floor(3.58 / 1.125) = 3 sequences.
    assert plan.ocr_actors_per_gpu == 1 and plan.ocr_actors == 1
    assert plan.ocr_gpus_per_actor == 0.09  # ceil(2 / 24 = 0.0833, 2 places)
    assert plan.llm.tensor_parallel_size == 1 and plan.llm.replicas == 1
    assert plan.llm.gpu_memory_utilization == 0.87
    assert plan.llm.kv_cache_gb_per_replica == pytest.approx(3.58)
    assert plan.llm.max_num_seqs == 3
    assert plan.llm.gpus_per_worker == 0.91
    assert plan.bottleneck.startswith("llm kv cache")
    # CPUs: 6 other + 1 LLM + 1 OCR actor x 2 = 9.
    assert plan.cpus_needed_per_node == 9


def test_an_h100_node_runs_eight_replicas_and_four_ocr_actors_per_card() -> None:
    plan = make_plan(card(80, 8, 224), OCR_ON_GPU, LlmModelSpec.from_extract_config(QWEN3_8B), other_cpus=19)

    # OCR per card: limit 4; memory share floor(79 x 0.3 / 2) = 11; CPUs floor((224 - 19 - 8) / (8 x 2)) = 12;
    # LLM room floor((79 - (15.3 + 16 x 1.125 + 2)) / 2) = 21 -> 4 per card, 32 in all.
    # utilization floor((80 - 1 - 8) / 80 = 0.8875) = 0.88; KV = 0.88 x 80 - 2 - 15.3 = 53.1 GiB -> 47 sequences.
    assert (plan.ocr_actors_per_gpu, plan.ocr_actors, plan.ocr_gpus_per_actor) == (4, 32, 0.03)
    assert (plan.llm.tensor_parallel_size, plan.llm.replicas) == (1, 8)
    assert plan.llm.gpu_memory_utilization == 0.88
    assert plan.llm.max_num_seqs == 47
    assert plan.bottleneck.startswith("llm decode")
    assert plan.cpus_needed_per_node == 19 + 8 + 32 * 2


def test_a_70b_model_takes_tensor_parallel_two_on_h100s() -> None:
    plan = make_plan(card(80, 8, 224), OCR_ON_GPU, LlmModelSpec.from_extract_config(LLAMA_70B), other_cpus=19)

    # KV per sequence: 2 x 80 x 8 x 128 x 2 x 8192 = 2.5 GiB. TP 1 needs 131.4 + 2.5 + 2 = 135.9 > 77 GiB;
    # TP 2 needs (131.4 + 2.5) / 2 + 2 = 68.95 <= 77. OCR: LLM room for 16 sequences is negative -> 1 actor.
    # utilization floor((80 - 1 - 2) / 80 = 0.9625) = 0.96; KV = 2 x (0.96 x 80 - 2) - 131.4 = 18.2 GiB -> 7.
    assert plan.llm.tensor_parallel_size == 2 and plan.llm.replicas == 4
    assert plan.ocr_actors_per_gpu == 1
    assert plan.llm.gpu_memory_utilization == 0.96
    assert plan.llm.kv_cache_gb_per_replica == pytest.approx(18.2)
    assert plan.llm.max_num_seqs == 7


def test_few_cpus_make_the_cpu_the_bottleneck() -> None:
    plan = make_plan(card(48, 1, 8), OCR_ON_GPU, LlmModelSpec.from_extract_config(QWEN3_8B), other_cpus=2)

    # Free CPUs 8 - 2 - 1 (LLM) = 5 -> floor(5 / 2) = 2 OCR actors, below the limit 4 and the memory cap;
    # the LLM keeps floor((0.89 x 48 - 2 - 15.3) / 1.125) = 22 >= 16 sequences, so CPUs bind first.
    assert plan.ocr_actors_per_gpu == 2
    assert plan.llm.max_num_seqs == 22
    assert plan.bottleneck.startswith("cpu")


def test_configured_engine_settings_win_and_an_overfull_max_num_seqs_is_noted() -> None:
    spec = LlmModelSpec.from_extract_config({**QWEN3_8B, "tensor_parallel_size": 2, "max_num_seqs": 500,
                                             "gpu_memory_utilization": 0.8, "replicas": 3})

    plan = make_plan(card(80, 8, 224), OCR_ON_GPU, spec, other_cpus=19)

    assert (plan.llm.tensor_parallel_size, plan.llm.replicas, plan.llm.max_num_seqs) == (2, 3, 500)
    assert plan.llm.gpu_memory_utilization == 0.8
    assert any("max_num_seqs 500" in note for note in plan.notes)


def test_a_model_too_large_for_the_card_is_refused_with_its_numbers() -> None:
    with pytest.raises(ValueError, match="Llama-70B.*131.4 GiB.*does not fit 1 x 24"):
        make_plan(card(24, 1, 16), OCR_ON_GPU, LlmModelSpec.from_extract_config(LLAMA_70B), other_cpus=6)


def test_cpu_ocr_fills_the_free_cpus_and_asks_no_gpu() -> None:
    plan = make_plan(card(80, 8, 64), OcrDemand(gpu_memory_gb=0, cpus=2), None, other_cpus=4)

    assert plan.llm is None and plan.ocr_gpus_per_actor == 0
    assert plan.ocr_actors == 30  # (64 - 4) / 2


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_medrec_plan_prints_a_plan_for_each_profile(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", f"resources={profile}", "ocr=paddle_gpu"]) == 0

    out = capsys.readouterr().out
    cfg = load_config([f"resources={profile}", "ocr=paddle_gpu"])
    assert f"{cfg.resources.gpu.per_node} x {cfg.resources.gpu.name}" in out
    for label in ("ocr:", "actors per GPU", "tensor_parallel_size", "gpu_memory_utilization",
                  "bytes/token", "max_num_seqs", "bottleneck:"):
        assert label in out


def test_every_gpu_profile_exists_and_sizes_the_ocr_pool() -> None:
    assert {path.stem for path in (CONF_DIR / "resources").glob("gpu_*.yaml")} == set(GPU_PROFILES)
    cfg = load_config(["resources=gpu_node", "ocr=paddle_gpu"])
    plan = gpu_plan(cfg)

    ocr = [factory() for factory in stage_factories(cfg)][1]

    assert (ocr.resources.concurrency, ocr.resources.num_gpus) == (plan.ocr_actors, plan.ocr_gpus_per_actor)
    assert ocr.backend == "paddle" and ocr.device == "gpu:0"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this node has nvidia-smi: plan uses its GPUs")
def test_plan_without_gpus_or_a_gpu_profile_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 2
    assert "resources=gpu_24gb" in capsys.readouterr().err


def fake_nvidia_smi(folder, query_csv: str, listing: str = "") -> None:
    """A stand-in nvidia-smi on PATH that prints captured output: `-L` gets the listing, a query the CSV."""
    (folder / "query.csv").write_text(query_csv)
    (folder / "listing.txt").write_text(listing)
    fake = folder / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-L" ]; then cat {folder}/listing.txt; else cat {folder}/query.csv; fi\n')
    fake.chmod(0o755)


def test_plan_uses_the_gpus_nvidia_smi_lists(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # A one-H100 node's answer to the query (memory.total in MiB; MIG off).
    fake_nvidia_smi(tmp_path, "0, NVIDIA H100 80GB HBM3, 81559, Disabled\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    # The node's own CPUs (here few) size the OCR pool: light OCR actors so one fits.
    assert main(["plan", "ocr=paddle_gpu", "resources.ocr.cpus_per_actor=0.25"]) == 0

    out = capsys.readouterr().out
    # 81559 MiB / 1024 = 79.6 GiB.
    assert f"GPUs detected by nvidia-smi): 1 node(s) x 1 x NVIDIA H100 80GB HBM3 79.6 GiB, {os.cpu_count()} CPUs" in out
    assert "tensor_parallel_size 1, 1 replicas" in out
    # The card's bundle: the LLM's share and the OCR actors' add up to the whole card.
    assert re.search(r"node 0 card 0: llm share 0\.\d+, \d ocr x 0\.03 \(GPU 1\.00 of 1\)", out)
    assert "not planned" not in out


# Captured from a mixed node: two H100s, an L4, and an A100 in MIG mode with two 3g.40gb slices
# (`nvidia-smi --query-gpu=index,name,memory.total,mig.mode.current --format=csv,noheader,nounits`
# and `nvidia-smi -L`; UUIDs shortened).
MIXED_QUERY = """0, NVIDIA H100 80GB HBM3, 81559, Disabled
1, NVIDIA H100 80GB HBM3, 81559, Disabled
2, NVIDIA L4, 23034, [N/A]
3, NVIDIA A100-SXM4-80GB, 81920, Enabled
"""
MIXED_LISTING = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c1d0a7e-0000-0000-0000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-7f2e0b8d-0000-0000-0000-000000000000)
GPU 2: NVIDIA L4 (UUID: GPU-1a2b3c4d-0000-0000-0000-000000000000)
GPU 3: NVIDIA A100-SXM4-80GB (UUID: GPU-9e8d7c6b-0000-0000-0000-000000000000)
  MIG 3g.40gb     Device  0: (UUID: MIG-0a1b2c3d-0000-0000-0000-000000000000)
  MIG 3g.40gb     Device  1: (UUID: MIG-4e5f6a7b-0000-0000-0000-000000000000)
"""


def test_nvidia_smi_output_parses_into_cards_and_mig_slices() -> None:
    gpus = parse_gpu_query(MIXED_QUERY)
    slices = parse_mig_slices(MIXED_LISTING)

    assert [(gpu.index, gpu.name, gpu.memory_gb, gpu.mig_enabled) for gpu in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 79.6, False), (1, "NVIDIA H100 80GB HBM3", 79.6, False),
        (2, "NVIDIA L4", 22.5, False), (3, "NVIDIA A100-SXM4-80GB", 80.0, True)]
    assert slices == {0: (), 1: (), 2: (), 3: ("3g.40gb", "3g.40gb")}


def test_a_mixed_node_plans_its_largest_group_of_one_card_and_says_why_not_the_rest() -> None:
    gpus = [replace(gpu, mig_slices=parse_mig_slices(MIXED_LISTING)[gpu.index]) for gpu in parse_gpu_query(MIXED_QUERY)]

    node = plannable_gpus(gpus)

    assert [gpu.index for gpu in node.planned] == [0, 1]
    assert profile_from_detected(node, 64).per_node == 2
    reasons = dict((gpu.index, why) for gpu, why in node.refused)
    assert set(reasons) == {2, 3}
    assert "CUDA_VISIBLE_DEVICES=0,1" in reasons[2]
    assert "MIG mode (2 slice(s): 3g.40gb, 3g.40gb)" in reasons[3] and "nvidia-smi -i 3 -mig 0" in reasons[3]


def test_medrec_plan_on_the_mixed_node_lists_what_it_leaves_out(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_nvidia_smi(tmp_path, MIXED_QUERY, MIXED_LISTING)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the GPU node's CPUs, not this machine's

    assert main(["plan", "ocr=paddle_gpu", "resources.ocr.cpus_per_actor=0.25"]) == 0

    out = capsys.readouterr().out
    assert "1 node(s) x 2 x NVIDIA H100 80GB HBM3 79.6 GiB" in out
    assert "not planned: GPU 2 (NVIDIA L4, 22.5 GiB)" in out
    assert "not planned: GPU 3 (NVIDIA A100-SXM4-80GB, 80 GiB): MIG mode" in out


def test_a_node_of_mig_cards_only_is_refused_with_the_reasons(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake_nvidia_smi(tmp_path, "0, NVIDIA A100-SXM4-80GB, 81920, Enabled\n", "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-x)\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    assert main(["plan", "ocr=paddle_gpu"]) == 2

    err = capsys.readouterr().err
    assert "no GPU on this node can be planned" in err and "MIG mode (no slices configured)" in err
