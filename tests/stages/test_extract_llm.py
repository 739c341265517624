"""LlmExtractStage: one engine call per batch, one repair round, lexicon fallback, engine restarts.

The engine is a scripted fake or the OpenAI-compatible client against a local server; a
real vLLM engine runs only in the gpu-marked test.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import pytest

from fake_endpoint import Script, serve
from pipeline.llm.engines import OpenAIEngine
from pipeline.llm.parse import FLAG_DISAGREE, FLAG_FALLBACK, FLAG_LLM_ONLY, Completion
from pipeline.records import CodeCandidate
from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import Resources
from pipeline.stages.extract_llm import LlmExtractStage
from pipeline.stages.validate import ValidateStage
from terminology_index import ICD10CM

HYPERTENSION = CodeCandidate(ICD10CM, "I10", "Essential (primary) hypertension", 0.98, "exact")
TEXTS = ["PAST MEDICAL HISTORY:", "- Essential hypertension", "- Chest pain"]
GOOD = json.dumps({"e": [{"k": "diagnosis", "t": "Essential hypertension", "l": [1], "a": "present", "c": 0,
                          "v": None, "u": None},
                         {"k": "diagnosis", "t": "Chest pain", "l": [2], "a": "present", "c": None,
                          "v": None, "u": None}]}, separators=(",", ":"))
GARBAGE = '{"e":[{"k":"diagnosis","t":"Essential hyp'


def page_row(make_entity, make_page_row, page_index: int = 0, **values) -> dict:
    lines = [{"line_id": i, "text": text, "confidence": 0.95, "polygon": [[0.0, 0.0]] * 4,
              "bbox": [80.0, 100.0 + 30 * i, 400.0, 120.0 + 30 * i]} for i, text in enumerate(TEXTS)]
    hypertension = make_entity("diagnosis", "Essential hypertension", line=1, confidence=0.7, code="I10",
                               code_system=ICD10CM, code_display=HYPERTENSION.display, code_score=0.98,
                               candidates=[HYPERTENSION])
    return make_page_row([hypertension], page_index=page_index, lines=lines, **values)


class ScriptedEngine:
    """Answers each call from a list of per-page texts; records the conversations it was sent."""

    def __init__(self, calls: list[list[str]]):
        self.calls, self.sent = calls, []

    def start(self) -> None:
        pass

    def generate(self, conversations: list[list[dict]]) -> list[Completion]:
        texts = self.calls[len(self.sent)]
        self.sent.append(conversations)
        return [Completion(text, "stop", len(text) // 4) for text in texts]


def run_stage(engine, rows: list[dict]) -> list[dict]:
    stage = LlmExtractStage(engine_factory=lambda: engine)
    return stage.process_batch(page_rows_to_table(rows)).to_pylist()


def test_agreement_and_an_llm_only_mention_on_one_call(make_entity, make_page_row) -> None:
    engine = ScriptedEngine([[GOOD]])

    (out,) = run_stage(engine, [page_row(make_entity, make_page_row)])

    assert out["extract_source"] == "llm" and out["llm_output_tokens"] == len(GOOD) // 4
    by_text = {e["text"]: e for e in out["entities"]}
    assert by_text["Essential hypertension"]["confidence"] == pytest.approx(1 - 0.3 * 0.2)
    assert by_text["Essential hypertension"]["flags"] == []
    assert by_text["Chest pain"]["flags"] == [FLAG_LLM_ONLY] and by_text["Chest pain"]["code"] is None
    (conversation,) = engine.sent[0]
    assert "[1] - Essential hypertension" in conversation[1]["content"] and "0 diagnosis icd-10-cm I10" in conversation[1]["content"]


def test_rejected_output_is_repaired_once_for_that_page_only(make_entity, make_page_row) -> None:
    engine = ScriptedEngine([[GOOD, GARBAGE], [GOOD]])
    rows = [page_row(make_entity, make_page_row, page_index=0), page_row(make_entity, make_page_row, page_index=1)]

    first, second = run_stage(engine, rows)

    assert (first["extract_source"], second["extract_source"]) == ("llm", "llm_repaired")
    (repair,) = engine.sent[1]
    assert repair[2] == {"role": "assistant", "content": GARBAGE}
    assert "schema" in repair[3]["content"]
    assert second["llm_output_tokens"] == len(GARBAGE) // 4 + len(GOOD) // 4  # both attempts are counted


def test_twice_rejected_output_falls_back_to_the_flagged_lexicon_result(make_entity, make_page_row) -> None:
    engine = ScriptedEngine([[GARBAGE], ["{}"]])

    (out,) = run_stage(engine, [page_row(make_entity, make_page_row)])

    assert out["extract_source"] == "llm_fallback" and len(engine.sent) == 2
    (entity,) = out["entities"]
    assert entity["text"] == "Essential hypertension" and entity["flags"] == [FLAG_FALLBACK]
    # The validate stage sends every flagged field to review.
    (validated,) = ValidateStage().process_batch(page_rows_to_table([out])).to_pylist()
    assert validated["entities"][0]["requires_review"] is True


def test_failed_rows_pass_untouched_and_missing_columns_are_named(make_entity, make_page_row) -> None:
    engine = ScriptedEngine([[GOOD]])
    failed = page_row(make_entity, make_page_row, page_index=1, error_stage="ocr", error_type="x", error_message="m")

    ok, untouched = run_stage(engine, [page_row(make_entity, make_page_row), failed])

    assert ok["extract_source"] == "llm" and untouched["extract_source"] is None
    assert len(engine.sent[0]) == 1
    with pytest.raises(KeyError, match="lines"):
        LlmExtractStage(engine_factory=lambda: engine).process_batch(
            page_rows_to_table([make_page_row([])]).drop(["lines"]))


def openai_stage(url: str) -> LlmExtractStage:
    return LlmExtractStage(engine_factory=partial(OpenAIEngine, url, "Qwen3-8B", 512, max_retries=2, backoff_s=0.0,
                                                  timeout_s=5.0, concurrency=2))


def test_openai_backend_retries_a_server_error(make_entity, make_page_row) -> None:
    script = Script([(500, "", ""), (200, GOOD, "stop")])
    with serve(script) as url:
        (out,) = openai_stage(url).process_batch(page_rows_to_table([page_row(make_entity, make_page_row)])).to_pylist()

    assert out["extract_source"] == "llm" and len(script.requests) == 2
    assert {e["text"] for e in out["entities"]} == {"Essential hypertension", "Chest pain"}


def test_openai_backend_garbage_is_repaired_then_falls_back(make_entity, make_page_row) -> None:
    script = Script([(200, "not json", "stop"), (200, GOOD[:40], "length")])
    with serve(script) as url:
        (out,) = openai_stage(url).process_batch(page_rows_to_table([page_row(make_entity, make_page_row)])).to_pylist()

    assert out["extract_source"] == "llm_fallback" and len(script.requests) == 2
    assert len(script.requests[1]["body"]["messages"]) == 4  # the repair turn
    assert [e["flags"] for e in out["entities"]] == [[FLAG_FALLBACK]]


def test_a_disagreeing_assertion_goes_to_review(make_entity, make_page_row) -> None:
    negated = GOOD.replace('"Essential hypertension","l":[1],"a":"present"', '"Essential hypertension","l":[1],"a":"negated"')
    (out,) = run_stage(ScriptedEngine([[negated]]), [page_row(make_entity, make_page_row)])

    by_text = {e["text"]: e for e in out["entities"]}
    assert by_text["Essential hypertension"]["flags"] == [FLAG_DISAGREE]


class DiesOnceEngine:
    """Ends its process on the first call, as a vLLM engine whose worker died makes the actor do."""

    def __init__(self, marker: str):
        self.marker = marker

    def start(self) -> None:
        pass

    def generate(self, conversations: list[list[dict]]) -> list[Completion]:
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return [Completion(GOOD, "stop", 10) for _ in conversations]


def test_a_dead_engine_actor_is_restarted_and_its_rows_retried(tmp_path: Path, make_entity, make_page_row) -> None:
    import ray
    from ray import cloudpickle

    from pipeline.offline import OFFLINE_ENV
    from pipeline.ray_adapter import apply_stage

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the test module
    marker = str(tmp_path / "engine-died")
    rows = [page_row(make_entity, make_page_row, page_index=i) for i in range(6)]
    factory = partial(LlmExtractStage, engine_factory=partial(DiesOnceEngine, marker),
                      resources=Resources(num_cpus=0.5, batch_size=3, concurrency=1))
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": OFFLINE_ENV}, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        out = apply_stage(ray.data.from_arrow(page_rows_to_table(rows)), factory).take_all()
    finally:
        ray.shutdown()

    assert Path(marker).read_text() == "died"
    assert sorted(row["page_index"] for row in out) == list(range(6))
    assert all(row["extract_source"] == "llm" and len(row["entities"]) == 2 for row in out)


@pytest.mark.gpu
def test_a_real_vllm_engine_reads_the_page(make_entity, make_page_row) -> None:
    """On a GPU node with the [gpu] extra: MEDREC_LLM_MODEL_PATH names a staged instruct model."""
    pytest.importorskip("vllm", reason="vLLM is not installed here (the [gpu] extra)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    model = os.environ.get("MEDREC_LLM_MODEL_PATH")
    if not model:
        pytest.skip("MEDREC_LLM_MODEL_PATH is not set to a staged model directory")
    from pipeline.llm.engines import VllmEngine, vllm_engine_kwargs, vllm_sampling_kwargs

    kwargs = vllm_engine_kwargs(model, "test", 8192, "auto", "auto", 1, 0.85, 16)
    stage = LlmExtractStage(engine_factory=partial(VllmEngine, kwargs, vllm_sampling_kwargs(1024)))

    (out,) = stage.process_batch(page_rows_to_table([page_row(make_entity, make_page_row)])).to_pylist()

    assert out["extract_source"] in ("llm", "llm_repaired") and out["llm_output_tokens"] > 0
