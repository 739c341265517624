"""Approximate term spotting: find the index's terms in free text.

Built once per actor from every term the terminology index holds for a kind (ICD-10-CM
descriptions, short descriptions and inclusion terms; LOINC names; RxNorm names). A term is
reduced to its *core*: the content words a writer would actually use, without the
classification's qualifiers ("..., unspecified", "without complications", "NOS", "not
elsewhere classified", parenthetical non-essential modifiers). Text matches a core when every
core word appears, in any order, close together inside one clause; words are compared after
case folding, light plural stripping, British/American spelling folding and expansion of
standard clinical abbreviations; a long word one OCR slip away from a known word counts as
that word. Overlapping matches keep the one covering most core words.

Lookup is an inverted index from each core's rarest word to the cores that hold it, so a page
of text is a few thousand dictionary probes: milliseconds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

# Standard clinical abbreviations -> what they stand for. Source: the NLM SPECIALIST Lexicon
# abbreviation/acronym table (LRABR, UMLS release), restricted to expansions that are the
# common reading in clinical notes; each is also listed in Stedman's Medical Abbreviations.
# Only one-token abbreviations: "n/v" or "a fib" are written too many ways to list.
CLINICAL_ABBREVIATIONS: dict[str, str] = {
    "aaa": "abdominal aortic aneurysm", "afib": "atrial fibrillation", "aki": "acute kidney injury",
    "als": "amyotrophic lateral sclerosis", "ards": "acute respiratory distress syndrome",
    "arf": "acute renal failure", "bph": "benign prostatic hyperplasia", "cad": "coronary artery disease",
    "chf": "congestive heart failure", "ckd": "chronic kidney disease", "copd": "chronic obstructive pulmonary disease",
    "cva": "cerebrovascular accident", "dka": "diabetic ketoacidosis", "dm": "diabetes mellitus",
    "dvt": "deep vein thrombosis", "esrd": "end stage renal disease", "gerd": "gastroesophageal reflux disease",
    "gi": "gastrointestinal", "hcv": "hepatitis c", "hbv": "hepatitis b", "hiv": "human immunodeficiency virus",
    "htn": "hypertension", "hld": "hyperlipidemia", "ibs": "irritable bowel syndrome",
    "ibd": "inflammatory bowel disease", "mi": "myocardial infarction", "ms": "multiple sclerosis",
    "nstemi": "non st elevation myocardial infarction", "oa": "osteoarthritis", "osa": "obstructive sleep apnea",
    "pad": "peripheral arterial disease", "pe": "pulmonary embolism", "pvd": "peripheral vascular disease",
    "ra": "rheumatoid arthritis", "sle": "systemic lupus erythematosus", "sob": "shortness of breath",
    "stemi": "st elevation myocardial infarction", "t1dm": "type 1 diabetes mellitus",
    "t2dm": "type 2 diabetes mellitus", "tb": "tuberculosis", "tia": "transient ischemic attack",
    "uri": "upper respiratory infection", "uti": "urinary tract infection",
}
# Words the classification writes another way: the ICD-10-CM Index to Diseases sends a
# reader from the word on the left to the one on the right ("Carcinoma - see Neoplasm, by
# site, malignant"; "Tumor - see Neoplasm, by site, uncertain behavior"; "Metastasis - see
# Neoplasm, secondary"), and anatomical adjectives stand for their nouns as in the NLM
# Lexical Tools synonym list (renal/kidney, hepatic/liver). A text word keeps its own
# reading too, so these only add matches.
INDEX_SEE_ALSO: dict[str, str] = {
    "carcinoma": "malignant neoplasm", "adenocarcinoma": "malignant neoplasm", "cancer": "malignant neoplasm",
    "malignancy": "malignant neoplasm", "sarcoma": "malignant neoplasm", "tumor": "neoplasm", "tumour": "neoplasm",
    "metastasis": "secondary malignant neoplasm", "metastases": "secondary malignant neoplasm",
    "metastatic": "secondary malignant neoplasm",
    "renal": "kidney", "hepatic": "liver", "pulmonary": "lung", "cardiac": "heart", "cerebral": "brain",
    "gastric": "stomach", "vesical": "bladder", "ocular": "eye", "cutaneous": "skin", "osseous": "bone",
    "ureteral": "ureter", "testicular": "testis", "ovarian": "ovary", "uterine": "uterus", "prostatic": "prostate",
    "pancreatic": "pancreas", "splenic": "spleen", "adrenal": "adrenal gland", "thyroid": "thyroid gland",
    "mammary": "breast", "rectal": "rectum", "colonic": "colon", "esophageal": "esophagus", "vertebral": "vertebra",
    "bleeding": "hemorrhage", "necrosis": "gangrene", "adenopathy": "enlarged lymph node",
    "smoker": "nicotine dependence", "smoking": "nicotine dependence",
}
# Derived forms of one word, read as one word on both sides (Index: "Infection, infected,
# infective"; "Cytomegalovirus, cytomegaloviral").
_DERIVED = {"infectious": "infection", "infected": "infection", "infective": "infection",
            "cytomegaloviral": "cytomegalovirus", "febrile": "fever"}
# Function words, and the classification's qualifiers no writer says.
STOPWORDS = frozenset(
    "a an and as at by for from in into of on or the to s due other specified unspecified nos nec "
    "classified elsewhere otherwise than disease uncomplicated".split())
# Dropped from a core that keeps two other words ("Abnormal weight loss" is weight loss), kept
# where it is most of the term ("Abnormal electrocardiogram").
_WEAK_QUALIFIERS = frozenset({"abnormal"})
# After "unspecified" these words only say that a detail is missing ("unspecified site").
_UNSPECIFIED_DETAIL = frozenset("site sites part parts side degree trimester organism type cause kind region "
                                "location laterality reason behavior".split())
# Clause ends: a mention never spans them.
_CLAUSE_END = re.compile(r"[.;:!?()\[\]]")
_WORD = re.compile(r"[a-z0-9]+")
_TEXT_WORD = re.compile(r"[a-z0-9]+(?:-[a-z]+)*")  # hyphenated words joined, as in terms
# A qualifier clause of a classification term: dropped from its core. "Except" names what
# the code leaves out ("Malignant neoplasm of kidney, except renal pelvis"), never what a writer says.
_WITHOUT = re.compile(r"\b(?:with or without|without|except)\b[^,;(]*")
_NOT_CLASSIFIED = re.compile(r"\bnot (?:elsewhere classified|otherwise specified)\b|"
                             r"\b(?:(?:site|part|type|organism) )?(?:not specified|unspecified) (?:as|whether)\b[^,]*|"
                             r"\b(?:site|part|type|organism) not specified\b")
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])")  # "gastro-esophageal" and "gastroesophageal" are one word
_LETTER_NAME = re.compile(r"(?<=[a-z] )([A-Z])\b")
_ROMAN = {"ii": "2", "iii": "3", "iv": "4"}
# British spellings folded to American ones (haemorrhage, oedema, oesophagus, tumour, paediatric).
_SPELLING = ((re.compile(r"^(an|h|p|orth|leuk|septic|isch|gyn)ae"), r"\1e"), (re.compile(r"^(o|dysph|di|gon)oe"), r"\1e"),
             (re.compile(r"(?<=[a-z]{3})our$"), "or"))
SPOTTED = "spotted"  # the match reason of a candidate the spotter proposed
MIN_FUZZY_LENGTH = 7  # OCR slips are corrected only on words this long: shorter ones collide
MIN_FUZZY_ALONE = 10  # a corrected word that is a whole term alone must be longer still
MIN_SINGLE_WORD = 4  # a one-word core shorter than this ("flu" aside) matches too much by chance
# How far apart a core's words may lie: its word count plus this many other content words.
WINDOW_SLACK = 2
# A connective joins the words on either side of it: placed outside the span of the term's
# other words it joins nothing ("Mother with type 2 diabetes mellitus without complications"
# is not "Type 2 diabetes mellitus with unspecified complications").
_CONNECTIVES = frozenset({"with"})


def stem(word: str) -> str:
    """A word's comparison key: spelling folded, plural stripped (same rule for text and terms)."""
    word = _DERIVED.get(word) or _ROMAN.get(word, word)
    for pattern, replacement in _SPELLING:
        word = pattern.sub(replacement, word)
    if len(word) <= 4 or word.isdigit():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def core_words(term: str) -> tuple[tuple[str, ...], float]:
    """The content-word keys a text must contain to mention `term`, and how much the term
    says beyond them (0 for a plain or unspecified term; more for "Other ..." catch-alls)."""
    # A capital letter standing alone inside a term is a name ("Hepatitis A"), not the article.
    text = _HYPHEN.sub("", _LETTER_NAME.sub(r"letter\1", term)).lower()
    penalty = 0.05 if re.search(r"\bother\b", text) else 0.0
    kept: list[str] = []
    for n, segment in enumerate(_PARENTHESES.sub(" ", text).split(",")):
        # Seventh-character encounter qualifiers (", initial encounter for closed fracture").
        if n and ("encounter" in segment or "sequela" in segment):
            continue
        segment = _NOT_CLASSIFIED.sub(" ", _WITHOUT.sub(" ", segment))
        words = _WORD.findall(segment)
        for i, word in enumerate(words):
            if word in _UNSPECIFIED_DETAIL and i and words[i - 1] == "unspecified":
                continue
            if word.startswith("letter") and len(word) == 7:
                kept.append(word[-1])
            elif word not in STOPWORDS:
                kept.append(stem(word))
    strong = [w for w in kept if w not in _WEAK_QUALIFIERS]
    return tuple(dict.fromkeys(strong if len(strong) >= 2 else kept)), penalty


