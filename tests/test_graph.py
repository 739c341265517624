"""How the store graph is composed: which stages a run starts, and which share a pool."""

from __future__ import annotations

from pipeline.config import load_config
from pipeline.graph import store_graph_steps


def _names(cfg_overrides: list[str], ocr: bool) -> tuple[list[str], list[list[str]]]:
    ocr_steps, groups = store_graph_steps(load_config(cfg_overrides), ocr=ocr)
    return [f().name for f in ocr_steps], [[f().name for f in group] for group in groups]


def test_a_run_on_stored_ocr_output_starts_no_render_task_and_no_ocr_pool() -> None:
    ocr_steps, groups = _names([], ocr=False)
    assert ocr_steps == []
    assert "ocr" not in {name for group in groups for name in group}


def test_the_light_stages_share_one_pool_after_ocr_unless_configured_apart() -> None:
    assert _names([], ocr=True) == (["render", "ocr"], [["classify", "extract", "code", "validate"]])
    assert _names(["resources.fuse_light_stages=false"], ocr=True)[1] == [["classify"], ["extract"], ["code"],
                                                                           ["validate"]]


def test_an_llm_stage_keeps_its_own_pool_between_the_light_ones() -> None:
    _, groups = _names(["extract=openai"], ocr=True)
    assert groups == [["classify", "extract", "code"], ["extract_llm"], ["code", "validate"]]
