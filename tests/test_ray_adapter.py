"""A GPU plan's OCR actors on a multi-node Ray cluster: they land on the nodes that have GPUs.

The cluster is started in the test (`ray.cluster_utils.Cluster`); its worker nodes declare
GPUs that do not exist, so the OCR actors run their CPU (ONNX) engine while Ray places
them by the fractional GPU they request, as on a real GPU node.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import ray
import ray._private.auto_init_hook
import ray.cluster_utils

from pipeline.config import GpuConfig, load_config
from pipeline.graph import ocr_resources
from pipeline.ocr_models import ensure_ocr_model_dirs
from pipeline.offline import OFFLINE_ENV
from pipeline.plan import OcrDemand, make_plan
from pipeline.ray_adapter import apply_stage, apply_stages
from pipeline.schemas import page_rows_to_table
from pipeline.stages.base import Resources, Stage
from pipeline.stages.ocr import OcrStage
from tests.stages.test_ocr import draw_page, page_row


def ocr_stage_recording_placement(record_dir: Path, **stage_args) -> OcrStage:
    """Builds the real OCR stage; inside an actor it also writes where Ray placed it."""
    context = ray.get_runtime_context()
    if context.get_actor_id() is not None:
        (record_dir / f"actor-{os.getpid()}.json").write_text(json.dumps(
            {"node_id": context.get_node_id(), "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()]}))
    return OcrStage(**stage_args)


@pytest.fixture()
def gpu_cluster(monkeypatch: pytest.MonkeyPatch):
    """A head node with CPUs only and two worker nodes with one GPU each (declared, not real)."""
    # A Ray Data thread still winding down after the test must not auto-connect the driver to
    # this cluster again: Cluster.shutdown refuses to remove a head the driver is connected to.
    # (RAY_ENABLE_AUTO_CONNECT=0 is read once, when Ray is imported: the flag it sets is patched.)
    monkeypatch.setattr(ray._private.auto_init_hook, "enable_auto_connect", False)
    cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    gpu_nodes = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address, runtime_env={"env_vars": OFFLINE_ENV}, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield {node.node_id for node in gpu_nodes}
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_planned_ocr_actors_land_on_the_gpu_nodes(gpu_cluster: set[str], tmp_path: Path) -> None:
    gpu = GpuConfig(name="declared", memory_gb=8, per_node=1, nodes=2, cpus_per_node=2, max_ocr_actors_per_gpu=1)
    plan = make_plan(gpu, OcrDemand(gpu_memory_gb=2, cpus=0.5), None, other_cpus=0)
    # 2 GiB of an 8 GiB card = 0.25 GPU per actor; one actor per GPU on two nodes.
    assert (plan.ocr_actors, plan.ocr_gpus_per_actor) == (2, 0.25)
    ensure_ocr_model_dirs(tmp_path / "models")  # built once here, as `medrec run` does on the driver
    # The OCR pool's Resources exactly as the graph derives them from a plan (batches of 2 pages).
    resources = ocr_resources(load_config(["resources=gpu_24gb", "resources.ocr.batch_size=2"]), plan)
    assert (resources.num_gpus, resources.concurrency) == (0.25, 2)
    factory = partial(ocr_stage_recording_placement, tmp_path, model_dir=str(tmp_path / "models"),
                      cpu_threads=1, resources=resources)
    rows = [page_row(i, image=draw_page(["BP 132/84 mmHg"]), text_source="ocr") for i in range(4)]

    # Two blocks, so both actors of the pool get pages.
    blocks = [page_rows_to_table(rows[:2]), page_rows_to_table(rows[2:])]
    pages = apply_stage(ray.data.from_arrow(blocks), factory).take_all()

    assert sorted(page["page_index"] for page in pages) == [0, 1, 2, 3]
    assert all(page["error_stage"] is None and page["lines"] for page in pages)
    placements = [json.loads(path.read_text()) for path in tmp_path.glob("actor-*.json")]
    assert len(placements) == plan.ocr_actors
    assert {placement["node_id"] for placement in placements} <= gpu_cluster
    assert all(placement["gpu_ids"] for placement in placements)



class _NiceProbe(Stage):
    """Writes the OS niceness its worker runs at into one string column of each row."""

    name = "nice_probe"

    def __init__(self, column: str, resources: Resources):
        super().__init__(resources)
        self.column = column

    def process_page(self, row: dict) -> dict:
        return {**row, self.column: str(os.nice(0))}


def test_an_actor_pool_runs_at_its_declared_niceness_above_the_other_workers() -> None:
    ray.init(address="local", num_cpus=1, runtime_env={"env_vars": OFFLINE_ENV}, log_to_driver=False)
    try:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
        rows = [page_row(i, image=None, text_source="ocr") for i in range(2)]
        dataset = ray.data.from_arrow(page_rows_to_table(rows))
        for column, nice in (("text_source", 0), ("document_type_predicted", 3)):
            dataset = apply_stage(dataset, partial(_NiceProbe, column, Resources(num_cpus=0.4, batch_size=2,
                                                                                concurrency=1, nice=nice)))
        pages = dataset.take_all()
    finally:
        ray.shutdown()

    # Ray starts its workers niced already (15 by default); a pool's `nice` adds to that.
    assert [int(p["document_type_predicted"]) - int(p["text_source"]) for p in pages] == [3, 3]


class _AbortsOnMarkedPage(Stage):
    """Ends its worker process with os.abort() (as a native crash would) on the page marked
    by its `mrn` column; adds a marker to every other page."""

    name = "aborter"

    def process_page(self, row: dict) -> dict:
        if row["mrn"] == "abort":
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file for a deliberate crash
            os.abort()
        return {**row, "text_source": "done"}


class _BlockBug(Stage):
    """A bug outside the page loop: every block it is given raises."""

    name = "block_bug"

    def process_batch(self, batch):
        raise KeyError("a column this stage expected")


@pytest.fixture()
def local_ray():
    # address="local": a fresh Ray even when another cluster on this machine was started with `ray start`.
    ray.init(address="local", num_cpus=2, runtime_env={"env_vars": OFFLINE_ENV}, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield
    ray.shutdown()


@pytest.mark.slow  # each worker death restarts a Ray worker: tens of seconds
@pytest.mark.parametrize("concurrency", [1, None], ids=["actor_pool", "tasks"])
def test_a_page_that_kills_its_worker_is_quarantined_and_its_batch_neighbours_are_processed(
        local_ray, concurrency: int | None) -> None:
    rows = [page_row(i, image=None, text_source="ocr", mrn="abort" if i == 2 else None) for i in range(6)]
    dataset = ray.data.from_arrow([page_rows_to_table(rows[:4]), page_rows_to_table(rows[4:])])
    stage = partial(_AbortsOnMarkedPage, Resources(num_cpus=0.5, batch_size=4, concurrency=concurrency))

    pages = sorted(apply_stage(dataset, stage).take_all(), key=lambda page: page["page_index"])

    assert [page["page_index"] for page in pages] == [0, 1, 2, 3, 4, 5]
    killer = pages.pop(2)
    assert (killer["error_stage"], killer["error_type"]) == ("aborter", "worker_died")
    assert all(page["error_stage"] is None and page["text_source"] == "done" for page in pages)


def test_a_block_that_fails_as_a_whole_has_every_page_quarantined_and_the_run_goes_on(local_ray) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(3)]
    failed_earlier = {**page_row(3, image=None), "error_stage": "render", "error_type": "corrupt_file"}
    dataset = ray.data.from_arrow(page_rows_to_table([*rows, failed_earlier]))

    pages = sorted(apply_stage(dataset, partial(_BlockBug, Resources(batch_size=4))).take_all(),
                   key=lambda page: page["page_index"])

    assert [(p["error_stage"], p["error_type"], p["error_message"]) for p in pages[:3]] == [
        ("block_bug", "block_failed", "KeyError")] * 3
    assert (pages[3]["error_stage"], pages[3]["error_type"]) == ("render", "corrupt_file")


class _BatchSizeProbe(Stage):
    """Writes into `text_source` how many pages the batch it came in held."""

    name = "batch_size_probe"

    def process_pages(self, rows: list[dict]) -> list[dict]:
        return [{**row, "text_source": str(len(rows))} for row in rows]


@pytest.mark.parametrize("concurrency", [1, None], ids=["actor_pool", "tasks"])
def test_a_stage_that_takes_blocks_as_batches_keeps_a_one_page_first_block_alone(
        local_ray, concurrency: int | None) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(5)]
    blocks = [page_rows_to_table(rows[:1]), page_rows_to_table(rows[1:3]), page_rows_to_table(rows[3:])]
    stage = partial(_BatchSizeProbe, Resources(num_cpus=0.5, batch_size=4, concurrency=concurrency))

    def batch_sizes(**kwargs) -> list[str]:
        pages = apply_stage(ray.data.from_arrow(blocks), stage, **kwargs).take_all()
        return [p["text_source"] for p in sorted(pages, key=lambda p: p["page_index"])]

    assert batch_sizes(blocks_as_batches=True) == ["1", "2", "2", "2", "2"]
    assert batch_sizes()[:4] == ["4"] * 4  # otherwise bundled up to the stage's batch size


class _SetupProbe(Stage):
    """Writes into `column` the process it ran in and how many times its setup ran there."""

    def __init__(self, name: str, column: str, fail_setup: bool = False):
        super().__init__(Resources(num_cpus=0.2, batch_size=2, concurrency=1, memory_mb=64))
        self.name, self.column, self.fail_setup, self.setups = name, column, fail_setup, 0

    def setup(self) -> None:
        if self.fail_setup:
            raise FileNotFoundError("no model at the configured path")
        self.setups += 1

    def process_page(self, row: dict) -> dict:
        return {**row, self.column: f"{os.getpid()}:{self.setups}"}


def test_fused_stages_run_in_one_process_each_set_up_once_with_their_own_timings(local_ray) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(4)]
    dataset = apply_stages(ray.data.from_arrow(page_rows_to_table(rows)),
                           [partial(_SetupProbe, "first", "text_source"),
                            partial(_SetupProbe, "second", "document_type_predicted")], defer_setup=True)
    pages = dataset.take_all()

    assert len(pages) == 4
    assert {p["text_source"] for p in pages} == {p["document_type_predicted"] for p in pages}  # one process
    assert {p["text_source"].split(":")[1] for p in pages} == {"1"}  # set up once, before its first batch
    assert all([t["stage"] for t in p["timings"]] == ["first", "second"] for p in pages)


class _SlowPidProbe(_SetupProbe):
    def process_page(self, row: dict) -> dict:
        time.sleep(0.5)
        return super().process_page(row)


def test_fused_stages_widen_to_the_actors_asked_for(local_ray) -> None:
    # A re-run on stored OCR output asks for one actor per CPU (`light_actors_without_ocr`).
    rows = [page_row(i, image=None, text_source="ocr") for i in range(12)]
    blocks = [page_rows_to_table(rows[i:i + 1]) for i in range(12)]
    dataset = apply_stages(ray.data.from_arrow(blocks), [partial(_SlowPidProbe, "probe", "text_source")], actors=2)

    pids = {p["text_source"].split(":")[0] for p in dataset.take_all()}

    assert len(pids) == 2


def test_a_deferred_setup_that_fails_fails_the_run_and_quarantines_no_page(local_ray) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(2)]
    dataset = apply_stages(ray.data.from_arrow(page_rows_to_table(rows)),
                           [partial(_SetupProbe, "first", "text_source"),
                            partial(_SetupProbe, "broken", "document_type_predicted", fail_setup=True)],
                           defer_setup=True)
    with pytest.raises(Exception, match="no model at the configured path"):
        dataset.take_all()


def test_only_cpu_actor_pools_can_share_an_actor() -> None:
    with pytest.raises(ValueError, match="not CPU actor pools"):
        apply_stages(None, [partial(_NiceProbe, "text_source", Resources(concurrency=None))])


class _SetupNiceProbe(Stage):
    """Writes into `text_source` the process niceness its setup ran at and its page ran at."""

    name = "nice_probe"

    def __init__(self):
        super().__init__(Resources(num_cpus=0.2, batch_size=2, concurrency=1, memory_mb=64, nice=2))
        self.setup_nice: int | None = None

    def setup(self) -> None:
        self.setup_nice = os.nice(0)

    def process_page(self, row: dict) -> dict:
        return {**row, "text_source": f"{self.setup_nice}:{os.nice(0)}"}


@pytest.mark.parametrize("defer_setup", [False, True])
def test_a_niced_pool_sets_up_at_full_priority_and_yields_after(local_ray, defer_setup: bool) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(2)]
    dataset = apply_stages(ray.data.from_arrow(page_rows_to_table(rows)), [_SetupNiceProbe, _SetupNiceProbe],
                           defer_setup=defer_setup)
    niceness = {tuple(int(n) for n in page["text_source"].split(":")) for page in dataset.take_all()}
    (setup_nice, page_nice), = niceness
    assert page_nice == min(setup_nice + 2, 19)


class _FreezeProbe(Stage):
    """Writes into `text_source` how many objects the collector holds frozen when a page runs."""

    name = "freeze_probe"

    def __init__(self):
        super().__init__(Resources(num_cpus=0.2, batch_size=1, concurrency=1, memory_mb=64))

    def process_page(self, row: dict) -> dict:
        return {**row, "text_source": str(gc.get_freeze_count())}


def test_an_actor_freezes_what_its_setup_loaded_once_not_on_every_batch(local_ray) -> None:
    rows = [page_row(i, image=None, text_source="ocr") for i in range(3)]
    pages = apply_stages(ray.data.from_arrow(page_rows_to_table(rows)), [_FreezeProbe]).take_all()

    frozen = {int(page["text_source"]) for page in pages}
    assert len(frozen) == 1 and frozen.pop() > 0  # batches after the first froze nothing more
