"""The two engines an LLM extract stage can hold: vLLM in-process, or an OpenAI-compatible endpoint.

Both take chat conversations and return one `Completion` each; everything around the
engine call (prompts, parsing, repair, merge) is shared and runs without a GPU.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from pipeline.llm.parse import Completion
from pipeline.llm.prompt import Message
from pipeline.llm.schema import page_json_schema

log = logging.getLogger(__name__)

# Qwen3-style chat templates think aloud unless told not to; the schema leaves no room for it.
NO_THINKING = {"enable_thinking": False}


class LlmEngine(Protocol):
    """What the extract stage needs from an engine."""

    def start(self) -> None:
        """Load the model or open the connection; once per actor."""

    def generate(self, conversations: list[list[Message]]) -> list[Completion]:
        """One completion per conversation, in order."""


class EngineUnavailable(RuntimeError):
    """The engine cannot serve at all (not one page's problem): the run stops and says why."""


def require_local_model(model_path: str) -> Path:
    """The model directory, or a start-up error that names it and how to stage it."""
    path = Path(os.path.expanduser(model_path))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"LLM model directory {path} is missing or has no config.json. Nothing is downloaded at run "
            "time: on a machine with network access run `hf download <repo> --local-dir DIR` "
            f"(e.g. Qwen/Qwen3-8B), copy DIR to {path} on every GPU node, or set extract.model_path."
        )
    return path


def missing_plan_values(values: dict[str, Any]) -> list[str]:
    """The engine sizes still null: `medrec plan` supplies them, the graph cannot guess them."""
    return [name for name, value in values.items() if value is None]


def vllm_engine_kwargs(model_path: str, model_name: str, max_model_len: int, dtype: str, kv_cache_dtype: str,
                       tensor_parallel_size: int | None, gpu_memory_utilization: float | None,
                       max_num_seqs: int | None, placed: bool = False) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for one engine replica; raises when the plan values are null.
    `placed`: the engine runs on the GPU plan's shared cards (`pipeline.placement`)."""
    sizes = dict(tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                 max_num_seqs=max_num_seqs)
    missing = missing_plan_values(sizes)
    if missing:
        raise ValueError(
            f"extract.{', extract.'.join(missing)} are null: run `medrec plan` for this node and pass its "
            "values (e.g. extract.max_num_seqs=N on the command line or in conf/extract/vllm.yaml)"
        )
    return dict(
        model=model_path, tokenizer=model_path, served_model_name=model_name,
        max_model_len=max_model_len, dtype=dtype, kv_cache_dtype=kv_cache_dtype, **sizes,
        # One GPU: in the actor ("uni", as Ray Data's vLLM stage). Several on the plan's shared
        # cards: vLLM's Ray workers, one per card bundle (VLLM_RAY_BUNDLE_INDICES, set by the
        # placement); unplanned, the actor holds whole cards and vLLM's own processes share them.
        distributed_executor_backend="uni" if tensor_parallel_size == 1 else "ray" if placed else "mp",
        enable_prefix_caching=True,  # every page shares the system prompt
        # xgrammar reads whitespace freedom from the engine config, not from the request.
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        seed=0,
    )


def vllm_sampling_kwargs(max_output_tokens: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams`; `structured_outputs` as StructuredOutputsParams kwargs."""
    return dict(
        temperature=0.0,  # extraction, not writing: the most likely reading
        max_tokens=max_output_tokens,
        structured_outputs=dict(json=page_json_schema(), disable_any_whitespace=True),
    )


class VllmEngine:
    """A vLLM engine inside the extract actor.

    Why an engine in an actor rather than `ray.data.llm.build_processor`: a processor runs
    one generation per row through a fixed chain of stages, so the repair round for the
    few pages whose output is rejected would need a second processor, that is a second
    set of engine replicas holding the weights again on the same GPUs, or a second
    generation of every page. Here the repair reuses the engine that is already loaded,
    and both backends share one stage. What the processor's engine stage adds for dead
    engines is kept: a fatal engine error ends the actor process, so Ray Data restarts
    the actor and retries the batch it held (max_restarts / max_task_retries in
    `pipeline.ray_adapter`).
    """

    def __init__(self, engine_kwargs: dict[str, Any], sampling_kwargs: dict[str, Any]):
        require_local_model(engine_kwargs["model"])
        self.engine_kwargs, self.sampling_kwargs = engine_kwargs, sampling_kwargs
        self.llm = None
        self.sampling_params = None

    def start(self) -> None:
        import vllm
        from vllm.sampling_params import StructuredOutputsParams

        self.llm = vllm.LLM(**self.engine_kwargs)
        sampling = dict(self.sampling_kwargs)
        structured = StructuredOutputsParams(**sampling.pop("structured_outputs"))
        self.sampling_params = vllm.SamplingParams(**sampling, structured_outputs=structured)

    def generate(self, conversations: list[list[Message]]) -> list[Completion]:
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            outputs = self.llm.chat(conversations, self.sampling_params, use_tqdm=False,
                                    chat_template_kwargs=NO_THINKING)
        except EngineDeadError:
            # Raising would retry the batch on this same broken actor; exiting makes Ray
            # start a fresh actor (and engine) and hand it the batch.
            log.error("vLLM engine died; exiting the actor so Ray restarts it and retries its rows")
            os._exit(1)
        return [Completion(text=o.outputs[0].text, finish_reason=o.outputs[0].finish_reason or "stop",
                           output_tokens=len(o.outputs[0].token_ids)) for o in outputs]


class OpenAIEngine:
    """Chat completions from an OpenAI-compatible endpoint (`vllm serve`), several in flight.

    5xx, 429, timeouts and refused connections are retried with backoff; another 4xx is
    this page's request being refused (e.g. longer than the context), which the stage
    treats as rejected output. An endpoint that stays down raises EngineUnavailable.
    """

    def __init__(self, base_url: str, model_name: str, max_output_tokens: int, timeout_s: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 1.0, concurrency: int = 8,
                 api_key_env: str | None = None, extra_body: dict[str, Any] | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model_name, self.max_output_tokens = model_name, max_output_tokens
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency, self.api_key_env = concurrency, api_key_env
        self.extra_body = extra_body or {}
        self.headers: dict[str, str] = {}
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self.headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise EngineUnavailable(f"extract.api_key_env names {self.api_key_env}, which is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm-http")

    def generate(self, conversations: list[list[Message]]) -> list[Completion]:
        assert self.pool is not None, "start() opens the request pool"
        return list(self.pool.map(self._complete, conversations))

    def _payload(self, messages: list[Message]) -> bytes:
        body = {
            "model": self.model_name, "messages": messages, "temperature": 0.0,
            "max_tokens": self.max_output_tokens,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "page", "schema": page_json_schema(), "strict": True}},
            **self.extra_body,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def _complete(self, messages: list[Message]) -> Completion:
        payload = self._payload(messages)
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    answer = json.load(response)
                choice = answer["choices"][0]
                return Completion(text=choice["message"]["content"] or "",
                                  finish_reason=choice.get("finish_reason") or "stop",
                                  output_tokens=int((answer.get("usage") or {}).get("completion_tokens") or 0))
            except urllib.error.HTTPError as error:
                if error.code < 500 and error.code != 429:
                    return Completion(text="", finish_reason=f"refused: HTTP {error.code}", output_tokens=0)
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = type(error).__name__
            log.warning("LLM endpoint attempt %d/%d failed: %s", attempt + 1, self.max_retries + 1, reason)
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise EngineUnavailable(f"LLM endpoint {self.url} failed {self.max_retries + 1} times, last: {reason}")