# "Dizziness and giddiness", "Anuria and oliguria", "Syncope and collapse": the classification
# names one concept by two words, and a writer uses either alone.
_COORDINATED = re.compile(r"^([a-z][a-z-]+) and ([a-z][a-z-]+)(?:, unspecified)?$")
COORDINATED_PENALTY = 0.05  # one word of a pair says less than the pair: a term naming it alone wins


def coordinated_parts(term: str) -> list[str]:
    """The two words of a term that is exactly "X and Y" (", unspecified" allowed), else none."""
    match = _COORDINATED.match(term.strip().lower())
    if not match:
        return []
    return [word for word in match.groups() if len(word) >= MIN_SINGLE_WORD and word not in STOPWORDS]


@dataclass(frozen=True)
class SpottedConcept:
    """A concept a mention names: its code, and the term that named it."""

    system: str
    code: str
    display: str
    billable: bool
    penalty: float  # what the matched term says beyond the text (an "Other ..." term)


@dataclass
class Mention:
    """A span of the text that names one or more concepts."""

    start: int  # character offsets into the text
    end: int
    text: str
    words: int  # core words covered
    score: float  # 1.0: every word as written, in order, adjacent; less for slips, order, gaps
    concepts: list[SpottedConcept] = field(default_factory=list)


@dataclass
class _Core:
    words: tuple[str, ...]
    concepts: list[SpottedConcept]


