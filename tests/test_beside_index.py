"""Values kept beside the index: loaded with the cyclic collector paused."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import pytest

from pipeline.beside_index import load_paused


@pytest.mark.parametrize("enabled", [True, False], ids=["collector_on", "collector_off"])
def test_a_kept_value_loads_without_a_collection_and_leaves_the_collector_as_it_was(tmp_path: Path,
                                                                                   enabled: bool) -> None:
    value = {("diagnosis", f"term {i}"): [("I10", f"display {i}")] for i in range(50_000)}
    path = tmp_path / "value.pickle"
    path.write_bytes(pickle.dumps(value))
    collections: list[str] = []

    def count(phase: str, info: dict) -> None:
        collections.append(phase)

    (gc.enable if enabled else gc.disable)()
    gc.callbacks.append(count)
    try:
        loaded = load_paused(path)
        after = gc.isenabled()
    finally:
        gc.callbacks.remove(count)
        gc.enable()

    assert loaded == value
    assert collections == []  # 150 000 containers: unpaused, the collector runs hundreds of times
    assert after is enabled
