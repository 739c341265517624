"""Sizing to VRAM: how many OCR actors and LLM engines a GPU node holds, from arithmetic.

The plan puts OCR actors and the LLM on every card: each OCR actor asks Ray for a
fraction of a GPU that matches its VRAM budget, and the LLM engine takes what is left
(its `gpu_memory_utilization`). KV-cache bytes per token are
`2 (K and V) x layers x kv_heads x head_dim x dtype_bytes`; the cache left after weights
and overheads, divided by one full-context sequence, gives the concurrent sequences.
Nothing here measures speed: the bottleneck it names is the pool the arithmetic limits
first, and `benchmarks/gpu_throughput.py` measures the real one on the node.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from pipeline.config import CONF_DIR, GpuConfig, MedrecConfig

GIB = 1024**3
DEFAULT_LLM_MODEL_FILE = CONF_DIR / "extract" / "vllm.yaml"  # planned when extract is not vllm
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
# Upper bound the plan asks of one engine; the extract config's max_num_seqs overrides it.
MAX_NUM_SEQS_CAP = 256
# Below this many sequences in flight decode is memory-bound and the GPU waits on weights.
MIN_BUSY_SEQS = 16
BYTES_PER_DTYPE = {
    "float32": 4, "float": 4,
    "bfloat16": 2, "float16": 2, "half": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1,
}


@dataclass(frozen=True)
class LlmModelSpec:
    """What the plan needs to know of the extraction LLM; the vllm extract config's keys."""

    model_name: str
    model_path: str
    max_model_len: int
    max_output_tokens: int
    dtype: str
    kv_cache_dtype: str
    weights_gb: float  # GiB of weights on the GPUs, all tensor-parallel shards together
    num_layers: int
    num_kv_heads: int
    head_dim: int
    tensor_parallel_size: int | None = None  # None: from the plan (and the same for the last three)
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    replicas: int | None = None

    @classmethod
    def from_extract_config(cls, mapping: Mapping[str, Any]) -> "LlmModelSpec":
        """Read the keys of an extract config with `backend: vllm`."""
        architecture = mapping["architecture"]
        return cls(
            model_name=mapping["model_name"],
            model_path=mapping["model_path"],
            max_model_len=int(mapping["max_model_len"]),
            max_output_tokens=int(mapping["max_output_tokens"]),
            dtype=mapping["dtype"],
            kv_cache_dtype=mapping.get("kv_cache_dtype") or "auto",
            weights_gb=float(mapping["weights_gb"]),
            num_layers=int(architecture["num_layers"]),
            num_kv_heads=int(architecture["num_kv_heads"]),
            head_dim=int(architecture["head_dim"]),
            tensor_parallel_size=mapping.get("tensor_parallel_size"),
            gpu_memory_utilization=mapping.get("gpu_memory_utilization"),
            max_num_seqs=mapping.get("max_num_seqs"),
            replicas=mapping.get("replicas"),
        )

    @classmethod
    def from_file(cls, path: Path = DEFAULT_LLM_MODEL_FILE) -> "LlmModelSpec":
        from omegaconf import OmegaConf

        # Resolved like Hydra's groups, so `${oc.env:...}` in model_path works the same.
        return cls.from_extract_config(OmegaConf.to_container(OmegaConf.load(path), resolve=True))

    @property
    def kv_dtype_bytes(self) -> int:
        # vLLM's kv_cache_dtype "auto" stores the cache in the model's dtype.
        name = self.dtype if self.kv_cache_dtype == "auto" else self.kv_cache_dtype
        if name not in BYTES_PER_DTYPE:
            raise ValueError(f"unknown dtype {name!r} for model {self.model_name}; known: {sorted(BYTES_PER_DTYPE)}")
        return BYTES_PER_DTYPE[name]

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_dtype_bytes

    @property
    def kv_bytes_per_sequence(self) -> int:
        return self.kv_bytes_per_token * self.max_model_len


@dataclass(frozen=True)
class OcrDemand:
    """One OCR actor's needs: VRAM budget (0: it runs on CPUs) and CPUs."""

    gpu_memory_gb: float
    cpus: float

    @property
    def on_gpu(self) -> bool:
        return self.gpu_memory_gb > 0


