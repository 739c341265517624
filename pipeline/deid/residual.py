"""The residual-risk check: every identifier string of the identified copy, searched in the research copy.

Searched: each patient's names (full and each part), record numbers, phone numbers, address
parts and birth dates in the forms they are written in, and each document's id, source path,
file name and file hash. Searched where: every file name and every string of the research
copy (NDJSON, JSON, Markdown, each string cell of each Parquet table, nested lists included).
The same terms are counted in the identified copy, so the report says how many were there to
find. Page images are not searched (there is no text in them to match); see `images`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from pipeline.deid.identifiers import IdentifiedCopy

TEXT_SUFFIXES = (".ndjson", ".json", ".md", ".txt", ".csv")


@dataclass
class ResidualReport:
    """Per identifier type: terms searched, found in the identified copy, left in the research copy."""

    searched: Counter[str] = field(default_factory=Counter)
    found_identified: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)
    left_files: Counter[str] = field(default_factory=Counter)  # research file -> terms left in it (no values)

    @property
    def left_total(self) -> int:
        return sum(self.left.values())

    def as_json(self) -> dict[str, Any]:
        return {"searched": dict(self.searched), "found_in_identified_copy": dict(self.found_identified),
                "left_in_research_copy": dict(self.left), "left_total": self.left_total,
                "files_with_identifiers": dict(self.left_files)}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def folder_texts(folder: Path) -> Iterator[tuple[str, str]]:
    """(relative file, text) for every file name and every searchable content of a folder."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = str(path.relative_to(folder))
        yield relative, relative
        if path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=2048):
                yield relative, "\n".join(_strings(batch.to_pylist()))
        elif path.suffix in TEXT_SUFFIXES:
            yield relative, path.read_text(errors="replace")


def identifier_terms(identified: IdentifiedCopy, min_chars: int) -> dict[str, set[str]]:
    """Regexes by identifier type, over all patients and documents of the identified copy."""
    terms: dict[str, set[str]] = {}
    for identifiers in identified.patients.values():
        for kind, regexes in identifiers.all_terms(min_chars).items():
            terms.setdefault(kind, set()).update(regexes)
    for document_id, lineage in identified.documents.items():
        terms.setdefault("document_lineage", set()).update(lineage.terms(document_id, min_chars))
    return terms


def _found(folder: Path, terms: dict[str, set[str]]) -> tuple[dict[str, set[str]], Counter[str]]:
    """Which terms occur in a folder, by type, and in how many terms each file holds."""
    compiled = {kind: [(t, re.compile(t, re.IGNORECASE)) for t in sorted(regexes)] for kind, regexes in terms.items()}
    found: dict[str, set[str]] = {kind: set() for kind in terms}
    per_file: Counter[str] = Counter()
    for relative, text in folder_texts(folder):
        for kind, patterns in compiled.items():
            for term, pattern in patterns:
                if term not in found[kind] and pattern.search(text):
                    found[kind].add(term)
                    per_file[relative] += 1
    return found, per_file


def check_residual(identified_dir: Path, research_dir: Path, identified: IdentifiedCopy, min_chars: int) -> ResidualReport:
    """Counts the identifier terms of the identified copy and those left in the research copy."""
    terms = identifier_terms(identified, min_chars)
    in_identified, _ = _found(identified_dir, terms)
    left, per_file = _found(research_dir, terms)
    report = ResidualReport()
    for kind, regexes in terms.items():
        report.searched[kind] = len(regexes)
        report.found_identified[kind] = len(in_identified[kind])
        report.left[kind] = len(left[kind])
    report.left_files.update(per_file)
    return report


def check_folder(research_dir: Path, identified: IdentifiedCopy, min_chars: int) -> dict[str, int]:
    """Terms left per type in a folder (used to re-check a research copy after it was written)."""
    left, _ = _found(research_dir, identifier_terms(identified, min_chars))
    return {kind: len(found) for kind, found in left.items()}

