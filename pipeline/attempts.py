"""The attempts ledger: which pages were being processed when a worker process died.

Ray retries a task or actor call whose worker died (Ray Data 2.60: map tasks `max_retries=-1`,
actor pools `max_restarts=-1, max_task_retries=-1`), forever. A page that aborts or segfaults
native code, or is killed for memory, would be retried forever with its whole batch. The
adapter writes the pages of each chunk it hands a stage here before the call and clears them
after; pages still written here when the retried batch comes back were in flight when the
worker died. Each such death halves the chunk the suspects run in, until a page dies alone;
after `max_alone_deaths` deaths alone it is quarantined (`worker_died`) and its batch
neighbours go through. Plain Python, so the adapter can hold it in a Ray actor that every
worker of the run reaches, whichever node the retry lands on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PageDeaths:
    """What the ledger knows about one page that was in flight when its worker died."""

    deaths: int = 0  # workers that died with this page in flight
    alone: int = 0  # of those, deaths while it was the only page of its chunk
    last_chunk: int = 0  # pages of the chunk it last died in


class AttemptLedger:
    """Pages in flight and worker deaths, keyed by stage and page lineage."""

    def __init__(self, max_alone_deaths: int = 2):
        if max_alone_deaths < 1:
            raise ValueError(f"max_alone_deaths must be >= 1, got {max_alone_deaths}")
        self.max_alone_deaths = max_alone_deaths
        self.in_flight: dict[str, int] = {}  # key -> pages of the chunk it is in
        self.dead: dict[str, PageDeaths] = {}  # only pages that were in flight at a death

    def plan(self, keys: list[str]) -> tuple[list[int], list[list[int]]]:
        """For a batch's page keys: the positions to quarantine as worker killers, and the
        chunks (lists of positions) to run the others in, suspects first in small chunks. The
        first chunk is recorded in flight already; `start` the others as they run.

        Keys still in flight here belonged to an attempt whose worker died: that is a death.
        """
        for key in keys:
            chunk = self.in_flight.pop(key, None)
            if chunk is not None:
                record = self.dead.setdefault(key, PageDeaths())
                record.deaths += 1
                record.alone += int(chunk == 1)
                record.last_chunk = chunk
        killers = [i for i, key in enumerate(keys) if key in self.dead and self.dead[key].alone >= self.max_alone_deaths]
        suspects = [i for i, key in enumerate(keys) if key in self.dead and i not in killers]
        clean = [i for i, key in enumerate(keys) if key not in self.dead]
        chunks: list[list[int]] = []
        if suspects:
            size = max(1, min(self.dead[keys[i]].last_chunk for i in suspects) // 2)
            chunks += [suspects[start:start + size] for start in range(0, len(suspects), size)]
        if clean:
            chunks.append(clean)
        if chunks:  # the first chunk starts now: one call to the ledger for a batch that runs whole
            self.start([keys[i] for i in chunks[0]])
        return killers, chunks

    def start(self, keys: list[str]) -> None:
        """A chunk is about to run: its pages are in flight until `finish`."""
        for key in keys:
            self.in_flight[key] = len(keys)

    def finish(self, keys: list[str]) -> None:
        """The chunk came back (processed or quarantined): its worker survived it."""
        for key in keys:
            self.in_flight.pop(key, None)

    def deaths(self, key: str) -> int:
        record = self.dead.get(key)
        return record.deaths if record else 0
