"""The manifest datasource: every row read once, in order, whatever the row groups."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest_source import ManifestDatasource, conform_manifest, manifest_blocks


def _manifest(n: int, with_hints: bool) -> pa.Table:
    columns = {
        "facility_id": ["f"] * n, "document_id": [f"d{i // 3}" for i in range(n)],
        "page_index": pa.array([i % 3 for i in range(n)], pa.int32()), "source_uri": [f"/x/{i}" for i in range(n)],
        "sha256": ["0"] * n, "media_type": ["image/png"] * n,
    }
    if with_hints:
        columns["mrn"] = [None] * n
        columns["document_type"] = [None] * n
    return pa.table(columns)


@pytest.mark.parametrize("with_hints", [True, False])
def test_every_row_is_read_once_in_order_across_row_groups(tmp_path, with_hints):
    path = tmp_path / "manifest.parquet"
    pq.write_table(_manifest(30, with_hints), path, row_group_size=7)
    source = ManifestDatasource(str(path), rows_per_block=4)
    blocks = [block for task in source.get_read_tasks(1) for block in task()]
    assert all(b.num_rows <= 4 for b in blocks)
    read = pa.concat_tables(blocks)
    assert read.column("source_uri").to_pylist() == [f"/x/{i}" for i in range(30)]
    assert read.schema.names[-2:] == ["mrn", "document_type"]


def test_the_first_blocks_hold_one_page_each_then_full_blocks_follow_in_order(tmp_path):
    path = tmp_path / "manifest.parquet"
    pq.write_table(_manifest(12, False), path, row_group_size=5)
    source = ManifestDatasource(str(path), rows_per_block=2, one_page_blocks=2)
    blocks = [block for task in source.get_read_tasks(1) for block in task()]
    # Row groups of 5, 5 and 2 rows: a block never spans two groups.
    assert [b.num_rows for b in blocks] == [1, 1, 2, 1, 2, 2, 1, 2]
    assert [t.metadata.num_rows for t in source.get_read_tasks(1)] == [b.num_rows for b in blocks]
    assert pa.concat_tables(blocks).column("source_uri").to_pylist() == [f"/x/{i}" for i in range(12)]


def test_blocks_cut_in_memory_follow_the_same_plan_and_schema():
    blocks = manifest_blocks(_manifest(7, False), rows_per_block=3, one_page_blocks=2)

    assert [b.num_rows for b in blocks] == [1, 1, 3, 2]
    assert pa.concat_tables(blocks).column("source_uri").to_pylist() == [f"/x/{i}" for i in range(7)]
    assert blocks[0].schema.names[-2:] == ["mrn", "document_type"]  # conformed, as the datasource reads


def test_a_manifest_without_required_columns_is_refused():
    with pytest.raises(ValueError, match="sha256"):
        conform_manifest(_manifest(2, False).drop(["sha256"]))
