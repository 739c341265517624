"""Validated configuration: the Hydra-composed tree checked by pydantic models.

Hydra composes `conf/`; `load_config` turns the result into these models, so a wrong
value fails at start-up with the key that is wrong, not deep inside a Ray worker.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from terminology_index.sources import IndexSources

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OcrConfig(_Strict):
    backend: Literal["paddle_onnx", "paddle"]
    model_dir: str
    # paddle_onnx: folder of the PP-OCRv6 ONNX files model_dir is built from; None: the rapidocr wheel's.
    # A site stages a newer model release here; the store then OCRs pages again (its fingerprint changed).
    source_dir: str | None = None
    det_limit_side_len: int = Field(960, ge=320, le=6000)
    # paddle backend only: paddlepaddle-gpu with official model dirs staged locally.
    device: str = "cpu"  # PaddleOCR device string; under Ray `gpu:0` is the GPU Ray assigned
    det_model_name: str | None = None  # PaddleX model name the dir holds (its inference.yml's Global.model_name)
    det_model_dir: str | None = None
    rec_model_name: str | None = None
    rec_model_dir: str | None = None
    rec_batch_size: int = Field(8, ge=1, le=256)  # text lines per recognition call
    recycle_after_pages: int | None = Field(None, ge=1)  # rebuild the engine after N pages: Paddle workers grow
    gpu_memory_gb_per_actor: float = Field(0.0, ge=0, le=80)  # VRAM budget per OCR actor the plan reserves
    # paddle_onnx only (benchmarks/ocr_engines.py measures each): what runs the ONNX graphs and how.
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"
    # bf16: openvino on CPUs with AVX-512 BF16; int8: onnxruntime with the rec model quantised (ocr_quantize)
    precision: Literal["f32", "bf16", "int8"] = "f32"
    rec_width_step: int | None = Field(None, ge=8, le=1024)  # openvino: pad line batches to reuse kernels
    graph_optimization_level: Literal[0, 1, 2, 99] | None = None  # onnxruntime; None: its default (99)
    enable_cpu_mem_arena: bool | None = None  # onnxruntime; None: its default (on)
    execution_mode: Literal["sequential", "parallel"] | None = None  # onnxruntime; None: sequential
    # latin: the rec head scores Latin-script characters and symbols only: a lighter head (ocr_charset)
    rec_charset: Literal["all", "latin"] = "all"

    @model_validator(mode="after")
    def _paddle_needs_model_dirs(self) -> "OcrConfig":
        if self.backend == "paddle":
            missing = [key for key in ("det_model_name", "det_model_dir", "rec_model_name", "rec_model_dir")
                       if getattr(self, key) is None]
            if missing:
                raise ValueError(f"ocr backend paddle needs {missing}")
        if self.device.startswith("gpu") and self.gpu_memory_gb_per_actor <= 0:
            raise ValueError("ocr on gpu needs gpu_memory_gb_per_actor > 0 (the plan sizes pools from it)")
        if self.precision == "bf16" and self.runtime != "openvino":
            raise ValueError("ocr precision bf16 needs runtime openvino (ONNX Runtime's CPU kernels are f32)")
        if self.precision == "int8" and (self.runtime != "onnxruntime" or self.backend != "paddle_onnx"
                                         or self.device != "cpu"):
            raise ValueError("ocr precision int8 needs runtime onnxruntime, backend paddle_onnx, device cpu")
        if self.runtime == "openvino" and (self.backend != "paddle_onnx" or self.device != "cpu"):
            raise ValueError("ocr runtime openvino runs the paddle_onnx backend on device cpu")
        if self.rec_charset != "all" and self.backend != "paddle_onnx":
            raise ValueError("ocr rec_charset other than 'all' needs backend paddle_onnx (its model dirs)")
        return self


class ExtractConfig(_Strict):
    backend: Literal["lexicon"]


class ModelArchitecture(_Strict):
    """The numbers of the model's config.json that size its KV cache."""

    num_layers: int = Field(ge=1, le=512)
    num_kv_heads: int = Field(ge=1, le=512)
    head_dim: int = Field(ge=16, le=1024)