@dataclass(frozen=True)
class LlmPlan:
    """The vLLM engine settings the plan sets where the extract config leaves them null."""

    model_name: str
    tensor_parallel_size: int
    replicas_per_node: int
    replicas: int
    gpu_memory_utilization: float
    gpus_per_worker: float  # the Ray GPU request of each tensor-parallel worker
    kv_bytes_per_token: int
    kv_cache_gb_per_replica: float
    kv_gb_per_sequence: float
    max_model_len: int
    max_num_seqs: int


@dataclass(frozen=True)
class Plan:
    """Pool sizes for one GPU profile, and why."""

    gpu: GpuConfig
    ocr_actors_per_gpu: int
    ocr_actors: int  # across all nodes
    ocr_gpus_per_actor: float
    cpus_per_ocr_actor: float
    llm: LlmPlan | None
    cpus_needed_per_node: float
    bottleneck: str
    notes: tuple[str, ...] = field(default=())


def make_plan(gpu: GpuConfig, ocr: OcrDemand, llm: LlmModelSpec | None, other_cpus: float) -> Plan:
    """The plan for `gpu`: OCR actors per card, the LLM's tensor-parallel size, memory
    share and concurrent sequences; `other_cpus` are the CPUs the other pools hold per node.

    Order: the smallest tensor-parallel size that holds the weights and one full-context
    sequence beside one OCR actor per card; then as many OCR actors per card as CPUs, the
    OCR memory share and the LLM's room for MIN_BUSY_SEQS sequences allow; the LLM takes
    the rest. Raises ValueError naming the numbers when the model or one OCR actor does not fit.
    """
    notes: list[str] = []
    llm_cpus = gpu.per_node * gpu.llm_cpus_per_gpu if llm else 0.0
    free_cpus = gpu.cpus_per_node - other_cpus - llm_cpus
    usable_gb = gpu.memory_gb - gpu.reserve_gb
    tp = _tensor_parallel_size(gpu, llm, usable_gb - ocr.gpu_memory_gb) if llm else 0
    if ocr.on_gpu:
        caps = {
            "actors per GPU limit": gpu.max_ocr_actors_per_gpu,
            "OCR memory share": math.floor(usable_gb * (gpu.max_ocr_memory_fraction if llm else 1.0) / ocr.gpu_memory_gb),
            "CPUs": math.floor(free_cpus / (gpu.per_node * ocr.cpus)),
        }
        if llm:
            caps["LLM room"] = max(1, math.floor((usable_gb - _llm_gb_per_gpu(gpu, llm, tp, MIN_BUSY_SEQS))
                                                  / ocr.gpu_memory_gb))
        per_gpu = min(caps.values())
        if per_gpu < 1:
            raise ValueError(f"not one OCR actor per GPU fits ({ocr.gpu_memory_gb} GiB and {ocr.cpus} CPUs each, "
                             f"{free_cpus:g} CPUs free for {gpu.per_node} GPUs): {caps}")
        limited_by = min(caps, key=caps.get)
        # Rounded up so Ray never packs more actors on a card than the VRAM budget allows.
        ocr_gpus = math.ceil(ocr.gpu_memory_gb / gpu.memory_gb * 100) / 100
        ocr_actors_per_node = per_gpu * gpu.per_node
        notes.append(f"OCR actors per GPU limited by {limited_by} ({caps})")
    else:
        per_gpu, ocr_gpus, limited_by = 0, 0.0, "CPUs"
        ocr_actors_per_node = math.floor(free_cpus / ocr.cpus)
        if ocr_actors_per_node < 1:
            raise ValueError(f"no CPUs left for OCR actors: {free_cpus:g} free, {ocr.cpus} each")
        notes.append("OCR runs on CPUs (its backend needs no GPU): actors fill the free CPUs")
    llm_plan = _plan_llm(gpu, llm, tp, per_gpu * ocr.gpu_memory_gb, per_gpu * ocr_gpus, notes) if llm else None
    cpus_needed = other_cpus + llm_cpus + ocr_actors_per_node * ocr.cpus
    if llm_plan and llm_plan.max_num_seqs < MIN_BUSY_SEQS:
        bottleneck = (f"llm kv cache: {llm_plan.max_num_seqs} concurrent sequences per replica at "
                      f"max_model_len {llm_plan.max_model_len}; fp8 KV cache, a shorter context or a larger card raise it")
    elif limited_by == "CPUs":
        bottleneck = (f"cpu: OCR pre/post-processing takes {ocr.cpus:g} CPUs per actor and {free_cpus:g} CPUs "
                      f"are free per node, so {ocr_actors_per_node} OCR actors per node")
    elif llm_plan:
        bottleneck = (f"llm decode: {llm_plan.replicas} replicas x {llm_plan.max_num_seqs} sequences, up to "
                      f"{llm.max_output_tokens} output tokens per page (measure with benchmarks/gpu_throughput.py)")
    else:
        bottleneck = f"ocr: {ocr_actors_per_node * gpu.nodes} actors, no LLM on the GPUs"
    return Plan(gpu=gpu, ocr_actors_per_gpu=per_gpu, ocr_actors=ocr_actors_per_node * gpu.nodes,
                ocr_gpus_per_actor=ocr_gpus, cpus_per_ocr_actor=ocr.cpus, llm=llm_plan,
                cpus_needed_per_node=cpus_needed, bottleneck=bottleneck, notes=tuple(notes))


