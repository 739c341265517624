"""Placing a GPU plan on Ray: one placement group per node, one bundle per card.

Why bundles: Ray packs fractional GPU requests onto the first card with room, so the 32 OCR
actors of an 8 x H100 plan (0.03 GPU each) can all land on card 0 and the eighth LLM replica
then finds no card with its share free. A bundle reserves one card (`GPU: 1`) with the CPUs of
the pool members the plan puts on it; a member scheduled into bundle i is given that card's
GPU id by Ray, so every card gets exactly its planned members.

Why one group per node (STRICT_PACK): a tensor-parallel engine's cards must share a node, and
"node n, card c" must mean one node.

Why per-actor remote args: a Ray Data actor pool is one `map_batches` call with one set of
remote args, yet each member goes to its own bundle. Ray Data 2.60 calls `ray_remote_args_fn`
before it starts each actor of a pool (`ActorPoolMapOperator._start_actor`) and accounts each
actor's own resources; `ray.data.llm`'s vLLM stage uses the same hook for its per-replica
placement groups. Ray marks the hook for removal in 2.64: ray is pinned to 2.60.

Tensor-parallel engines get whole cards, never a fraction above 1 of one (Ray refuses those):
the engine actor holds CPUs only, in its first card's bundle, and vLLM's Ray executor starts
one worker per card in the bundles named by `VLLM_RAY_BUNDLE_INDICES`, each asking
`VLLM_RAY_PER_WORKER_GPUS` (the plan's LLM share of a card): vLLM's documented co-location
mechanism (examples/offline_inference/rlhf_colocate.py).

Start order: vLLM checks free memory against `gpu_memory_utilization` when it starts, so OCR
actors on an LLM's card wait, before loading their model, until that engine is up (a named
gate actor the LLM members open after setup).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipeline.plan import Plan

log = logging.getLogger(__name__)

OCR_STAGE = "ocr"
LLM_STAGE = "extract_llm"
NAME_PREFIX = "medrec-gpu"  # placed members are named actors: prefix/role/cards/share/gate/unique
SLOT_NAME_SEPARATOR = "/"
CARDS_ENV = "MEDREC_CARDS"  # "node:card,..." of the member, from its name
ROLE_ENV = "MEDREC_CARD_ROLE"  # "llm" opens its cards after setup, "ocr" waits for them before
GATE_ENV = "MEDREC_CARD_GATE"  # the gate actor's name; unset: nothing to wait for
GATE_WAIT_S = 1800.0  # a 70B engine loads its shards in minutes; longer means it is not coming
RESERVE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Slot:
    """Where one pool member goes: a node and the cards (bundle indices) it takes there."""

    node: int
    cards: tuple[int, ...]  # more than one for a tensor-parallel engine

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f"{self.node}:{card}" for card in self.cards)


@dataclass(frozen=True)
class PoolLayout:
    """One actor pool of the plan: its members' slots and what each member asks of Ray."""

    stage: str
    role: str  # "llm" or "ocr"
    slots: tuple[Slot, ...]
    num_cpus: float
    num_gpus: float  # the actor's own request; 0 for a tensor-parallel engine (its workers hold the cards)
    worker_gpus: float = 0.0  # each tensor-parallel worker's share of its card
    memory_bytes: int = 0

    def share_of(self, slot: Slot) -> float:
        """This member's GPU share of each card it covers."""
        return self.worker_gpus if len(slot.cards) > 1 else self.num_gpus


