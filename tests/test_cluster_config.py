"""`cluster.yaml` is a valid Ray cluster launcher config whose GPU workers match the gpu_node profile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from pipeline.config import load_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text("utf-8"))


def test_cluster_yaml_validates_against_the_schema_ray_ships() -> None:
    config = cluster_config()

    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text("utf-8")))
    # Ray's own preparation (what `ray up` runs: on-prem checks, defaults) accepts it and the result validates.
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["available_node_types"]["local.cluster.node"]["max_workers"] == len(config["provider"]["worker_ips"])


def test_the_workers_declare_the_gpu_node_profile_and_setup_installs_the_gpu_stack() -> None:
    config = cluster_config()
    gpu = load_config(["resources=gpu_node"]).resources.gpu
    worker_start = " ".join(config["worker_start_ray_commands"])
    setup = " ".join(config["setup_commands"])

    assert config["provider"]["type"] == "local" and config["provider"]["head_ip"]
    assert int(re.search(r"--num-gpus=(\d+)", worker_start).group(1)) == gpu.per_node
    assert int(re.search(r"--num-cpus=(\d+)", worker_start).group(1)) == gpu.cpus_per_node
    assert '-e "/opt/medrec[gpu]"' in setup and "-c /opt/medrec/constraints.txt" in setup
    assert re.search(r"paddlepaddle-gpu==3\.\S+ -i https://www\.paddlepaddle\.org\.cn/packages/stable/cu\d+/", setup)