class _LlmExtractCommon(_Strict):
    """Knobs both LLM backends share."""

    model_name: str
    max_output_tokens: int = Field(2048, ge=64, le=32768)  # beyond it an answer counts as truncated
    replicas: int | None = Field(None, ge=1, le=512)  # engines (vllm) or request actors (openai)
    batch_size: int = Field(64, ge=1, le=4096)  # pages per engine call
    cpus_per_replica: float = Field(1.0, gt=0, le=64)
    llm_confidence: float = Field(0.8, ge=0, le=1)  # the LLM's word when it agrees with the lexicon
    llm_only_confidence: float = Field(0.6, ge=0, le=1)  # a mention the lexicon did not see


class VllmExtractConfig(_LlmExtractCommon):
    """vLLM engines in the graph; null sizes come from `medrec plan`."""

    backend: Literal["vllm"]
    model_path: str
    max_model_len: int = Field(ge=512, le=1_048_576)
    dtype: Literal["auto", "bfloat16", "float16"] = "bfloat16"
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    weights_gb: float = Field(gt=0)
    architecture: ModelArchitecture
    tensor_parallel_size: int | None = Field(None, ge=1, le=64)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=0.98)
    max_num_seqs: int | None = Field(None, ge=1, le=4096)


class OpenAIExtractConfig(_LlmExtractCommon):
    """An OpenAI-compatible endpoint (`vllm serve`) the site runs."""

    backend: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = None  # the variable's name, never the key itself
    timeout_s: float = Field(120.0, gt=0, le=3600)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0, le=60)
    concurrency: int = Field(16, ge=1, le=1024)  # requests in flight per actor
    replicas: int = Field(1, ge=1, le=512)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # server extensions, e.g. chat_template_kwargs


class TerminologyConfig(_Strict):
    index_path: str
    sources: IndexSources
    shared_dir: str | None = None


class PoolConfig(_Strict):
    """An actor pool: how many actors and what each one is given."""

    actors: int = Field(1, ge=1, le=512)
    cpus_per_actor: float = Field(1.0, gt=0, le=64)
    threads_per_actor: int | None = Field(None, ge=1, le=64)  # None: the CPUs the actor is given, at least 1
    nice: int = Field(0, ge=0, le=19)  # OS niceness added to Ray's worker niceness (15; the OS caps at 19)
    batch_size: int = Field(4, ge=1, le=1024)
    memory_mb: int | None = Field(None, ge=16)  # measured resident set per actor, reserved in Ray
    gpus_per_actor: float = Field(0.0, ge=0, le=8)  # fractional GPUs let several actors share a card

    @property
    def threads(self) -> int:
        return self.threads_per_actor or max(1, round(self.cpus_per_actor))


class TaskConfig(_Strict):
    cpus: float = Field(0.1, gt=0, le=64)
    batch_size: int = Field(4, ge=1, le=1024)
    # The document-rules and patient-shard steps after the graph: CPU-bound Python, a core
    # each, so a node runs as many at once as it has cores. At `cpus` (0.1) a 2-core node
    # started twenty new workers, each importing the assembly code (issue 12).
    assembly_cpus: float = Field(1.0, gt=0, le=64)


class GpuConfig(_Strict):
    """The GPUs a resources profile describes; `medrec plan` sizes the pools from them."""

    name: str
    memory_gb: float = Field(gt=0, le=1024)  # GiB per card, as nvidia-smi's memory.total / 1024
    per_node: int = Field(1, ge=1, le=16)
    nodes: int = Field(1, ge=1, le=4096)
    cpus_per_node: int = Field(ge=1, le=4096)
    reserve_gb: float = Field(1.0, ge=0)  # per card: CUDA contexts and fragmentation nobody plans for
    llm_overhead_gb: float = Field(2.0, ge=0)  # per card the LLM spans: vLLM activations and CUDA graphs
    max_ocr_actors_per_gpu: int = Field(4, ge=1, le=64)
    max_ocr_memory_fraction: float = Field(0.3, gt=0, le=1)  # of each card, when the LLM shares it
    llm_cpus_per_gpu: float = Field(1.0, gt=0, le=64)  # vLLM's engine process per GPU worker
    reserved_cpus: float = Field(2.0, ge=0)  # per node: the driver, Ray's own processes, render tasks


