"""A Ray Data source over a manifest file: read tasks of a few pages each.

Ray's Parquet reader lists files in a task that asks for a whole CPU; beside actor pools
that hold the other CPUs it waits forever. This source reads slices of the manifest in
tasks as small as the config says, decoding only the row group a slice lies in, and never
holds the manifest on the driver. Its first slices can hold one page each: the stages
that run one block per batch (render, OCR) then emit their first page after one page's
work, not a batch's (issue 15).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.schemas import MANIFEST_SCHEMA

_ROW_BYTES_ESTIMATE = 256


def conform_manifest(table: pa.Table) -> pa.Table:
    """Manifest rows in schema order; optional hint columns a manifest lacks become nulls."""
    missing = [f.name for f in MANIFEST_SCHEMA if f.name not in table.column_names and not f.nullable]
    if missing:
        raise ValueError(f"manifest lacks required columns {missing}")
    columns = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in MANIFEST_SCHEMA
    ]
    return pa.Table.from_arrays(columns, names=MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)


def block_slices(group_rows: list[int], rows_per_block: int, one_page_blocks: int = 0) -> list[tuple[int, int, int]]:
    """(row group, start, length) of each block, in manifest order: a block never spans two row
    groups (a read task decodes one), and the first `one_page_blocks` blocks hold one page each."""
    slices: list[tuple[int, int, int]] = []
    for group, rows in enumerate(group_rows):
        start = 0
        while start < rows:
            length = 1 if len(slices) < one_page_blocks else min(rows_per_block, rows - start)
            slices.append((group, start, length))
            start += length
    return slices


def manifest_blocks(table: pa.Table, rows_per_block: int, one_page_blocks: int = 0) -> list[pa.Table]:
    """The blocks `ManifestDatasource` reads, cut from a manifest already in memory: for a graph
    that starts without read tasks (`resources.render_in_ocr_pool`)."""
    table = conform_manifest(table)
    return [table.slice(start, length) for _, start, length in block_slices([table.num_rows], rows_per_block,
                                                                            one_page_blocks)]


class ManifestDatasource(Datasource):
    """Pages of a manifest in slices of at most `rows_per_block` rows, in manifest order; the
    first `one_page_blocks` slices hold one page each (one for each OCR actor's first batch)."""

    def __init__(self, path: str, rows_per_block: int, one_page_blocks: int = 0):
        if rows_per_block < 1 or one_page_blocks < 0:
            raise ValueError(f"rows_per_block must be >= 1 and one_page_blocks >= 0, got {rows_per_block}, "
                             f"{one_page_blocks}")
        self.path = path
        self.rows_per_block = rows_per_block
        self.one_page_blocks = one_page_blocks
        metadata = pq.read_metadata(path)
        self.group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        conform_manifest(pq.read_schema(path).empty_table())  # fail at plan time, not in a task

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(self.group_rows) * _ROW_BYTES_ESTIMATE

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = []
        for group, start, length in block_slices(self.group_rows, self.rows_per_block, self.one_page_blocks):
            metadata = BlockMetadata(num_rows=length, size_bytes=length * _ROW_BYTES_ESTIMATE,
                                     exec_stats=None, input_files=(self.path,))
            tasks.append(ReadTask(self._reader(group, start, length), metadata, schema=MANIFEST_SCHEMA))
        return tasks

    def _reader(self, group: int, start: int, length: int):
        path = self.path

        def read() -> Iterable[pa.Table]:
            yield conform_manifest(pq.ParquetFile(path).read_row_group(group).slice(start, length))

        return read