@dataclass
class _Token:
    start: int
    end: int
    keys: dict[str, float]  # key -> how sure (1 as written or expanded, less for an OCR-corrected word)


class TermSpotter:
    """Finds the terms of one vocabulary in free text (see the module docstring)."""

    def __init__(self, terms: Iterable[tuple[str, SpottedConcept]]):
        cores: dict[tuple[str, ...], _Core] = {}
        for term, concept in terms:
            words, penalty = core_words(term)
            if not words or (len(words) == 1 and len(words[0]) < MIN_SINGLE_WORD):
                continue
            key = tuple(sorted(words))
            core = cores.get(key)
            if core is None:
                core = cores[key] = _Core(words, [])
            if penalty:
                concept = SpottedConcept(concept.system, concept.code, concept.display, concept.billable,
                                         concept.penalty + penalty)
            core.concepts.append(concept)
        frequency: Counter[str] = Counter(w for core in cores.values() for w in set(core.words))
        self._by_anchor: dict[str, list[_Core]] = defaultdict(list)
        for core in cores.values():
            # Keep one concept per code, the one whose term fitted best.
            best: dict[tuple[str, str], SpottedConcept] = {}
            for concept in core.concepts:
                have = best.get((concept.system, concept.code))
                if have is None or concept.penalty < have.penalty:
                    best[(concept.system, concept.code)] = concept
            core.concepts = list(best.values())
            self._by_anchor[min(core.words, key=lambda w: (frequency[w], w))].append(core)
        self.vocabulary = frozenset(frequency)
        self._expansions = {stem(word): tuple(stem(w) for w in _WORD.findall(expansion) if w not in STOPWORDS)
                            for word, expansion in (*CLINICAL_ABBREVIATIONS.items(), *INDEX_SEE_ALSO.items())}
        # One-deletion neighbourhoods of long words (symmetric-delete spelling correction).
        self._deletions: dict[str, list[str]] = defaultdict(list)
        for word in self.vocabulary:
            if len(word) >= MIN_FUZZY_LENGTH and not word.isdigit():
                for variant in {word[:i] + word[i + 1:] for i in range(len(word))} | {word}:
                    self._deletions[variant].append(word)
        self.cores = len(cores)

    @classmethod
    def from_terms(cls, terms: Iterable[str], system: str = "") -> TermSpotter:
        """A spotter over bare terms (each its own concept, coded by its own text)."""
        return cls((t, SpottedConcept(system, t, t, True, 0.0)) for t in terms)

    def _correct(self, word: str) -> str | None:
        """The one known word a long unknown word is a single edit (or swap) away from."""
        found = set(self._deletions.get(word, ()))
        for i in range(len(word)):
            found.update(self._deletions.get(word[:i] + word[i + 1:], ()))
        found = {w for w in found if _one_edit(word, w)}
        return found.pop() if len(found) == 1 else None

    def _tokens(self, clause: str, offset: int) -> list[_Token]:
        tokens = []
        for match in _TEXT_WORD.finditer(clause.lower()):
            word = match.group(0).replace("-", "")
            if word in STOPWORDS and word != "a":  # "a" may be a name: "hepatitis a"
                continue
            keys = {stem(word): 1.0}
            if stem(word) in self._expansions:
                keys.update(dict.fromkeys(self._expansions[stem(word)], 1.0))
            elif stem(word) not in self.vocabulary and len(word) >= MIN_FUZZY_LENGTH and not word.isdigit():
                corrected = self._correct(stem(word))
                if corrected:
                    keys[corrected] = 0.9
            tokens.append(_Token(offset + match.start(), offset + match.end(), keys))
        return tokens

    def spot(self, text: str) -> list[Mention]:
        """Mentions in `text`, in reading order, none overlapping (the longest match wins)."""
        mentions: list[Mention] = []
        offset = 0
        for clause in _CLAUSE_END.split(text):
            mentions.extend(self._spot_clause(text, clause, offset))
            offset += len(clause) + 1
        return mentions

    def _spot_clause(self, text: str, clause: str, offset: int) -> list[Mention]:
        tokens = self._tokens(clause, offset)
        where: dict[str, list[int]] = defaultdict(list)
        for i, token in enumerate(tokens):
            for key in token.keys:
                where[key].append(i)
        found: list[tuple[int, float, int, frozenset[int], _Core]] = []
        for anchor in list(where):
            for core in self._by_anchor.get(anchor, ()):
                for position in where[anchor]:
                    match = self._place(core, position, where, tokens)
                    if match is not None:
                        found.append(match)
        # Most words first, then the surest, then the tightest.
        found.sort(key=lambda m: (-m[0], -m[1], max(m[3]) - min(m[3])))
        taken: set[int] = set()
        chosen: dict[frozenset[int], Mention] = {}
        for words, score, _, positions, core in found:
            if positions in chosen and chosen[positions].words == words and chosen[positions].score == score:
                chosen[positions].concepts.extend(core.concepts)  # the same words name several cores
                continue
            if positions & taken:
                continue
            taken |= positions
            start, end = tokens[min(positions)].start, tokens[max(positions)].end
            chosen[positions] = Mention(start, end, text[start:end], words, score, list(core.concepts))
        return sorted(chosen.values(), key=lambda m: m.start)

    @staticmethod
    def _place(core: _Core, position: int, where: dict[str, list[int]], tokens: list[_Token]
               ) -> tuple[int, float, int, frozenset[int], _Core] | None:
        """The core placed around the anchor at `position`: each word at its nearest
        occurrence; None when a word is missing or the words lie too far apart."""
        window = len(core.words) + WINDOW_SLACK
        positions: list[int] = []
        sureness = 1.0
        for word in core.words:
            near = [p for p in where.get(word, ()) if abs(p - position) < window]
            if not near:
                return None
            p = min(near, key=lambda q: abs(q - position))
            positions.append(p)
            sureness = min(sureness, tokens[p].keys[word])
        if max(positions) - min(positions) >= window:
            return None
        # A letter that names ("hepatitis A") follows its word: "a hepatitis" is not hepatitis A.
        if any(len(w) == 1 and j and positions[j] - positions[j - 1] not in (0, 1) for j, w in enumerate(core.words)):
            return None
        content = [p for w, p in zip(core.words, positions) if w not in _CONNECTIVES]
        if len(content) >= 2 and any(w in _CONNECTIVES and not min(content) < p < max(content)
                                     for w, p in zip(core.words, positions)):
            return None
        if sureness < 1.0 and len(core.words) == 1 and len(core.words[0]) < MIN_FUZZY_ALONE:
            return None  # a short word alone, corrected: too likely another word
        span = max(positions) - min(positions) + 1
        gaps = span - len(set(positions))
        in_order = positions == sorted(positions)
        score = sureness - 0.02 * gaps - (0.0 if in_order else 0.02)
        return len(core.words), round(score, 4), position, frozenset(positions), core


def _one_edit(a: str, b: str) -> bool:
    """Whether two different words are one substitution, insertion, deletion or adjacent swap apart."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i in range(len(short)) if short[i] != long[i]), len(short))
    return short[i:] == long[i + 1:]