class ResourcesConfig(_Strict):
    num_cpus: int | None = Field(None, ge=1)
    gpu: GpuConfig | None = None  # a GPU profile: pool sizes come from `pipeline.plan`
    ocr: PoolConfig
    extract: PoolConfig
    code: PoolConfig
    classify: PoolConfig
    validate_pool: PoolConfig = Field(alias="validate")  # `validate` would shadow a pydantic method
    tasks: TaskConfig
    # Classify, extract (lexicon), code and validate in one actor pool: one process start and one
    # set of imports instead of four (start-up is most of a small run: issues 12, 15).
    fuse_light_stages: bool = True
    # When the light pool loads its lexicons and index on a run that OCRs: "first_batch" (its
    # start-up leaves the cores to the OCR actors') or "start" (ready before OCR's first page).
    light_setup: Literal["first_batch", "start"] = "first_batch"
    # OCR engines a node builds at once; None: all its OCR actors at once. On 2 cores, two builds
    # side by side (beside render and the light pool's start) each took as long as both (issue 15).
    ocr_engine_builds: int | None = Field(None, ge=1)
    # Render each page in the OCR actor that reads it, from manifest blocks the driver cuts: no
    # read or render task worker starts beside the OCR actors. For CPU nodes, where those
    # workers' start-up delayed the first OCR output; GPU profiles keep render as CPU tasks that
    # feed the cards (issue 15).
    render_in_ocr_pool: bool = False
    # Light pool actors on a run with no page to OCR (a re-run on stored OCR output): the pool
    # then has the cores to itself; None: one per CPU of the cluster (issue 12).
    light_actors_without_ocr: int | None = Field(None, ge=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WriterConfig(_Strict):
    pipeline_version_tag: str = "medrec"
    fhir_recorded: str = "1970-01-01T00:00:00Z"
    progress: bool = True
    # Output part files per table and FHIR type, by patient: new documents rewrite only their patients' parts.
    patient_shards: int = Field(8, ge=1, le=65536)


class RenderConfig(_Strict):
    dpi: int = Field(150, ge=72, le=600)
    max_side_px: int = Field(2600, ge=256, le=20000)
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1)
    min_text_layer_chars: int = Field(40, ge=0)
    max_image_pixels: int = Field(120_000_000, ge=10_000)  # decompression bombs: larger pages refused undecoded


class FaultsConfig(_Strict):
    """How many failures a run tolerates (olmOCR's `max_page_error_rate` is the model)."""

    # Share of pages the pipeline failed on (internal errors, failed blocks, worker deaths; not
    # inputs rejected with a reason) above which `medrec run` exits 1: a bug, not bad paper.
    max_page_error_rate: float = Field(0.01, ge=0, le=1)
    # Share of a document's pages quarantined (for any reason) above which the whole document is
    # held back from FHIR, its good pages' entities flagged: a chart with pages missing is not whole.
    max_document_error_rate: float = Field(0.1, ge=0, le=1)
    # Deaths alone after which a page that kills its worker (abort, segfault, OOM kill) is quarantined.
    max_worker_deaths: int = Field(2, ge=1, le=20)


class CodeConfig(_Strict):
    top_k: int = Field(5, ge=1, le=50)
    min_score: float = Field(0.5, ge=0, le=1)


class ValidateConfig(_Strict):
    min_confidence: float = Field(0.75, ge=0, le=1)  # fields under it go to the review queue
    earliest_birth_year: int = Field(1900, ge=1800)  # older birth dates are misreads
    today: str | None = None  # ISO date the run treats as today; None: the real date
    rules_path: str | None = None  # a site's rules file; None: the packaged validation_rules.yaml
    # facility id -> ids of rules shipped disabled (check digits) that run for it
    enable_rules: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("today")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # raises with the bad value at start-up, not in a worker
        return value


