"""The engines: the OpenAI-compatible client against a local server, vLLM's arguments and start-up checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fake_endpoint import Script, serve

from pipeline.llm.engines import (EngineUnavailable, OpenAIEngine, VllmEngine, require_local_model,
                                  vllm_engine_kwargs, vllm_sampling_kwargs)
from pipeline.llm.schema import page_json_schema

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
ANSWER = '{"e":[]}'


def engine(url: str, **kwargs) -> OpenAIEngine:
    values = dict(max_retries=2, backoff_s=0.0, timeout_s=5.0, concurrency=4) | kwargs
    client = OpenAIEngine(url, "Qwen3-8B", 512, **values)
    client.start()
    return client


def test_a_completion_comes_back_with_the_schema_sent() -> None:
    script = Script([(200, ANSWER, "stop")])
    with serve(script) as url:
        (completion,) = engine(url, extra_body={"chat_template_kwargs": {"enable_thinking": False}}).generate([MESSAGES])

    assert (completion.text, completion.finish_reason) == (ANSWER, "stop")
    (request,) = script.requests
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == "Qwen3-8B" and body["messages"] == MESSAGES and body["max_tokens"] == 512
    assert body["response_format"]["json_schema"]["schema"] == page_json_schema()
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_a_server_error_is_retried_then_succeeds() -> None:
    script = Script([(500, "", ""), (503, "", ""), (200, ANSWER, "stop")])
    with serve(script) as url:
        (completion,) = engine(url, max_retries=2).generate([MESSAGES])

    assert completion.text == ANSWER and len(script.requests) == 3


def test_a_refused_request_is_that_pages_answer_not_a_retry() -> None:
    script = Script([(400, "", "")])
    with serve(script) as url:
        (completion,) = engine(url).generate([MESSAGES])

    assert completion.finish_reason == "refused: HTTP 400" and len(script.requests) == 1


def test_an_endpoint_that_stays_down_stops_the_run() -> None:
    script = Script([(502, "", "")])
    with serve(script) as url, pytest.raises(EngineUnavailable, match="failed 3 times, last: HTTP 502"):
        engine(url, max_retries=2).generate([MESSAGES])


def test_a_closed_port_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends
    with pytest.raises(EngineUnavailable, match="failed 2 times"):
        engine(f"http://127.0.0.1:{port}/v1", max_retries=1).generate([MESSAGES])


def test_requests_run_concurrently_and_answers_keep_their_order() -> None:
    script = Script([(200, ANSWER, "stop")])
    conversations = [[{"role": "user", "content": str(i)}] for i in range(12)]
    with serve(script) as url:
        completions = engine(url, concurrency=4).generate(conversations)

    assert len(completions) == 12
    assert sorted(r["body"]["messages"][0]["content"] for r in script.requests) == sorted(str(i) for i in range(12))


def test_the_api_key_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDREC_TEST_LLM_KEY", "k-123")
    script = Script([(200, ANSWER, "stop")])
    with serve(script) as url:
        engine(url, api_key_env="MEDREC_TEST_LLM_KEY").generate([MESSAGES])

    assert script.requests[0]["auth"] == "Bearer k-123"
    monkeypatch.delenv("MEDREC_TEST_LLM_KEY")
    with pytest.raises(EngineUnavailable, match="MEDREC_TEST_LLM_KEY"):
        engine("http://127.0.0.1:1/v1", api_key_env="MEDREC_TEST_LLM_KEY")


def staged_model(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def sized_kwargs(model: str, **sizes) -> dict:
    values = dict(tensor_parallel_size=1, gpu_memory_utilization=0.9, max_num_seqs=128) | sizes
    return vllm_engine_kwargs(model, "Qwen3-8B", 16384, "bfloat16", "auto", **values)


def test_a_missing_model_directory_names_the_path_and_how_to_stage_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent'}.*hf download"):
        require_local_model(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError):
        VllmEngine(sized_kwargs(str(tmp_path / "absent")), vllm_sampling_kwargs(512))


def test_vllm_arguments_carry_the_plan_sizes_and_whitespace_free_schema_output(tmp_path: Path) -> None:
    kwargs = sized_kwargs(str(staged_model(tmp_path)), tensor_parallel_size=2)
    sampling = vllm_sampling_kwargs(1024)

    assert (kwargs["model"], kwargs["tensor_parallel_size"], kwargs["max_num_seqs"]) == (str(tmp_path), 2, 128)
    assert kwargs["distributed_executor_backend"] == "mp"
    assert sized_kwargs(str(tmp_path))["distributed_executor_backend"] == "uni"
    assert kwargs["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert sampling["max_tokens"] == 1024 and sampling["temperature"] == 0.0
    assert sampling["structured_outputs"] == {"json": page_json_schema(), "disable_any_whitespace": True}
    VllmEngine(kwargs, sampling)  # a staged model passes the start-up check without loading anything


def test_null_plan_values_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"extract.gpu_memory_utilization, extract.max_num_seqs are null.*medrec plan"):
        sized_kwargs(str(tmp_path), gpu_memory_utilization=None, max_num_seqs=None)


@pytest.mark.gpu
def test_vllm_accepts_the_engine_and_sampling_arguments(tmp_path: Path) -> None:
    """Constructs vLLM's own argument objects (no engine, no GPU needed once vLLM is installed)."""
    pytest.importorskip("vllm", reason="vLLM is not installed here (the [gpu] extra)")
    from vllm import SamplingParams
    from vllm.engine.arg_utils import EngineArgs
    from vllm.sampling_params import StructuredOutputsParams

    sampling = vllm_sampling_kwargs(512)
    structured = StructuredOutputsParams(**sampling.pop("structured_outputs"))
    assert SamplingParams(**sampling, structured_outputs=structured).structured_outputs.disable_any_whitespace
    EngineArgs(**sized_kwargs(str(staged_model(tmp_path))))