def _llm_gb_per_gpu(gpu: GpuConfig, llm: LlmModelSpec, tp: int, sequences: int) -> float:
    """GiB per card an engine of `tp` workers needs for its weights, overhead and `sequences` full contexts."""
    return (llm.weights_gb + sequences * llm.kv_bytes_per_sequence / GIB) / tp + gpu.llm_overhead_gb


def _tensor_parallel_size(gpu: GpuConfig, llm: LlmModelSpec, free_gb_per_gpu: float) -> int:
    """The configured size, else the smallest that holds the weights and one full-context sequence."""
    if llm.tensor_parallel_size:
        return llm.tensor_parallel_size
    sizes = [tp for tp in TENSOR_PARALLEL_SIZES if gpu.per_node % tp == 0 and llm.num_kv_heads % tp == 0]
    for tp in sizes:
        if _llm_gb_per_gpu(gpu, llm, tp, 1) <= free_gb_per_gpu:
            return tp
    raise ValueError(
        f"{llm.model_name} ({llm.weights_gb} GiB weights, {llm.kv_bytes_per_sequence / GIB:.2f} GiB KV per "
        f"{llm.max_model_len}-token sequence) does not fit {gpu.per_node} x {gpu.memory_gb:g} GiB "
        f"({free_gb_per_gpu:g} GiB free per card) with tensor-parallel sizes {sizes}")


def _plan_llm(gpu: GpuConfig, llm: LlmModelSpec, tp: int, ocr_gb_per_gpu: float, ocr_gpus_per_gpu: float,
              notes: list[str]) -> LlmPlan:
    """Memory share and concurrent sequences of the LLM engines beside the OCR actors."""
    utilization = llm.gpu_memory_utilization or math.floor(
        (gpu.memory_gb - gpu.reserve_gb - ocr_gb_per_gpu) / gpu.memory_gb * 100) / 100
    # vLLM reserves utilization x card on each worker; the weights are split across them.
    kv_cache_gb = tp * (utilization * gpu.memory_gb - gpu.llm_overhead_gb) - llm.weights_gb
    sequence_gb = llm.kv_bytes_per_sequence / GIB
    fitting = math.floor(kv_cache_gb / sequence_gb)
    if fitting < 1:
        raise ValueError(f"gpu_memory_utilization {utilization} leaves {kv_cache_gb:.2f} GiB of KV cache for "
                         f"{llm.model_name}, less than one {sequence_gb:.2f} GiB sequence")
    max_num_seqs = min(MAX_NUM_SEQS_CAP, fitting)
    if llm.max_num_seqs:
        if llm.max_num_seqs > fitting:
            notes.append(f"max_num_seqs {llm.max_num_seqs} from the extract config exceeds the {fitting} "
                         "full-context sequences the KV cache holds: long pages will be preempted")
        max_num_seqs = llm.max_num_seqs
    replicas_per_node = gpu.per_node // tp
    return LlmPlan(
        model_name=llm.model_name, tensor_parallel_size=tp, replicas_per_node=replicas_per_node,
        replicas=llm.replicas or replicas_per_node * gpu.nodes, gpu_memory_utilization=utilization,
        gpus_per_worker=round(1.0 - ocr_gpus_per_gpu, 2), kv_bytes_per_token=llm.kv_bytes_per_token,
        kv_cache_gb_per_replica=kv_cache_gb, kv_gb_per_sequence=sequence_gb,
        max_model_len=llm.max_model_len, max_num_seqs=max_num_seqs)


