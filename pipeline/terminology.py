"""Lookups against the LanceDB terminology index: top-k candidates with scores and reasons.

Opened once per code-stage actor. Exact matches on preferred terms, inclusion terms and
clinical synonyms come from an in-memory map; everything else goes to LanceDB full-text
search, re-scored by token overlap so scores are comparable across queries.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pipeline.records import CodeCandidate
from terminology_index import ICD10CM, LOINC, RXNORM
from terminology_index.build import CONCEPTS_TABLE, RELEASES_FILE

SYSTEMS_BY_KIND = {
    "diagnosis": ("diagnosis", ICD10CM),
    "medication": ("medication", RXNORM),
    "allergy": ("medication", RXNORM),
    "lab": ("lab", LOINC),
    "vital": ("vital", LOINC),
}
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOPWORDS = {"of", "the", "and", "with", "without", "in", "to", "a", "an", "or", "by", "for", "on"}


def normalise_term(text: str) -> str:
    """Lower-case words only: what exact matching compares."""
    return " ".join(_TOKEN.findall(text.lower()))


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS}


@dataclass(frozen=True)
class IndexedConcept:
    system: str
    code: str
    display: str
    term_type: str
    kind: str
    billable: bool
    unit: str | None
    tty: str | None
    ingredient: str | None


class TerminologyIndex:
    """Read-only view of one built index."""

    def __init__(self, path: Path):
        import lancedb  # heavy import: only where an index is opened

        record_path = path / RELEASES_FILE
        if not record_path.is_file():
            raise FileNotFoundError(
                f"no terminology index at {path}: build it with `medrec index build output={path}` "
                "or point terminology.index_path at a built index"
            )
        self.record = json.loads(record_path.read_text())
        self.version: str = self.record["version"]
        self._table = lancedb.connect(str(path)).open_table(CONCEPTS_TABLE)
        columns = self._table.to_arrow().to_pydict()
        self._exact: dict[tuple[str, str], list[IndexedConcept]] = defaultdict(list)
        self._by_code: dict[tuple[str, str], IndexedConcept] = {}
        self._drugs_by_ingredient: dict[str, list[IndexedConcept]] = defaultdict(list)
        for i in range(len(columns["code"])):
            concept = IndexedConcept(
                columns["system"][i], columns["code"][i], columns["display"][i], columns["term_type"][i],
                columns["kind"][i], columns["billable"][i], columns["unit"][i], columns["tty"][i],
                columns["ingredient"][i],
            )
            self._exact[(concept.kind, normalise_term(columns["term"][i]))].append(concept)
            if concept.term_type == "preferred":
                self._by_code[(concept.system, concept.code)] = concept
                if concept.tty == "SCD" and concept.ingredient:
                    self._drugs_by_ingredient[concept.ingredient].append(concept)

    def concept(self, system: str, code: str) -> IndexedConcept | None:
        """The concept with this code, or None when the code is not in the index."""
        return self._by_code.get((system, code))

    def candidates(self, kind: str, text: str, k: int = 5) -> list[CodeCandidate]:
        """Top-k codes for a mention of `kind`, best first; empty when nothing matches."""
        if kind not in SYSTEMS_BY_KIND:
            return []
        index_kind, system = SYSTEMS_BY_KIND[kind]
        found: dict[str, CodeCandidate] = {}
        for concept in self._exact.get((index_kind, normalise_term(text)), []):
            score = 1.0 if concept.billable else 0.9
            self._keep(found, CodeCandidate(system, concept.code, concept.display, score, f"exact:{concept.term_type}"))
        if len(found) < k:
            self._full_text(found, index_kind, system, text, k)
        ranked = sorted(found.values(), key=lambda c: (-c.score, c.code))
        return ranked[:k]

    def _full_text(self, found: dict[str, CodeCandidate], index_kind: str, system: str, text: str, k: int) -> None:
        query = " ".join(_tokens(text))
        if not query:
            return
        hits = (
            self._table.search(query, query_type="fts")
            .where(f"kind = '{index_kind}'", prefilter=True)
            .limit(k * 8)
            .select(["code", "term", "billable"])
            .to_list()
        )
        wanted = _tokens(text)
        for hit in hits:
            concept = self._by_code.get((system, hit["code"]))
            if concept is None:
                continue
            have = _tokens(hit["term"])
            overlap = len(wanted & have) / len(wanted | have) if have else 0.0
            # Full-text matches never outrank an exact one; non-billable headers rank lower.
            score = 0.85 * overlap * (1.0 if concept.billable else 0.9)
            self._keep(found, CodeCandidate(system, concept.code, concept.display, round(score, 4), "full-text"))

    @staticmethod
    def _keep(found: dict[str, CodeCandidate], candidate: CodeCandidate) -> None:
        best = found.get(candidate.code)
        if best is None or candidate.score > best.score:
            found[candidate.code] = candidate

    def clinical_drug(self, ingredient_rxcui: str, strength_mg: float | None, form: str | None) -> IndexedConcept | None:
        """The SCD of an ingredient at a strength (in mg) and dose form, when exactly one fits."""
        if strength_mg is None:
            return None
        strength = f" {strength_mg:g} MG "
        fits = [d for d in self._drugs_by_ingredient.get(ingredient_rxcui, []) if strength in f" {d.display} "]
        if form:
            fits = [d for d in fits if form.lower() in d.display.lower()] or fits
        oral = [d for d in fits if "Oral" in d.display and "Extended" not in d.display]
        choice = oral or fits
        return choice[0] if len(choice) == 1 else None

    def lexicon(self, kind: str) -> set[str]:
        """Every normalised term of one index kind: the dictionary the lexicon extractor spots."""
        return {term for (k, term) in self._exact if k == kind}
