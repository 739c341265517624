"""The GPU plan placed on Ray: every pool member gets the card the plan gives it.

The cluster tests start `ray.cluster_utils.Cluster` with two nodes of four declared GPUs (no
real GPU): Ray hands out GPU ids from its own accounting, which is what is checked. The pools
run through the real adapter (`apply_stage`) as Ray Data actor pools; their stages are probes
that record, in setup, the GPU ids Ray gave them. A tensor-parallel probe does what vLLM's Ray
executor does with VLLM_RAY_BUNDLE_INDICES / VLLM_RAY_PER_WORKER_GPUS (one worker actor per
named bundle of the current placement group, asking the per-worker share), since vLLM itself
cannot run here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest
import ray
import ray._private.auto_init_hook
import ray.cluster_utils

from pipeline.config import GpuConfig, load_config
from pipeline.graph import engine_actor_gpus
from pipeline.llm.engines import vllm_engine_kwargs
from pipeline.placement import (CARDS_ENV, LLM_STAGE, OCR_STAGE, ROLE_ENV, GpuLayout, PoolLayout, Slot, layout_for_plan,
                                reserve)
from pipeline.plan import LlmModelSpec, OcrDemand, Plan, make_plan
from pipeline.ray_adapter import apply_stage
from pipeline.stages.base import Resources, Stage
from tests.test_plan import LLAMA_70B, QWEN3_8B

NODES, CARDS_PER_NODE, CPUS_PER_NODE = 2, 4, 24
LLM_SETUP_S = 1.5  # the LLM probe's load time: OCR probes on its cards must start after it


def profile_plan(profile: str, cpus_per_node: int, llm: dict = QWEN3_8B) -> Plan:
    """The profile's card, OCR demand and LLM, planned for the test cluster's 2 nodes x 4 cards."""
    cfg = load_config([f"resources={profile}"])
    gpu = cfg.resources.gpu.model_copy(update=dict(per_node=CARDS_PER_NODE, nodes=NODES, cpus_per_node=cpus_per_node))
    ocr = OcrDemand(gpu_memory_gb=cfg.ocr.gpu_memory_gb_per_actor, cpus=cfg.resources.ocr.cpus_per_actor)
    return make_plan(gpu, ocr, LlmModelSpec.from_extract_config(llm), other_cpus=2)


def test_the_h100_plan_puts_four_ocr_actors_and_one_llm_share_on_every_card() -> None:
    plan = make_plan(GpuConfig(name="H100", memory_gb=80, per_node=8, cpus_per_node=224),
                     OcrDemand(gpu_memory_gb=2.0, cpus=2.0), LlmModelSpec.from_extract_config(QWEN3_8B), other_cpus=19)

    layout = layout_for_plan(plan, llm_cpus=1.0)

    # 8 cards, each: the LLM's 0.88 and 4 OCR actors x 0.03 = 1.00; CPUs 4 x 2 + 1.
    assert layout.bundles(0) == [{"GPU": 1.0, "CPU": 9.0}] * 8
    for card in range(8):
        members = layout.members(0, card)
        assert sorted(members) == [("llm", 0.88)] + [("ocr", 0.03)] * 4
        assert sum(share for _, share in members) == pytest.approx(1.0)
    # The OCR slots go round the cards, so a pool started short is still spread.
    assert [slot.cards[0] for slot in layout.pool(OCR_STAGE).slots[:8]] == list(range(8))


def test_the_70b_plan_takes_whole_cards_in_tensor_parallel_pairs() -> None:
    # tests/test_plan.py's 70B plan: 8 x H100, tensor-parallel 2, 4 replicas, 1 OCR actor per card.
    plan = make_plan(GpuConfig(name="H100", memory_gb=80, per_node=8, cpus_per_node=224),
                     OcrDemand(gpu_memory_gb=2.0, cpus=2.0), LlmModelSpec.from_extract_config(LLAMA_70B), other_cpus=19)

    layout = layout_for_plan(plan, llm_cpus=1.0)
    llm = layout.pool(LLM_STAGE)

    assert [slot.cards for slot in llm.slots] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    # No request above one card: the engine actor holds CPUs only, each worker 0.97 of its own card.
    assert (llm.num_gpus, llm.worker_gpus) == (0.0, 0.97)
    assert engine_actor_gpus(2, 0.97, placed=True) == 0.0
    for card in range(8):
        assert sorted(layout.members(0, card)) == [("llm", 0.97), ("ocr", 0.03)]
    # The engine actor's CPU sits on its first card's bundle.
    assert [bundle["CPU"] for bundle in layout.bundles(0)] == [3.0, 2.0] * 4


def test_an_unplanned_tensor_parallel_engine_asks_for_whole_cards() -> None:
    assert engine_actor_gpus(2, 1.0, placed=False) == 2.0
    assert engine_actor_gpus(1, 0.88, placed=True) == 0.88
    kwargs = partial(vllm_engine_kwargs, "/models/x", "x", 8192, "bfloat16", "auto", 2, 0.9, 16)
    assert kwargs(placed=True)["distributed_executor_backend"] == "ray"
    assert kwargs(placed=False)["distributed_executor_backend"] == "mp"


def test_more_replicas_than_the_cards_hold_are_refused() -> None:
    spec = LlmModelSpec.from_extract_config({**QWEN3_8B, "replicas": 9})
    plan = make_plan(GpuConfig(name="H100", memory_gb=80, per_node=8, cpus_per_node=224),
                     OcrDemand(gpu_memory_gb=2.0, cpus=2.0), spec, other_cpus=19)

    with pytest.raises(ValueError, match="9 LLM replicas .* do not fit 1 node"):
        layout_for_plan(plan)


# --- on a Ray cluster ------------------------------------------------------------------------


class _PlacementProbe(Stage):
    """Records, in setup, where Ray put this pool member; its batches wait until every member of
    the run has recorded, so the dataset cannot finish (and kill members) before."""

    def __init__(self, name: str, record_dir: Path, members: int, resources: Resources):
        super().__init__(resources)
        self.name, self.record_dir, self.members = name, record_dir, members

    def setup(self) -> None:
        started = time.time()
        record = {"role": os.environ[ROLE_ENV], "cards": os.environ[CARDS_ENV].split(","),
                  "node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                  "started": started}
        if record["role"] == "llm":
            time.sleep(LLM_SETUP_S)  # the engine loading its weights
            record["workers"] = self._start_tensor_parallel_workers()
        record["ended"] = time.time()
        (self.record_dir / f"{record['role']}-{os.getpid()}.json").write_text(json.dumps(record))

    @staticmethod
    def _start_tensor_parallel_workers() -> list[dict]:
        """What vLLM's Ray executor does with the two variables: a worker per named bundle."""
        bundles = os.environ.get("VLLM_RAY_BUNDLE_INDICES")
        if not bundles:
            return []
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = ray.util.get_current_placement_group()
        share = float(os.environ["VLLM_RAY_PER_WORKER_GPUS"])
        worker = ray.remote(num_cpus=0, num_gpus=share)(_TensorParallelWorker)
        workers = [worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=int(bundle))).remote() for bundle in bundles.split(",")]
        return ray.get([w.where.remote() for w in workers])

    def process_batch(self, batch: pa.Table) -> pa.Table:
        deadline = time.time() + 240
        while len(list(self.record_dir.glob("*.json"))) < self.members and time.time() < deadline:
            time.sleep(0.2)
        return batch