@dataclass(frozen=True)
class GpuLayout:
    """The plan as members per card: what each bundle reserves and who goes there."""

    nodes: int
    cards_per_node: int
    pools: tuple[PoolLayout, ...]

    def pool(self, stage: str) -> PoolLayout | None:
        return next((pool for pool in self.pools if pool.stage == stage), None)

    def bundles(self, node: int) -> list[dict[str, float]]:
        """One bundle per card of `node`: the whole card, and the CPUs and memory of the members
        whose slot starts there (a tensor-parallel engine's actor sits on its first card)."""
        bundles: list[dict[str, float]] = [{"GPU": 1.0, "CPU": 0.0} for _ in range(self.cards_per_node)]
        for pool in self.pools:
            for slot in pool.slots:
                if slot.node == node:
                    first = bundles[slot.cards[0]]
                    first["CPU"] += pool.num_cpus
                    if pool.memory_bytes:
                        first["memory"] = first.get("memory", 0.0) + pool.memory_bytes
        return bundles

    def members(self, node: int, card: int) -> list[tuple[str, float]]:
        """(role, GPU share) of every member that uses `card` of `node`."""
        return [(pool.role, pool.share_of(slot)) for pool in self.pools for slot in pool.slots
                if slot.node == node and card in slot.cards]

    def llm_cards(self) -> frozenset[str]:
        """The cards an LLM engine uses: OCR actors there start after it."""
        return frozenset(key for pool in self.pools if pool.role == "llm" for slot in pool.slots for key in slot.keys)

    def render(self) -> str:
        """Planned members per card, one line per card."""
        lines = []
        for node in range(self.nodes):
            for card in range(self.cards_per_node):
                members = self.members(node, card)
                shares = sum(share for _, share in members)
                ocr = [share for role, share in members if role == "ocr"]
                llm = [share for role, share in members if role == "llm"]
                spans = [slot.cards for pool in self.pools if pool.role == "llm" for slot in pool.slots
                         if slot.node == node and card in slot.cards and len(slot.cards) > 1]
                tensor_parallel = f" (worker of the tensor-parallel engine on cards {','.join(map(str, spans[0]))})" if spans else ""
                parts = (([f"llm share {llm[0]:g}{tensor_parallel}"] if llm else [])
                         + ([f"{len(ocr)} ocr x {ocr[0]:g}"] if ocr else []))
                lines.append(f"  node {node} card {card}: {', '.join(parts) or 'idle'} (GPU {shares:.2f} of 1)")
        return "\n".join(lines)


