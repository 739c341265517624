"""A Ray Data source over a manifest file: one read task per slice of pages.

Ray's Parquet reader lists files in a task that asks for a whole CPU; beside actor pools
that hold the other CPUs it waits forever. This source reads slices of the manifest in
tasks as small as the config says, and never holds the manifest on the driver.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.schemas import MANIFEST_SCHEMA


class ManifestDatasource(Datasource):
    """Pages of a manifest in slices of `rows_per_block` rows, in manifest order."""

    def __init__(self, path: str, rows_per_block: int):
        self.path = path
        self.rows_per_block = rows_per_block
        self.num_rows = pq.read_metadata(path).num_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return self.num_rows * 256

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = []
        for start in range(0, self.num_rows, self.rows_per_block):
            length = min(self.rows_per_block, self.num_rows - start)
            metadata = BlockMetadata(num_rows=length, size_bytes=length * 256, exec_stats=None,
                                     input_files=(self.path,))
            tasks.append(ReadTask(self._reader(start, length), metadata, schema=MANIFEST_SCHEMA))
        return tasks

    def _reader(self, start: int, length: int):
        path = self.path

        def read() -> Iterable[pa.Table]:
            # Only the row groups that hold the slice are decoded.
            parquet = pq.ParquetFile(path)
            rows, offset = [], 0
            for group in range(parquet.num_row_groups):
                group_rows = parquet.metadata.row_group(group).num_rows
                if offset + group_rows > start and offset < start + length:
                    rows.append(parquet.read_row_group(group))
                offset += group_rows
            table = pa.concat_tables(rows) if rows else MANIFEST_SCHEMA.empty_table()
            first = start - (offset - sum(t.num_rows for t in rows)) if rows else 0
            yield table.slice(first, length).cast(MANIFEST_SCHEMA)

        return read