class _TensorParallelWorker:
    def where(self) -> dict:
        return {"node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(i) for i in ray.get_gpu_ids()]}


@pytest.fixture(scope="module")
def gpu_cluster():
    """A head with CPUs only and two nodes of four declared GPUs each."""
    # A Ray Data thread winding down must not auto-connect the driver again (see test_ray_adapter).
    auto_connect = ray._private.auto_init_hook.enable_auto_connect
    ray._private.auto_init_hook.enable_auto_connect = False
    cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 0})
    for _ in range(NODES):
        cluster.add_node(num_cpus=CPUS_PER_NODE, num_gpus=CARDS_PER_NODE)
    ray.init(address=cluster.address, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    ray._private.auto_init_hook.enable_auto_connect = auto_connect


def place_and_run(layout: GpuLayout, record_dir: Path) -> list[dict]:
    """Reserve the layout, run both pools as Ray Data actor pools through the adapter, and
    return what every member recorded."""
    placement = reserve(layout, timeout_s=60)
    members = sum(len(pool.slots) for pool in layout.pools)
    try:
        # Two blocks are enough: each batch waits until every member has recorded its setup.
        dataset = ray.data.from_items([{"row": i} for i in range(2)], override_num_blocks=2)
        for pool in reversed(layout.pools):  # the graph's order: OCR, then the LLM stage
            resources = Resources(num_cpus=pool.num_cpus, num_gpus=pool.num_gpus, batch_size=1,
                                  concurrency=len(pool.slots))
            dataset = apply_stage(dataset, partial(_PlacementProbe, pool.stage, record_dir, members, resources),
                                  placement.assigners)
        assert len(dataset.take_all()) == 2
    finally:
        placement.release()
    return [json.loads(path.read_text()) for path in sorted(record_dir.glob("*.json"))]


def assert_placed_as_planned(layout: GpuLayout, records: list[dict]) -> dict[tuple[str, str], Counter]:
    """Every member on its planned card; returns the placed members per (node, GPU id)."""
    by_card: dict[str, list[dict]] = defaultdict(list)  # "node:card" of the plan -> members that use it
    gpu_of_card: dict[str, tuple[str, str]] = {}  # "node:card" of the plan -> (Ray node, GPU id) given
    placed: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for record in records:
        given = ([(w["node"], w["gpu_ids"]) for w in record["workers"]] if record.get("workers")
                 else [(record["node"], record["gpu_ids"])] * len(record["cards"]))
        for key, (node, gpu_ids) in zip(record["cards"], given, strict=True):
            assert len(gpu_ids) == 1, f"a member of card {key} was given GPUs {gpu_ids}"
            assert gpu_of_card.setdefault(key, (node, gpu_ids[0])) == (node, gpu_ids[0]), \
                f"the members of card {key} were given different GPUs"
            by_card[key].append(record)
            placed[(node, gpu_ids[0])][record["role"]] += 1
    # Distinct planned cards are distinct GPUs, and a planned node is one Ray node.
    assert len(set(gpu_of_card.values())) == len(gpu_of_card) == layout.nodes * layout.cards_per_node
    for node in range(layout.nodes):
        assert len({gpu_of_card[f"{node}:{card}"][0] for card in range(layout.cards_per_node)}) == 1
        for card in range(layout.cards_per_node):
            key = f"{node}:{card}"
            planned = Counter(role for role, _ in layout.members(node, card))
            assert placed[gpu_of_card[key]] == planned, f"card {key}: placed {placed[gpu_of_card[key]]}, planned {planned}"
            # The LLM engine took its memory before any OCR actor on its card began loading.
            llm_ready = [r["ended"] for r in by_card[key] if r["role"] == "llm"]
            if llm_ready:
                assert all(r["started"] >= max(llm_ready) for r in by_card[key] if r["role"] == "ocr")
    return placed


@pytest.mark.slow
@pytest.mark.parametrize("profile, cpus_per_node", [("gpu_24gb", 16), ("gpu_48gb", 16), ("gpu_96gb", 16),
                                                    ("gpu_node", 24)])
def test_every_member_of_a_profile_gets_its_planned_card(gpu_cluster, profile: str, cpus_per_node: int,
                                                         tmp_path: Path) -> None:
    layout = layout_for_plan(profile_plan(profile, cpus_per_node), llm_cpus=1.0)

    placed = assert_placed_as_planned(layout, place_and_run(layout, tmp_path))

    print(f"\n{profile} on 2 nodes x 4 declared GPUs: planned\n{layout.render()}\n"
          f"placed (Ray node, GPU id): members: "
          + "; ".join(f"{node[:6]} GPU {gpu}: {dict(roles)}" for (node, gpu), roles in sorted(placed.items())))


@pytest.mark.slow
def test_a_tensor_parallel_2_plan_gives_each_worker_its_own_card(gpu_cluster, tmp_path: Path) -> None:
    # The 70B model of tests/test_plan.py on H100-sized cards of the test cluster: TP 2.
    plan = profile_plan("gpu_node", 16, llm=LLAMA_70B)
    assert plan.llm.tensor_parallel_size == 2 and plan.llm.replicas == 4
    layout = layout_for_plan(plan, llm_cpus=1.0)

    records = place_and_run(layout, tmp_path)
    placed = assert_placed_as_planned(layout, records)

    engines = [r for r in records if r["role"] == "llm"]
    assert len(engines) == 4 and all(r["gpu_ids"] == [] and len(r["workers"]) == 2 for r in engines)
    print(f"\n70B TP-2 on 2 nodes x 4 declared GPUs: planned\n{layout.render()}\nplaced: "
          + "; ".join(f"{node[:6]} GPU {gpu}: {dict(roles)}" for (node, gpu), roles in sorted(placed.items())))


@pytest.mark.slow
def test_a_replacement_member_takes_the_card_that_has_room(gpu_cluster) -> None:
    # Two cards of one node, one OCR actor each; card 0's member is up, card 1's died in its constructor.
    layout = GpuLayout(nodes=1, cards_per_node=2, pools=(PoolLayout(
        OCR_STAGE, "ocr", (Slot(0, (0,)), Slot(0, (1,))), num_cpus=1.0, num_gpus=0.5),))
    placement = reserve(layout, timeout_s=60)
    try:
        assigner = placement.assigners[OCR_STAGE]
        first = assigner()
        assigner()  # card 1's member, whose constructor raised
        member = ray.remote(_TensorParallelWorker).options(**first).remote()
        assert ray.get(member.where.remote())["gpu_ids"]
        group = placement.groups[0].id.hex()
        deadline = time.time() + 30
        while ray.available_resources().get(f"CPU_group_0_{group}", 0.0) > 0 and time.time() < deadline:
            time.sleep(0.2)  # the resource view catches up with the member's start

        replacement = assigner()

        assert replacement["scheduling_strategy"].placement_group_bundle_index == 1
    finally:
        placement.release()
