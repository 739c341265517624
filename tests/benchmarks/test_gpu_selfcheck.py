"""The GPU self-check's pieces that run without a GPU: nvidia-smi parsing, memory per member, the report."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from benchmarks.gpu_selfcheck import main, memory_rows, parse_compute_apps, render_markdown

# `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` on a node
# running two processes on GPU 0 and one on GPU 1 (the same pid on two cards adds up).
COMPUTE_APPS = """4120, 1310
4121, 70422
4120, 12
"""


def test_compute_apps_parse_into_memory_per_process() -> None:
    assert parse_compute_apps(COMPUTE_APPS) == {4120: 1322.0, 4121: 70422.0}
    assert parse_compute_apps("") == {}


def test_a_child_processs_memory_counts_to_the_member_that_started_it() -> None:
    # As vLLM's engine core, a child of the actor process holds the GPU memory.
    child = subprocess.Popen(["sleep", "30"])
    try:
        members = {os.getpid(): ("llm", "0:0"), 999_999_999: ("ocr", "0:0")}
        rows = memory_rows({child.pid: 60_000.0, 999_999_999: 1600.0}, members, {"llm": 70.4, "ocr": 1.5})
    finally:
        child.kill()

    assert [(r["role"], r["gpu_memory_gb"], r["planned_gb"], r["within_plan"]) for r in rows] == [
        ("llm", 58.59, 70.4, True), ("ocr", 1.56, 1.5, False)]


def test_the_report_lists_stages_and_members() -> None:
    run = {"overrides": ["resources=gpu_node", "ocr=onnx_gpu", "extract=vllm"], "plan": "GPU plan", "layout": "cards",
           "pages_in": 6, "pages_processed": 6, "pages_quarantined": 0, "conserved": True,
           "stages": [{"stage": "ocr", "pool_size": 4, "busy_seconds": 3.0, "pages_per_second": 8.0}],
           "memory": [{"role": "ocr", "cards": "0:0", "gpu_memory_gb": 1.2, "planned_gb": 1.5, "within_plan": True}]}

    text = render_markdown({"date": "2026-11-27", "host": "node", "seconds": 200.0,
                            "skipped": ["ocr=paddle_gpu: paddlepaddle-gpu is not installed"], "runs": [run]})

    assert "| ocr | 4 | 3.0 | 8.0 |" in text and "| ocr | 0:0 | 1.2 | 1.5 | yes |" in text
    assert "not checked: ocr=paddle_gpu" in text


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this node has a GPU: the check would run")
def test_without_a_gpu_it_stops_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "no NVIDIA GPU" in capsys.readouterr().err
