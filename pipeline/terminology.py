"""Lookups against the LanceDB terminology index: top-k candidates with scores and reasons.

Opened once per code-stage actor. Exact matches on preferred terms, inclusion terms and
clinical synonyms come from an in-memory map; everything else goes to LanceDB full-text
search, re-scored by token overlap so scores are comparable across queries.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import pyarrow.compute as pc

from pipeline.beside_index import KeptBesideIndex
from pipeline.records import CodeCandidate
from pipeline.spotter import COORDINATED_PENALTY, SpottedConcept, coordinated_parts, core_words
from terminology_index import CPT, ICD10CM, LOINC, RXNORM, SNOMED
from terminology_index.build import COMBINATIONS_FILE, CONCEPTS_TABLE, RELEASES_FILE, VECTORS_TABLE

# Entity kind -> (index kind, the code systems a final code may come from).
# Entity kind -> (index kinds searched, code systems). A lab-kind mention is any result row or
# scored instrument: LOINC's clinical classes (spirometry, bone density, growth percentiles,
# indexed as "vital") name results as often as its laboratory classes do.
SYSTEMS_BY_KIND: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "diagnosis": (("diagnosis",), (ICD10CM,)),
    "medication": (("medication",), (RXNORM,)),
    "allergy": (("medication",), (RXNORM,)),
    "lab": (("lab", "vital"), (LOINC,)),
    "vital": (("vital",), (LOINC,)),
    "procedure": (("procedure",), (CPT, SNOMED)),  # only where a site has loaded a licensed release
}
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
# Characters OCR confuses; a term keyed with them folded still matches its misread forms.
_OCR_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "5": "s"})
# A code written on the page, as OCR may misread it (l10 or 110 for I10, O for 0).
_CODE_LIKE = re.compile(r"^[A-Za-z0-9|][0-9OoIl|]{2}(?:\.[0-9A-Za-z]{1,4})?$")
_LATERALITY = ("bilateral", "left", "right")
_ANSWER_CACHE_SIZE = 100_000
_COMPONENT_FACTOR = 0.8  # a LOINC component matched alone: below any full name, above full-text noise
# How ICD-10-CM words the code to pick when the text gives no more detail, best first.
_DEFAULT_LEAF_WORDS = ("without complications", ", unspecified", "unspecified", "without")
# A UCUM unit says which LOINC property a lab result has.
# LOINC long common names: a panel is "<name> panel - <specimen>[ by <method>]", a test
# "<component> [<property>] in <specimen>[ by <method>]".
_LOINC_PANEL = re.compile(r"^.*\bpanel - (?P<specimen>[^,]+?)(?: by .*)?$", re.IGNORECASE)
_LOINC_TEST = re.compile(r"^(?P<test>.+?\]) in (?P<specimen>.+?)(?P<method> by .+)?$")
LOINC_PROPERTY_BY_UNIT = {
    "mg/dL": "Mass/volume", "g/dL": "Mass/volume", "ng/mL": "Mass/volume", "pg/mL": "Mass/volume",
    "mmol/L": "Moles/volume", "umol/L": "Moles/volume", "meq/L": "Moles/volume",
    "U/L": "Enzymatic activity/volume", "[IU]/L": "Enzymatic activity/volume",
    "10*3/uL": "#/volume", "10*6/uL": "#/volume",
}
# Words of a classification display that say no more than the text ("Cough, unspecified").
_QUALIFIER_WORDS = {"unspecified", "other", "specified", "nos", "nec", "elsewhere", "classified", "not"}
_STOPWORDS = {"of", "the", "and", "with", "without", "in", "to", "a", "an", "or", "by", "for", "on"}


# Specimens a result is read from when the text names none: blood and its serum or plasma.
# A LOINC display ends "in <specimen>" or "in <specimen> by <method>".
_USUAL_SPECIMENS = ("blood", "serum or plasma", "serum", "plasma")
_SPECIMEN = re.compile(r"\] (?:in|of) (?P<specimen>[^\]]+?)(?: by (?P<method>.+))?$", re.I)


_NOT_MEASURED = re.compile(r"\[(?:Presence|Interpretation|Morphology|Identifier|Type|Appearance|Color)\]", re.I)


def _unwritten_detail(display: str) -> float:
    """How much a LOINC display adds that an analyte name alone does not say: another
    specimen than blood, serum or plasma, a method, a timed collection, more words. The
    code with least of it is the one a bare "Sodium" or "Platelets" in a chart means."""
    penalty = 0.001 * len(display.split())
    found = _SPECIMEN.search(display)
    if found:
        if found["specimen"].lower() not in _USUAL_SPECIMENS:
            penalty += 0.02
        if found["method"]:
            penalty += 0.005
    if re.search(r"\b\d+ hour\b", display):
        penalty += 0.02
    if _NOT_MEASURED.search(display):  # a chart's bare analyte name comes with a number
        penalty += 0.01
    return penalty


def normalise_term(text: str) -> str:
    """Lower-case words only: what exact matching compares."""
    return " ".join(_TOKEN.findall(text.lower()))


# Abbreviations of LOINC's short names (LOINC Users' Guide, appendix "LOINC short name
# abbreviations") and the chart abbreviations of the same words (NLM SPECIALIST Lexicon LRABR):
# each word read as what it stands for, on both the written name and the index's terms.
LOINC_ABBREVIATIONS: dict[str, str] = {
    "prctl": "percentile", "pctl": "percentile", "circumf": "circumference", "circ": "circumference",
    "len": "length", "wt": "weight", "ht": "height", "bld": "blood", "ser": "serum", "plas": "plasma",
    "serpl": "serum plasma", "ur": "urine", "calc": "calculated", "ofc": "occipital frontal circumference",
    "resp": "respiratory", "temp": "temperature", "vol": "volume", "bp": "blood pressure",
    "hr": "heart rate", "rr": "respiratory rate", "bmi": "body mass index", "cnc": "concentration",
    "rto": "ratio", "fr": "fraction", "ab": "antibody", "ag": "antigen", "dxa": "dual x ray absorptiometry",
}


# Below this best score of the terms' own words, a LOINC name is searched by its expanded words.
_LOINC_WORDS_BELOW = 0.5


def loinc_words(text: str) -> set[str]:
    """Content words of a LOINC name or a written result name, abbreviations expanded."""
    words: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if token not in _STOPWORDS:
            words.update(LOINC_ABBREVIATIONS.get(token, token).split())
    return words


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS}


def _in_category(code: str, category: str) -> bool:
    return code == category or code.startswith(category + ".") or (
        "." in category and code.startswith(category))


def _read_combinations(path: Path) -> dict[tuple[str, str], tuple[str, bool]]:
    if not path.is_file():
        return {}
    rules = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        first, second, combined, keep_second = line.split("\t")
        rules[(first, second)] = (combined, keep_second == "1")
    return rules


def _sides(text: str) -> set[str]:
    words = _tokens(text)
    return {side for side in _LATERALITY if side in words}


def _side_factor(text: str, display: str) -> float:
    """1 when a code's side agrees with the text's; lower for another side or none named."""
    wanted, have = _sides(text), _sides(display)
    if not wanted:
        return 1.0
    if have - wanted:
        return 0.8
    return 1.0 if have else 0.9


def ocr_folded(term: str) -> str:
    """A normalised term with OCR-confusable characters folded together."""
    return normalise_term(term).translate(_OCR_FOLD)


def code_readings(text: str) -> list[str]:
    """ICD-10-CM codes a misread code-like token may stand for (l10 -> I10, 25O.0 -> I25.0?)."""
    token = text.strip()
    if not _CODE_LIKE.match(token):
        return []
    first = {"1": "I", "l": "I", "|": "I", "0": "O"}.get(token[0], token[0].upper())
    rest = token[1:].upper().replace("O", "0").replace("I", "1").replace("L", "1").replace("|", "1")
    return list(dict.fromkeys([token.upper(), first + rest]))


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


@dataclass
class TermMaps:
    """The index's concepts as lookups read them, in memory: by normalised term, by OCR-folded
    term, by code, SCDs by ingredient, and the billable ICD-10-CM codes in order."""

    exact: dict[tuple[str, str], list[IndexedConcept]]
    folded: dict[tuple[str, str], list[IndexedConcept]]
    by_code: dict[tuple[str, str], IndexedConcept]
    drugs_by_ingredient: dict[str, list[IndexedConcept]]
    icd_leaves: list[str]  # a header's leaves are the codes it prefixes

    @classmethod
    def from_index(cls, path: Path) -> "TermMaps":
        """Read every concept row of the index at `path` (LanceDB) into the maps."""
        import lancedb

        columns = lancedb.connect(str(path)).open_table(CONCEPTS_TABLE).to_arrow().to_pydict()
        exact: dict[tuple[str, str], list[IndexedConcept]] = defaultdict(list)
        folded: dict[tuple[str, str], list[IndexedConcept]] = defaultdict(list)
        by_code: dict[tuple[str, str], IndexedConcept] = {}
        drugs_by_ingredient: dict[str, list[IndexedConcept]] = defaultdict(list)
        for i in range(len(columns["code"])):
            concept = IndexedConcept(
                columns["system"][i], columns["code"][i], columns["display"][i], columns["term_type"][i],
                columns["kind"][i], columns["billable"][i], columns["unit"][i], columns["tty"][i],
                columns["ingredient"][i],
            )
            term = normalise_term(columns["term"][i])
            exact[(concept.kind, term)].append(concept)
            if len(term) >= 5:  # short terms folded would collide (e.g. "sob" / "s0b")
                folded[(concept.kind, term.translate(_OCR_FOLD))].append(concept)
            if concept.term_type == "preferred":
                by_code[(concept.system, concept.code)] = concept
                if concept.tty == "SCD" and concept.ingredient:
                    drugs_by_ingredient[concept.ingredient].append(concept)
        leaves = sorted(c for (system, c), concept in by_code.items() if system == ICD10CM and concept.billable)
        # Plain dicts: a pickled defaultdict would keep inserting on misses after loading.
        return cls(dict(exact), dict(folded), by_code, dict(drugs_by_ingredient), leaves)


# Built with the index (through its lexicons) and by `prepare_models`; each code actor loads the
# file instead of reading and mapping every index row (about 1.3 CPU s on the embedded index).
TERM_MAPS = KeptBesideIndex("term-maps-", ("terminology.py",), TermMaps.from_index)


class TerminologyIndex:
    """Read-only view of one built index."""

    def __init__(self, path: Path):
        record_path = path / RELEASES_FILE
        if not record_path.is_file():
            raise FileNotFoundError(
                f"no terminology index at {path}: build it with `medrec index build output={path}` "
                "or point terminology.index_path at a built index"
            )
        self.path = path
        self.record = json.loads(record_path.read_text())
        self.version: str = self.record["version"]
        # Not written here: an index opened read-only (an actor, the review app) builds them in memory.
        maps = TERM_MAPS.load_if_kept(path) or TermMaps.from_index(path)
        self._exact, self._folded, self._by_code = maps.exact, maps.folded, maps.by_code
        self._drugs_by_ingredient, self._icd_leaves = maps.drugs_by_ingredient, maps.icd_leaves
        self._vector_kinds: dict[tuple[str, ...], bool] = {}  # index kinds -> whether they have vectors
        self._loaded = {(c.kind, c.system) for c in self._by_code.values()}
        self._combinations = _read_combinations(path / COMBINATIONS_FILE)
        self._answers: dict[tuple[str, str, int], list[CodeCandidate]] = {}

    @cached_property
    def _database(self):
        import lancedb

        # Opened on the first full-text or semantic search: a run whose mentions all match
        # exactly never opens it.
        return lancedb.connect(str(self.path))

    @cached_property
    def _table(self):
        return self._database.open_table(CONCEPTS_TABLE)

    @cached_property
    def _vectors(self):
        """The term vectors for semantic search, None when the index was built without them."""
        database = self._database
        return database.open_table(VECTORS_TABLE) if VECTORS_TABLE in database.table_names() else None

    @cached_property
    def _encoder(self):
        """The query encoder kept beside the index (`prepare_models` exports it before a run)."""
        from terminology_index.embeddings import QueryEncoder, ensure_query_encoder

        return QueryEncoder(ensure_query_encoder(self.path))

    def has_kind(self, kind: str) -> bool:
        """Whether any concept of this entity kind's systems is loaded."""
        index_kinds, systems = SYSTEMS_BY_KIND[kind]
        return any((index_kind, system) in self._loaded for index_kind in index_kinds for system in systems)

    def concept(self, system: str, code: str) -> IndexedConcept | None:
        """The concept with this code, or None when the code is not in the index."""
        return self._by_code.get((system, code))

    def candidates(self, kind: str, text: str, k: int = 5) -> list[CodeCandidate]:
        """Top-k codes for a mention of `kind`, best first; empty when nothing matches.

        Archives repeat the same phrases on page after page, so answers are remembered for
        the actor's lifetime (bounded)."""
        key = (kind, text, k)
        if key not in self._answers:
            if len(self._answers) >= _ANSWER_CACHE_SIZE:
                self._answers.clear()
            self._answers[key] = self._lookup(kind, text, k)
        return list(self._answers[key])

    def forget_answers(self) -> None:
        """Drop remembered answers (benchmarks measure cold lookups with it)."""
        self._answers.clear()

    def _lookup(self, kind: str, text: str, k: int) -> list[CodeCandidate]:
        if kind not in SYSTEMS_BY_KIND:
            return []
        index_kinds, systems = SYSTEMS_BY_KIND[kind]
        found: dict[str, CodeCandidate] = {}
        if ICD10CM in systems:
            for code in code_readings(text):
                concept = self._by_code.get((ICD10CM, code))
                if concept:
                    self._keep(found, CodeCandidate(ICD10CM, code, concept.display, 0.95, "code-as-written"))
        exact = [c for index_kind in index_kinds for c in self._exact.get((index_kind, normalise_term(text)), [])
                 if c.system in systems]
        for concept in exact:
            score = 1.0 if concept.billable else 0.9
            if concept.term_type == "component":  # an analyte alone names many codes: the plainest first
                score = score * _COMPONENT_FACTOR - _unwritten_detail(concept.display)
            self._keep(found, CodeCandidate(concept.system, concept.code, concept.display, round(score, 4),
                                            f"exact:{concept.term_type}"))
        if not exact:
            for concept in (c for index_kind in index_kinds for c in self._folded.get((index_kind, ocr_folded(text)), [])):
                if concept.system in systems:
                    score = 0.95 if concept.billable else 0.85
                    self._keep(found, CodeCandidate(concept.system, concept.code, concept.display, score,
                                                    "ocr-tolerant"))
        # An exact billable match is the answer; full-text search (most of the lookup time)
        # only runs when there is none.
        if not any(c.billable and c.term_type != "component" for c in exact):
            self._full_text(found, index_kinds, systems, text, k)
            self._semantic(found, index_kinds, systems, text, k)
        if ICD10CM in systems:
            self._add_default_leaves(found, text)
        ranked = sorted(found.values(), key=lambda c: (-c.score, c.code))
        return ranked[:k]

    def with_spotted(self, candidates: list[CodeCandidate], spotted: list[CodeCandidate], text: str,
                     k: int = 5) -> list[CodeCandidate]:
        """Lookup candidates merged with the concepts the spotter found the text to name.

        Among a spotted term's concepts the one whose display adds fewest words to the text
        ranks first ("Fracture of unspecified femur" before "... of shaft of ..."), and a
        header brings its default billable leaf."""
        found: dict[str, CodeCandidate] = {}
        for candidate in candidates:
            self._keep(found, candidate)
        wanted = _tokens(text)
        for candidate in spotted:
            extra = len(_tokens(candidate.display) - wanted - _QUALIFIER_WORDS)
            score = candidate.score * (1.0 if self._billable(candidate) else 0.9) - 0.002 * extra
            self._keep(found, replace(candidate, score=round(score, 4)))
        if any(c.system == ICD10CM for c in spotted):
            self._add_default_leaves(found, text)
        return sorted(found.values(), key=lambda c: (-c.score, c.code))[:k]

    def _billable(self, candidate: CodeCandidate) -> bool:
        concept = self._by_code.get((candidate.system, candidate.code))
        return concept is not None and concept.billable

    def _add_default_leaves(self, found: dict[str, CodeCandidate], text: str) -> None:
        """A header matched: add the billable code a coder would pick from under it."""
        for candidate in list(found.values()):
            concept = self._by_code.get((ICD10CM, candidate.code))
            if concept is None or concept.billable:
                continue
            leaf = self.billable_leaf(candidate.code, text)
            if leaf is not None:
                # A leaf that carries the side the text names is as good as the header match.
                sided = bool(_sides(text)) and _sides(text) <= _sides(leaf.display)
                # (undoing the header's and the missing side's penalties).
                score = candidate.score / (0.9 * 0.95) if sided else candidate.score * 0.98
                self._keep(found, CodeCandidate(ICD10CM, leaf.code, leaf.display, round(min(score, 0.99), 4),
                                                f"default-leaf-of:{candidate.code}"))

    def billable_leaf(self, header: str, text: str) -> IndexedConcept | None:
        """The billable code under a header: the laterality the text names, else the
        unspecified / without-complications default; None when no leaf qualifies."""
        prefix = header if "." in header or len(header) > 3 else header + "."
        start = bisect_left(self._icd_leaves, prefix)
        leaves = []
        for code in self._icd_leaves[start:]:
            if not code.startswith(prefix):
                break
            leaves.append(self._by_code[(ICD10CM, code)])
        named_sides = _sides(text)
        if named_sides:
            sided = [c for c in leaves if named_sides <= _sides(c.display)]
            leaves = sided or leaves

        def default_rank(concept: IndexedConcept) -> int:
            display = concept.display.lower()
            return next((i for i, w in enumerate(_DEFAULT_LEAF_WORDS) if w in display), len(_DEFAULT_LEAF_WORDS))

        if not leaves or (not named_sides and min(map(default_rank, leaves)) == len(_DEFAULT_LEAF_WORDS)):
            return None
        wanted = _tokens(text)

        def extra_words(concept: IndexedConcept) -> int:
            # "Pruritus, unspecified" over "Anogenital pruritus, unspecified" for "pruritus".
            return len(_tokens(concept.display) - wanted - {"unspecified"})

        def later_encounter(concept: IndexedConcept) -> bool:
            # Seventh character A (initial encounter) is the default: the others need the text to say so.
            return len(concept.code) == 8 and not concept.code.endswith("A")

        return min(leaves, key=lambda c: (later_encounter(c), default_rank(c), extra_words(c), len(c.code), c.code))

    def prefer_lab_property(self, candidates: list[CodeCandidate], analyte: str, unit: str | None,
                            k: int = 5) -> list[CodeCandidate]:
        """Re-rank lab candidates so the LOINC property matches the unit (mg/dL: mass
        concentration, mmol/L: substance concentration), searching for one if none does."""
        wanted = LOINC_PROPERTY_BY_UNIT.get(unit or "")
        if not wanted or not candidates or wanted in candidates[0].display:
            return candidates
        fitting = [c for c in candidates if wanted in c.display]
        if not fitting:
            found: dict[str, CodeCandidate] = {}
            self._full_text(found, ("lab",), (LOINC,), f"{analyte} {wanted.replace('/', ' ')} serum plasma", k)
            fitting = sorted((c for c in found.values() if wanted in c.display and
                              normalise_term(analyte) in normalise_term(c.display)),
                             key=lambda c: (-c.score, c.code))
        if not fitting:
            return candidates
        best = fitting[0]
        promoted = CodeCandidate(best.system, best.code, best.display, max(best.score, candidates[0].score),
                                 f"unit-property:{wanted}")
        return [promoted] + [c for c in candidates if c.code != best.code][: k - 1]

    def panel_specimen(self, title: str) -> str | None:
        """The specimen of the LOINC panel a result table's title names exactly ("Basic
        Metabolic Panel" -> 51990-0 "Basic metabolic panel - Blood" -> "Blood"); None when
        the title names no panel ("LABORATORY RESULTS") or only approximately."""
        for candidate in self.candidates("lab", title, 1):
            panel = _LOINC_PANEL.match(candidate.display) if candidate.match.startswith("exact") else None
            if panel:
                return panel.group("specimen")
        return None

    def in_specimen(self, candidates: list[CodeCandidate], specimen: str, k: int = 5) -> list[CodeCandidate]:
        """The first candidate's test measured in `specimen` when LOINC names that test
        ("Urea nitrogen [Mass/volume] in Serum or Plasma" under a Blood panel: "... in Blood"),
        promoted first; the candidates unchanged when it names none."""
        if not candidates or candidates[0].system != LOINC:
            return candidates
        test = _LOINC_TEST.match(candidates[0].display)
        if not test or test.group("specimen") == specimen:
            return candidates
        wanted = f"{test.group('test')} in {specimen}{test.group('method') or ''}"
        same = next((c for c in self.candidates("lab", wanted, k) if c.display == wanted), None)
        if same is None:
            return candidates
        promoted = CodeCandidate(same.system, same.code, same.display, candidates[0].score, f"panel-specimen:{specimen}")
        return [promoted] + [c for c in candidates if c.code != same.code][: k - 1]

    def _full_text(self, found: dict[str, CodeCandidate], index_kinds: tuple[str, ...], systems: tuple[str, ...],
                   text: str, k: int) -> None:
        self._full_text_terms(found, index_kinds, systems, text, k)
        if systems == (LOINC,) and not any(c.score >= _LOINC_WORDS_BELOW for c in found.values()):
            self._loinc_words(found, index_kinds, text, k)

    def _full_text_terms(self, found: dict[str, CodeCandidate], index_kinds: tuple[str, ...],
                         systems: tuple[str, ...], text: str, k: int) -> None:
        query = " ".join(_tokens(text))
        if not query:
            return
        allowed = _sql_list(systems)
        hits = (
            self._table.search(query, query_type="fts")
            .where(f"kind IN ({_sql_list(index_kinds)}) AND system IN ({allowed})", prefilter=True)
            .limit(k * 8)
            .select(["system", "code", "term", "billable", "_score"])
            .to_list()
        )
        wanted = _tokens(text)
        written = normalise_term(text)
        for hit in hits:
            concept = self._by_code.get((hit["system"], hit["code"]))
            # The text itself as an index term was scored by the exact match, by its term type.
            if concept is None or normalise_term(hit["term"]) == written:
                continue
            have = _tokens(hit["term"])
            overlap = len(wanted & have) / len(wanted | have) if have else 0.0
            # Full-text matches never outrank an exact one; non-billable headers rank lower,
            # and so does a code for another side than the text names.
            score = 0.85 * overlap * (1.0 if concept.billable else 0.9) * _side_factor(text, concept.display)
            self._keep(found, CodeCandidate(concept.system, concept.code, concept.display, round(score, 4),
                                            "full-text"))

    def _loinc_words(self, found: dict[str, CodeCandidate], index_kinds: tuple[str, ...], text: str, k: int) -> None:
        """LOINC names by their words, abbreviations read both ways ("OFC", "Head circ." and
        "Head Circumf OFC" are one set of words), where the terms' own words found nothing
        codable. A result name as charts print it is short and LOINC's names are long, so the
        score is mostly how much of the written name a concept explains, then how little its
        name adds."""
        wanted = loinc_words(text)
        if not wanted:
            return
        # Both spellings go to the full-text search: the index holds "Circumf" and "circumference".
        query = " ".join(wanted | _tokens(text))
        hits = (
            self._table.search(query, query_type="fts")
            .where(f"kind IN ({_sql_list(index_kinds)}) AND system = '{LOINC}'", prefilter=True)
            .limit(k * 8)
            .select(["system", "code", "term"])
            .to_list()
        )
        written = normalise_term(text)
        for hit in hits:
            concept = self._by_code.get((hit["system"], hit["code"]))
            if concept is None or normalise_term(hit["term"]) == written:
                continue
            # The term found the concept; what it adds is judged on its full name (a component
            # term, "Circumference.occipital-frontal", names every method's code alike).
            named = loinc_words(concept.display)
            shared = len(wanted & (loinc_words(hit["term"]) | named))
            if not shared:
                continue
            score = 0.85 * (0.7 * shared / len(wanted) + 0.3 * len(wanted & named) / max(len(named), 1))
            if "/" in concept.display and "/" not in text:
                score *= 0.9  # a ratio of two quantities ("Head circumference/Abdominal circumference")
            self._keep(found, CodeCandidate(concept.system, concept.code, concept.display, round(score, 4),
                                            "full-text"))

    def _semantic(self, found: dict[str, CodeCandidate], index_kinds: tuple[str, ...], systems: tuple[str, ...],
                  text: str, k: int) -> None:
        """Nearest billable terms by sentence embedding, merged with the full-text hits:
        a code either search finds keeps the better score (hybrid retrieval)."""
        if self._vectors is None or not normalise_term(text) or not self._has_vectors(index_kinds):
            return  # no vectors of this kind: embedding the text (and loading the model) would find nothing
        allowed = _sql_list(systems)
        hits = (
            self._vectors.search(self._encoder.encode([text])[0])
            .distance_type("cosine")
            .where(f"kind IN ({_sql_list(index_kinds)}) AND system IN ({allowed})", prefilter=True)
            .limit(k * 2)
            .select(["system", "code", "term", "_distance"])
            .to_list()
        )
        for hit in hits:
            concept = self._by_code.get((hit["system"], hit["code"]))
            if concept is None:
                continue
            similarity = max(0.0, 1.0 - hit["_distance"])
            # Scaled like full-text scores: a near-paraphrase can pass min_score, never an exact
            # match. Embeddings barely tell left from right, so the side rule applies here too.
            score = 0.85 * similarity * _side_factor(text, concept.display)
            self._keep(found, CodeCandidate(concept.system, concept.code, concept.display, round(score, 4),
                                            "semantic"))

    def _has_vectors(self, index_kinds: tuple[str, ...]) -> bool:
        if index_kinds not in self._vector_kinds:
            self._vector_kinds[index_kinds] = self._vectors.count_rows(f"kind IN ({_sql_list(index_kinds)})") > 0
        return self._vector_kinds[index_kinds]

    @staticmethod
    def _keep(found: dict[str, CodeCandidate], candidate: CodeCandidate) -> None:
        key = f"{candidate.system}|{candidate.code}"
        best = found.get(key)
        if best is None or candidate.score > best.score:
            found[key] = candidate

    def clinical_drug(self, ingredient_rxcui: str, strength_mg: float | None, form: str | None) -> IndexedConcept | None:
        """The SCD of an ingredient at a strength (in mg) and dose form, when exactly one fits."""
        if strength_mg is None:
            return None
        strength = f" {strength_mg:g} MG "
        # Single-ingredient products only: "metformin 500 MG / sitagliptin 50 MG" is another drug.
        fits = [d for d in self._drugs_by_ingredient.get(ingredient_rxcui, [])
                if strength in f" {d.display} " and " / " not in d.display]
        if form:
            fits = [d for d in fits if form.lower() in d.display.lower()] or fits
        oral = [d for d in fits if "Oral" in d.display and "Extended" not in d.display
                and not d.display.startswith(("12 HR", "24 HR"))]
        choice = oral or fits
        return choice[0] if len(choice) == 1 else None

    def combination(self, first: str, second: str) -> tuple[IndexedConcept, bool] | None:
        """The ICD-10-CM combination code for two codes written together ("type 2 diabetes
        with CKD stage 3a"), and whether the second code is still reported beside it."""
        for (a, b), (combined, keep_second) in self._combinations.items():
            if _in_category(first, a) and _in_category(second, b):
                concept = self._by_code.get((ICD10CM, combined))
                if concept is not None:
                    return concept, keep_second
        return None

    def spotter_terms(self, kind: str) -> Iterator[tuple[str, SpottedConcept]]:
        """Every term of one index kind with the concept it names: what a `TermSpotter` is built from.

        Left out of ICD-10-CM: seventh-character codes other than the initial encounter
        ("A"; text names the injury, the initial-encounter code stands for it); external causes
        (V00-Y99: "activity", "fall" say too little of what happened to code it); and one-word
        terms of factors influencing health status (Z: "arrest" is a legal problem there)."""
        columns = self._table.to_arrow().filter(pc.equal(pc.field("kind"), kind)).select(
            ["system", "code", "display", "term", "billable"]).to_pydict()
        for system, code, display, term, billable in zip(columns["system"], columns["code"], columns["display"],
                                                         columns["term"], columns["billable"]):
            if system == ICD10CM and ((len(code) == 8 and not code.endswith("A")) or code[0] in "VWXY"
                                      or (code[0] == "Z" and len(core_words(term)[0]) < 2)):
                continue
            yield term, SpottedConcept(system, code, display, billable, 0.0)
            # Only where the term is the concept's whole name: a poisoning code's short
            # description "Narcotics and psychodysleptics" does not make "narcotics" a poisoning.
            if term.lower() == display.lower() and code[0] != "Z":
                for part in coordinated_parts(term):
                    yield part, SpottedConcept(system, code, display, billable, COORDINATED_PENALTY)

    def lexicon(self, kind: str) -> set[str]:
        """Every normalised term of one index kind: the dictionary the lexicon extractor spots."""
        return {term for (k, term) in self._exact if k == kind}