def layout_for_plan(plan: Plan, llm_cpus: float = 1.0, ocr_memory_mb: int | None = None) -> GpuLayout | None:
    """The plan's OCR actors and LLM engines as slots per card; None when nothing runs on the GPUs.

    OCR slots go round the cards (card by card, node by node) so a pool started short is still
    spread; an engine of tensor-parallel size k takes k consecutive cards of one node.
    """
    gpu = plan.gpu
    pools = []
    if plan.llm is not None:
        tp = plan.llm.tensor_parallel_size
        capacity = (gpu.per_node // tp) * gpu.nodes
        if plan.llm.replicas > capacity:
            raise ValueError(f"{plan.llm.replicas} LLM replicas of tensor-parallel size {tp} do not fit "
                             f"{gpu.nodes} node(s) x {gpu.per_node} cards ({capacity} engines at most)")
        slots = [Slot(node, tuple(range(r * tp, (r + 1) * tp)))
                 for r in range(gpu.per_node // tp) for node in range(gpu.nodes)][:plan.llm.replicas]
        share = plan.llm.gpus_per_worker
        pools.append(PoolLayout(LLM_STAGE, "llm", tuple(slots), num_cpus=llm_cpus,
                                num_gpus=share if tp == 1 else 0.0, worker_gpus=share if tp > 1 else 0.0))
    if plan.ocr_gpus_per_actor > 0:
        slots = [Slot(node, (card,)) for _ in range(plan.ocr_actors_per_gpu)
                 for card in range(gpu.per_node) for node in range(gpu.nodes)]
        pools.append(PoolLayout(OCR_STAGE, "ocr", tuple(slots), num_cpus=plan.cpus_per_ocr_actor,
                                num_gpus=plan.ocr_gpus_per_actor,
                                memory_bytes=(ocr_memory_mb or 0) * 1024 * 1024))
    if not pools:
        return None
    return GpuLayout(nodes=gpu.nodes, cards_per_node=gpu.per_node, pools=tuple(pools))


class SlotAssigner:
    """Remote args for each new member of a pool (Ray Data's `ray_remote_args_fn`): the next
    planned slot's bundle, its GPU share, and an actor name that tells the member its slot.

    The pool starts its members in one burst, one call each, so they take the slots in order.
    A later call replaces a member whose constructor raised (Ray restarts crashed members in
    their own bundle without asking): it takes a slot whose bundle has room again.
    """

    def __init__(self, pool: PoolLayout, groups: list[Any], gate_name: str | None, gated: frozenset[str]):
        self.pool, self.groups, self.gate_name, self.gated = pool, groups, gate_name, gated
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        slot = self.pool.slots[self.calls] if self.calls < len(self.pool.slots) else self._slot_with_room()
        self.calls += 1
        return self.remote_args(slot)

    def remote_args(self, slot: Slot) -> dict[str, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        waits = self.pool.role == "ocr" and any(key in self.gated for key in slot.keys)
        gate = self.gate_name if self.gate_name and (self.pool.role == "llm" or waits) else ""
        tensor_parallel = len(slot.cards) > 1
        args: dict[str, Any] = dict(
            num_cpus=self.pool.num_cpus,
            num_gpus=self.pool.num_gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.groups[slot.node], placement_group_bundle_index=slot.cards[0],
                # vLLM's workers must join this node's group, not start a group of their own.
                placement_group_capture_child_tasks=tensor_parallel),
            # The member learns its slot from its name (`enter_slot`). A per-actor runtime_env
            # would do too, but Ray then starts a fresh worker per environment: 16 actors took
            # 44 s to start instead of 26 s on the 2-core test machine.
            name=SLOT_NAME_SEPARATOR.join((NAME_PREFIX, self.pool.role, ",".join(slot.keys),
                                           f"{self.pool.worker_gpus:g}", gate, uuid.uuid4().hex[:8])),
        )
        if self.pool.memory_bytes:
            args["memory"] = self.pool.memory_bytes
        return args

    def _slot_with_room(self) -> Slot:
        import ray

        free = ray.available_resources()
        for slot in self.pool.slots:
            suffix = f"_group_{slot.cards[0]}_{self.groups[slot.node].id.hex()}"
            if (free.get("CPU" + suffix, 0.0) >= self.pool.num_cpus
                    and free.get("GPU" + suffix, 0.0) >= self.pool.num_gpus - 1e-4):
                return slot
        log.warning("pool %s: no planned card has room for a replacement member; using the next slot in turn",
                    self.pool.stage)
        return self.pool.slots[self.calls % len(self.pool.slots)]


@dataclass
class Placement:
    """The reserved placement groups and gate of one run, and each placed pool's assigner."""

    layout: GpuLayout
    groups: list[Any]
    gate: Any = None
    assigners: dict[str, SlotAssigner] = field(default_factory=dict)

    def release(self) -> None:
        """Return the reserved cards to Ray (a finished job releases them anyway); once."""
        import ray

        if not self.groups:
            return
        for group in self.groups:
            ray.util.remove_placement_group(group)
        if self.gate is not None:
            ray.kill(self.gate)
        self.groups, self.gate = [], None


# The placements this driver reserved: a driver that builds a second graph (a benchmark, the
# GPU self-check) frees the cards of the first before it reserves them again.
_RESERVED: list[Placement] = []


def release_reserved() -> None:
    """Free every placement this driver reserved."""
    while _RESERVED:
        _RESERVED.pop().release()


def reserve(layout: GpuLayout, timeout_s: float = RESERVE_TIMEOUT_S) -> Placement:
    """Reserve one placement group per node and start the gate; raises when the cluster
    cannot hold the layout, naming what was asked."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.placement_group import placement_group

    release_reserved()

    groups = [placement_group(layout.bundles(node), strategy="STRICT_PACK", name=f"medrec-gpu-node-{node}")
              for node in range(layout.nodes)]
    try:
        ray.get([group.ready() for group in groups], timeout=timeout_s)
    except GetTimeoutError:
        for group in groups:
            ray.util.remove_placement_group(group)
        raise RuntimeError(
            f"the cluster cannot hold the GPU plan: {layout.nodes} node(s), each {layout.bundles(0)} "
            f"(one bundle per card), not reserved within {timeout_s:g} s; the cluster has "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs and {ray.cluster_resources().get('CPU', 0):g} CPUs. "
            "Check resources.gpu (per_node, nodes, cpus_per_node) against the nodes") from None
    gated = layout.llm_cards() if any(pool.role == "ocr" for pool in layout.pools) else frozenset()
    gate, gate_name = None, None
    if gated:
        gate_name = f"medrec-card-gate-{uuid.uuid4().hex[:12]}"
        gate = ray.remote(num_cpus=0)(CardGate).options(name=gate_name).remote()
    placement = Placement(layout, groups, gate)
    for pool in layout.pools:
        placement.assigners[pool.stage] = SlotAssigner(pool, groups, gate_name, gated)
    log.info("gpu placement reserved: %d node group(s), %d card(s) per node", layout.nodes, layout.cards_per_node)
    _RESERVED.append(placement)
    return placement


class CardGate:
    """Per card, whether its LLM engine is up (an async Ray actor: waiters hold no thread)."""

    def __init__(self) -> None:
        self._open: dict[str, asyncio.Event] = {}

    def _event(self, key: str) -> asyncio.Event:
        return self._open.setdefault(key, asyncio.Event())

    async def open(self, keys: list[str]) -> None:
        for key in keys:
            self._event(key).set()

    async def wait(self, keys: list[str]) -> None:
        await asyncio.gather(*(self._event(key).wait() for key in keys))


def enter_slot() -> None:
    """In a pool member placed by a SlotAssigner: put its slot into the environment (its cards
    and role for the gate; for a tensor-parallel engine, the bundles and share vLLM's Ray
    executor reads). Elsewhere a no-op."""
    import ray

    name = ray.get_runtime_context().get_actor_name() if ray.is_initialized() else None
    if not name or not name.startswith(NAME_PREFIX + SLOT_NAME_SEPARATOR):
        return
    _, role, keys, worker_gpus, gate, _ = name.split(SLOT_NAME_SEPARATOR)
    os.environ.update({ROLE_ENV: role, CARDS_ENV: keys})
    if gate:
        os.environ[GATE_ENV] = gate
    cards = [key.split(":")[1] for key in keys.split(",")]
    if len(cards) > 1:
        os.environ["VLLM_RAY_BUNDLE_INDICES"] = ",".join(cards)
        os.environ["VLLM_RAY_PER_WORKER_GPUS"] = worker_gpus


def wait_for_cards() -> None:
    """In an OCR actor on an LLM's card: block until that engine has taken its memory."""
    gate, keys = _gate_from_env()
    if gate is None or os.environ.get(ROLE_ENV) != "ocr":
        return
    import ray
    from ray.exceptions import GetTimeoutError

    try:
        ray.get(gate.wait.remote(keys), timeout=GATE_WAIT_S)
    except GetTimeoutError:
        raise RuntimeError(f"the LLM engine on card(s) {keys} was not up after {GATE_WAIT_S:g} s; "
                           "OCR does not start beside it before it has taken its memory") from None


def open_cards() -> None:
    """In an LLM actor, after its engine is up: let the OCR actors on its cards start."""
    gate, keys = _gate_from_env()
    if gate is not None and os.environ.get(ROLE_ENV) == "llm":
        import ray

        ray.get(gate.open.remote(keys))


def _gate_from_env() -> tuple[Any, list[str]]:
    name = os.environ.get(GATE_ENV)
    if not name:
        return None, []
    import ray

    return ray.get_actor(name), os.environ.get(CARDS_ENV, "").split(",")