def other_pool_cpus(cfg: MedrecConfig) -> float:
    """CPUs per node held by everything but the OCR and LLM pools (and Ray's own share)."""
    res = cfg.resources
    pools = (res.extract, res.code, res.classify, res.validate_pool)
    return sum(p.actors * p.cpus_per_actor for p in pools) + (res.gpu.reserved_cpus if res.gpu else 0.0)


def llm_spec_for(cfg: MedrecConfig, fallback: Path | None = None) -> LlmModelSpec | None:
    """The LLM the run uses (an extract config with backend vllm), else the `fallback` file."""
    extract = cfg.extract.model_dump()
    if extract.get("backend") == "vllm":
        return LlmModelSpec.from_extract_config(extract)
    return LlmModelSpec.from_file(fallback) if fallback else None


def plan_for_config(cfg: MedrecConfig, llm: LlmModelSpec | None) -> Plan:
    """The plan for the config's GPU profile; raises if the profile describes no GPUs."""
    gpu = cfg.resources.gpu
    if gpu is None:
        raise ValueError("the resources profile describes no GPUs: use resources=gpu_24gb|gpu_48gb|gpu_96gb|gpu_node")
    ocr = OcrDemand(gpu_memory_gb=cfg.ocr.gpu_memory_gb_per_actor, cpus=cfg.resources.ocr.cpus_per_actor)
    return make_plan(gpu, ocr, llm, other_pool_cpus(cfg))


# index, name, memory.total (MiB), MIG mode: one line per physical card.
NVIDIA_SMI_QUERY = ("--query-gpu=index,name,memory.total,mig.mode.current", "--format=csv,noheader,nounits")
_MIG_LINE = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+\d+:")
_GPU_LINE = re.compile(r"^GPU\s+(\d+):")


@dataclass(frozen=True)
class DetectedGpu:
    """One physical card as nvidia-smi lists it."""

    index: int
    name: str
    memory_gb: float  # GiB: memory.total / 1024
    mig_enabled: bool = False
    mig_slices: tuple[str, ...] = ()  # MIG profiles of its slices, e.g. ("3g.40gb", "3g.40gb")


@dataclass(frozen=True)
class NodeGpus:
    """The cards of this node the plan sizes, and the ones it leaves out with the reason."""

    planned: tuple[DetectedGpu, ...]
    refused: tuple[tuple[DetectedGpu, str], ...]