class ReviewConfig(_Strict):
    """`medrec review`: the local workbench over output folders."""

    host: str = "127.0.0.1"  # loopback by default: the queue shows patient pages
    port: int = Field(8765, ge=1, le=65535)
    users_file: str = "~/.config/medrec/review-users.yaml"  # names, roles, argon2 hashes (`medrec review-user add`)
    secret_file: str | None = None  # session signing key; None: beside the users file, created on first start
    session_hours: float = Field(8.0, gt=0, le=168)  # a signed session cookie older than this is refused
    page_size: int = Field(50, ge=5, le=500)  # queue rows per screen
    lines_around: int = Field(4, ge=0, le=40)  # OCR lines shown above and below the field's lines
    image_cache_pages: int = Field(16, ge=0, le=1024)  # rendered page PNGs kept in memory


class DeidDatesConfig(_Strict):
    mode: Literal["shift", "year"] = "shift"  # shift keeps intervals; year is Safe Harbor's letter
    max_shift_days: int = Field(365, ge=1, le=3650)
    shift_year_only_dates: bool = False  # Safe Harbor lets a year stand alone


class DeidScrubConfig(_Strict):
    min_identifier_chars: int = Field(3, ge=1, le=64)  # shorter own identifiers give too many false hits
    min_score: float = Field(0.4, ge=0, le=1)  # Presidio results below are left in the text
    harvest_names: bool = True  # names found on a patient's pages join their own terms (the extractor misses some)


class DeidResidualConfig(_Strict):
    min_chars: int = Field(4, ge=1, le=64)
    fail: bool = True  # an identifier left in the research copy fails the command


class DeidConfig(_Strict):
    """`medrec deidentify`: the research copy (HIPAA Safe Harbor), see pipeline/deid."""

    key_file: str | None = None  # required by deidentify; the secret never enters the config tree
    pseudonym_chars: int = Field(32, ge=16, le=64)  # hex chars of HMAC-SHA256; 16 = 64 bits against collisions
    dates: DeidDatesConfig = DeidDatesConfig()
    reference_date: str | None = None  # ISO date ages are reckoned at; None: today
    age_cap: int = Field(89, ge=1, le=150)
    zip_digits: Literal[0, 3] = 3  # 0 drops the ZIP code altogether
    restricted_zip3: list[str] = Field(default_factory=list)
    keep_state: bool = True
    keep_facility: bool = False
    images: Literal["none", "redacted"] = "none"
    scrub: DeidScrubConfig = DeidScrubConfig()
    residual: DeidResidualConfig = DeidResidualConfig()

    @field_validator("reference_date")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)
        return value

    @field_validator("restricted_zip3")
    @classmethod
    def _three_digits(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not (len(v) == 3 and v.isdigit())]
        if bad:
            raise ValueError(f"restricted_zip3 holds three-digit strings (quote them in YAML), not {bad}")
        return value


class MedrecConfig(_Strict):
    input: str | None = None
    output: str | None = None
    facility_id: str | None = None
    n_documents: int = Field(28, ge=1)
    seed: int = 7
    include_bad_files: bool = False
    synth_style: Literal["mixed", "printed", "noisy"] = "mixed"  # synth: scan look (pipeline.synth.corpus.SCAN_STYLES)
    hard_cases: bool = False  # synth: two-column notes, abbreviations, Yes/No boxes, lab rows with a gap
    ocr: OcrConfig
    extract: Annotated[ExtractConfig | VllmExtractConfig | OpenAIExtractConfig, Field(discriminator="backend")]
    terminology: TerminologyConfig
    resources: ResourcesConfig
    writer: WriterConfig
    render: RenderConfig
    code: CodeConfig
    faults: FaultsConfig = FaultsConfig()
    validate_rules: ValidateConfig = Field(alias="validate")  # `validate` would shadow a pydantic method
    review: ReviewConfig = Field(default_factory=ReviewConfig)


    deid: DeidConfig = DeidConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def compose(overrides: list[str]) -> dict:
    """Compose `conf/` with Hydra and `key=value` overrides into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    if not (CONF_DIR / "config.yaml").is_file():
        raise FileNotFoundError(f"config folder {CONF_DIR} not found: install medrec from its checkout (pip install -e .)")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def load_config(overrides: list[str]) -> MedrecConfig:
    """The validated config for `key=value` overrides; a bad value raises naming its key."""
    tree = compose(overrides)
    tree.pop("local", None)
    return MedrecConfig.model_validate(tree)


def expand(path: str) -> Path:
    return Path(os.path.expanduser(path)).resolve()
