"""The attempts ledger: deaths halve the suspects' chunks until the killer page dies alone."""

from __future__ import annotations

import pytest

from pipeline.attempts import AttemptLedger


def _run(ledger: AttemptLedger, keys: list[str], killer: str) -> tuple[list[int], list[str]]:
    """One attempt at a batch: chunks run in order until the one holding the killer 'dies'
    (its pages stay in flight, as when the process ends). Returns (killers, pages done)."""
    killers, chunks = ledger.plan(keys)
    done = []
    for number, chunk in enumerate(chunks):
        names = [keys[i] for i in chunk]
        if number:  # plan starts the first chunk itself
            ledger.start(names)
        if killer in names:
            return killers, done  # the worker died: no finish
        ledger.finish(names)
        done += names
    return killers, done


def test_the_killer_is_isolated_after_n_deaths_alone_and_the_rest_goes_through() -> None:
    ledger = AttemptLedger(max_alone_deaths=2)
    keys = [f"p{i}" for i in range(8)]
    attempts = 0
    while True:
        attempts += 1
        killers, done = _run(ledger, keys, killer="p5")
        if killers:
            break
    assert [keys[i] for i in killers] == ["p5"]
    assert sorted(done) == sorted(k for k in keys if k != "p5")
    # 8 -> 4 -> 2 -> 1 page chunks, then 2 deaths alone: log2(8) + 2 deaths, then the quarantining attempt.
    assert attempts == 3 + 2 + 1
    assert ledger.deaths("p5") == 5 and ledger.deaths("p0") == 1


def test_a_batch_that_never_kills_its_worker_runs_as_one_chunk() -> None:
    ledger = AttemptLedger()
    assert ledger.plan(["a", "b", "c"]) == ([], [[0, 1, 2]])
    ledger.finish(["a", "b", "c"])
    assert ledger.plan(["a", "b", "c"]) == ([], [[0, 1, 2]]) and not ledger.dead


def test_a_worker_that_died_once_retries_the_suspects_in_halves_first() -> None:
    ledger = AttemptLedger()
    ledger.start(["a", "b"])  # died with a and b in flight; c was not started
    killers, chunks = ledger.plan(["a", "b", "c"])
    assert ledger.in_flight == {"a": 1}  # the first chunk is started by plan
    assert killers == [] and chunks == [[0], [1], [2]]


def test_bad_bound() -> None:
    with pytest.raises(ValueError, match="max_alone_deaths"):
        AttemptLedger(max_alone_deaths=0)