def parse_gpu_query(text: str) -> list[DetectedGpu]:
    """Cards from `nvidia-smi --query-gpu=index,name,memory.total,mig.mode.current --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        index, rest = line.split(",", 1)
        name, mib, mig = (part.strip() for part in rest.rsplit(",", 2))
        # "[N/A]" on cards without MIG support, "Enabled"/"Disabled" on the others.
        gpus.append(DetectedGpu(int(index), name.strip(), round(float(mib) / 1024, 1), mig == "Enabled"))
    return gpus


def parse_mig_slices(listing: str) -> dict[int, tuple[str, ...]]:
    """MIG profiles per card index from `nvidia-smi -L` (slices are the indented MIG lines)."""
    slices: dict[int, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if match := _GPU_LINE.match(line):
            current = int(match.group(1))
            slices.setdefault(current, [])
        elif (match := _MIG_LINE.match(line)) and current is not None:
            slices[current].append(match.group(1))
    return {index: tuple(profiles) for index, profiles in slices.items()}


def detect_gpus() -> list[DetectedGpu]:
    """The cards nvidia-smi lists on this node, with their MIG slices; empty without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = subprocess.run(["nvidia-smi", *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=30)
    if query.returncode != 0 or not query.stdout.strip():
        return []
    gpus = parse_gpu_query(query.stdout)
    if any(gpu.mig_enabled for gpu in gpus):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        slices = parse_mig_slices(listing.stdout) if listing.returncode == 0 else {}
        gpus = [replace(gpu, mig_slices=slices.get(gpu.index, ())) for gpu in gpus]
    return gpus


def plannable_gpus(gpus: list[DetectedGpu]) -> NodeGpus:
    """The cards the plan can size, and why it leaves out the others.

    A card in MIG mode is left out: Ray 2.60 counts GPUs with NVML's device count, so a MIG card
    is one GPU to Ray, and the actor given it sees one slice at most under CUDA (by index), not
    the card the plan would size. Of the other cards the largest group of one model is planned
    (the plan sizes every card of a node alike); Ray gives a node's cards out interchangeably,
    so a left-out card must be hidden from Ray (CUDA_VISIBLE_DEVICES at `ray start`).
    """
    refused: list[tuple[DetectedGpu, str]] = []
    whole = []
    for gpu in gpus:
        if gpu.mig_enabled:
            slices = (f"{len(gpu.mig_slices)} slice(s): {', '.join(gpu.mig_slices)}" if gpu.mig_slices
                      else "no slices configured")
            refused.append((gpu, f"MIG mode ({slices}): Ray counts the card as one GPU and its actor sees one "
                                 "slice at most, so per-card pools cannot be sized; disable MIG "
                                 f"(nvidia-smi -i {gpu.index} -mig 0) or start a Ray node per slice with "
                                 "CUDA_VISIBLE_DEVICES=<MIG UUID>"))
        else:
            whole.append(gpu)
    groups: dict[tuple[str, float], list[DetectedGpu]] = {}
    for gpu in whole:
        groups.setdefault((gpu.name, gpu.memory_gb), []).append(gpu)
    if not groups:
        return NodeGpus((), tuple(refused))
    planned = max(groups.values(), key=lambda cards: (len(cards), cards[0].memory_gb))
    keep = ",".join(str(gpu.index) for gpu in planned)
    for gpu in whole:
        if gpu not in planned:
            refused.append((gpu, f"differs from the {len(planned)} x {planned[0].name} {planned[0].memory_gb:g} GiB "
                                 "the plan sizes (one card model per node); Ray hands a node's cards out "
                                 f"interchangeably, so start Ray here with CUDA_VISIBLE_DEVICES={keep} to keep "
                                 "it out, or give it a node of its own"))
    return NodeGpus(tuple(planned), tuple(sorted(refused, key=lambda item: item[0].index)))


def profile_from_detected(gpus: NodeGpus, cpus: int) -> GpuConfig:
    """A one-node GPU profile for the cards the plan can size here."""
    if not gpus.planned:
        raise ValueError("no card on this node can be planned: " + "; ".join(
            f"GPU {gpu.index} ({gpu.name}): {why}" for gpu, why in gpus.refused))
    card = gpus.planned[0]
    return GpuConfig(name=card.name, memory_gb=card.memory_gb, per_node=len(gpus.planned), nodes=1, cpus_per_node=cpus)


def render_refused(gpus: NodeGpus) -> str:
    """One line per card the plan leaves out, with the reason."""
    return "\n".join(f"  not planned: GPU {gpu.index} ({gpu.name}, {gpu.memory_gb:g} GiB): {why}"
                     for gpu, why in gpus.refused)


def render_plan(plan: Plan, source: str) -> str:
    """The plan as the lines `medrec plan` and `medrec run` print."""
    gpu = plan.gpu
    lines = [
        f"GPU plan ({source}): {gpu.nodes} node(s) x {gpu.per_node} x {gpu.name} {gpu.memory_gb:g} GiB, "
        f"{gpu.cpus_per_node} CPUs per node",
        f"  ocr: {plan.ocr_actors_per_gpu} actors per GPU, {plan.ocr_actors} in all, "
        f"{plan.ocr_gpus_per_actor:g} GPU and {plan.cpus_per_ocr_actor:g} CPUs per actor",
    ]
    if plan.llm:
        llm = plan.llm
        lines += [
            f"  llm: {llm.model_name}: tensor_parallel_size {llm.tensor_parallel_size}, {llm.replicas} replicas "
            f"({llm.replicas_per_node} per node), gpu_memory_utilization {llm.gpu_memory_utilization:.2f}, "
            f"{llm.gpus_per_worker:g} GPU per worker",
            f"  kv cache: {llm.kv_bytes_per_token} bytes/token, {llm.kv_gb_per_sequence:.2f} GiB per "
            f"{llm.max_model_len}-token sequence, {llm.kv_cache_gb_per_replica:.1f} GiB per replica -> "
            f"max_num_seqs {llm.max_num_seqs}",
        ]
    else:
        lines.append("  llm: none on the GPUs (extract backend runs on CPU)")
    lines += [f"  cpus: {plan.cpus_needed_per_node:g} of {gpu.cpus_per_node} per node",
              f"  bottleneck: {plan.bottleneck}"]
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)
