"""Coding accuracy: how well the code stage turns mentions into ICD-10-CM, RxNorm and LOINC codes.

Run from the checkout (paths such as ../shared are read relative to it):

    python benchmarks/coding_accuracy.py [--index embedded|shared] [--out benchmarks/results]
        [--codiesp-dir ../shared/eval/codiesp] [--docs 60] [--seed 11] [--codiesp-cases N]

For each terminology index (the `terminology` config groups: `embedded` = bundled CDC XML
plus starter sets, `shared` = the ../shared/terminology extracts) it measures:

1. index build time (one fresh build into a temp dir) and term count; the index used is
   built or reused with `ensure_index` in --cache-dir; index open time;
2. mention-level top-1/top-3 on the synthetic corpus, its gold facts taken as clearly
   written mentions (no OCR);
3. CodiEsp-D on the English dev set: diagnoses spotted in narrative sentences by the lexicon
   extractor and coded; as the track's coders do, every mentioned diagnosis counts, negated
   ones included. Per case a ranked list: chosen codes by score, then each mention's other
   billable candidates (MAP); also MAP of the chosen codes alone and of the patient's own
   conditions (negated and family mentions left out); micro precision/recall/F1 of the chosen
   codes, F1 on 3-character categories, and why each missed gold code was missed;
4. lookup throughput of one CodeStage (one actor's worth).

The JSON and Markdown reports go to --out (default benchmarks/results/, whose .gitignore
keeps run artefacts out of git); the table is printed; the exit status is 1 when a goal fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.layout import Row
from pipeline.lexicon import LexiconExtractor, lexicons_from_index
from pipeline.records import Entity, OcrLine
from pipeline.stages.code import CodeStage
from pipeline.synth.corpus import GOLD_DIR, generate_corpus
from pipeline.terminology import TerminologyIndex
from terminology_index import ICD10CM
from terminology_index.build import IndexSources, build_index, ensure_index

INDEX_NAMES = ("embedded", "shared")  # the `terminology` config groups
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path("~/.cache/medrec/benchmark-indexes").expanduser()
DIAGNOSIS_TOP1_GOAL, DIAGNOSIS_TOP3_GOAL = 0.95, 0.98
MIN_THROUGHPUT_MENTIONS = 2000
# Not conditions of the patient: the entities table keeps them, a problem list would not.
DROPPED_ASSERTIONS = ("negated", "family")
# CodiEsp's coders code every diagnosis a case mentions, negated ones included ("No history of
# nephrolithiasis, hematuria or urinary tract infections" is coded N20.0, R31.9, N39.0 in the
# dev gold), and the track scores a ranked list per case. The ranked list is therefore every
# mention's chosen code by score, then each mention's next billable candidates (the top-k the
# entities table keeps for the coder) up to this depth.
SUGGESTION_DEPTH = 5
NARRATIVE_HEADING = "History of present illness:"  # a section the extractor reads as narrative
SAMPLE_SIZE = 5  # examples kept per miss reason, and false positives x3
MISS_REASONS = ("not in index", "not billable in index", "right category, other code", "not found")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


# Metrics ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetScores:
    """Micro-averaged precision, recall and F1 of predicted code sets against gold sets."""

    true_positives: int
    predicted: int
    gold: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "true_positives": self.true_positives, "predicted": self.predicted, "gold": self.gold}


def micro_scores(pairs: Iterable[tuple[set[str], set[str]]]) -> SetScores:
    """Sum true positives, predicted and gold counts over (predicted, gold) pairs of sets."""
    tp = predicted = gold = 0
    for predicted_codes, gold_codes in pairs:
        tp += len(predicted_codes & gold_codes)
        predicted += len(predicted_codes)
        gold += len(gold_codes)
    return SetScores(tp, predicted, gold)


def average_precision(ranked: Sequence[str], gold: set[str]) -> float:
    """Precision at each rank that holds a gold code, summed and divided by the number of gold codes.

    This is trec_eval's `map` for one query, which the CodiEsp evaluation script computes
    (through trectools); gold codes never predicted count as precision 0.
    """
    if not gold:
        raise ValueError("average precision needs at least one gold code")
    hits, total = 0, 0.0
    for rank, code in enumerate(ranked, 1):
        if code in gold:
            hits += 1
            total += hits / rank
    return total / len(gold)


def category(code: str) -> str:
    """The 3-character ICD-10-CM category of a code."""
    return code[:3]


# Terminology index --------------------------------------------------------------------------

@dataclass
class IndexFigures:
    """One index as the benchmark used it: where, which release, how long it took."""

    name: str
    path: str
    version: str
    terms: int
    sources: dict[str, str | None]
    fresh_build_seconds: float
    open_seconds: float | None = None


def index_sources(name: str) -> IndexSources:
    """The sources of a `terminology` config group, exactly as the pipeline builds them."""
    return load_config([f"terminology={name}"]).terminology.sources


def prepare_index(name: str, sources: IndexSources, cache_dir: Path) -> IndexFigures:
    """Time one fresh build into a temp dir, then build or reuse the cached index used to measure."""
    with tempfile.TemporaryDirectory(prefix="medrec-index-") as scratch:
        started = time.perf_counter()
        build_index(sources, Path(scratch) / "index")
        build_seconds = time.perf_counter() - started
    path = cache_dir / name
    record = ensure_index(sources, path)
    return IndexFigures(name, str(path), record["version"], record["terms"], asdict(sources), round(build_seconds, 2))


def open_code_stage(index_path: Path) -> tuple[CodeStage, float]:
    """A code stage set up on the index, and the seconds `setup` took to open it."""
    stage = CodeStage(index_path=str(index_path))
    started = time.perf_counter()
    stage.setup()
    return stage, round(time.perf_counter() - started, 2)


# Synthetic corpus ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GoldMention:
    """One fact of the synthetic gold as written, with the code it must get.

    `code` is the ICD-10-CM code, the RxNorm clinical drug (SCD) or the LOINC code;
    `ingredient` the RxNorm ingredient of a medication.
    """

    kind: str
    text: str
    code: str
    ingredient: str | None = None
    attribute: str | None = None
    dose_value: float | None = None
    dose_unit: str | None = None

    def entity(self) -> Entity:
        """A fresh uncoded entity, as the extract stage hands a clearly read mention over."""
        return Entity(entity_id="", kind=self.kind, text=self.text, section="", assertion="present", page_index=0,
                      line_ids=[], bbox=[], ocr_confidence=1.0, confidence=1.0, attribute=self.attribute,
                      dose_value=self.dose_value, dose_unit=self.dose_unit)


def _medication_mention(fact: dict[str, Any]) -> GoldMention:
    """The gold writes a medication as "<drug> <dose> <unit>"; the drug name is what gets looked up."""
    dose = f" {fact['dose_value']:g} {fact['dose_unit']}"
    if not fact["text"].endswith(dose):
        raise ValueError(f"medication gold text {fact['text']!r} does not end with its dose {dose!r}")
    return GoldMention("medication", fact["text"], fact["scd_rxcui"], ingredient=fact["ingredient_rxcui"],
                       attribute=fact["text"][: -len(dose)], dose_value=float(fact["dose_value"]),
                       dose_unit=fact["dose_unit"])


def gold_mentions(gold_dir: Path) -> list[GoldMention]:
    """Present diagnoses, medications and labs of every gold JSON in `gold_dir`, in file order."""
    mentions: list[GoldMention] = []
    for path in sorted(gold_dir.glob("*.json")):
        gold = json.loads(path.read_text())
        mentions += [GoldMention("diagnosis", d["text"], d["code"]) for d in gold["diagnoses"]
                     if d["assertion"] == "present"]
        mentions += [_medication_mention(m) for m in gold["medications"]]
        mentions += [GoldMention("lab", lab["name"], lab["loinc"]) for lab in gold["labs"]]
    return mentions


@dataclass
class Accuracy:
    """Mention-level hits of one measure: top-1 is the chosen code, top-3 the first three candidates."""

    measure: str
    ranked: bool  # False: the code is derived after lookup (an SCD), so no candidate list ranks it
    n: int = 0
    top1_hits: int = 0
    top3_hits: int = 0
    misses: list[dict[str, str | None]] = field(default_factory=list)

    def add(self, text: str, gold: str, chosen: str | None, candidates: list[str]) -> None:
        self.n += 1
        self.top1_hits += chosen == gold
        if self.ranked and gold in candidates[:3]:
            self.top3_hits += 1
        if chosen != gold and len(self.misses) < 3 * SAMPLE_SIZE:
            self.misses.append({"text": text, "gold": gold, "chosen": chosen, "candidates": ",".join(candidates)})

    @property
    def top1(self) -> float | None:
        """Share of mentions whose chosen code is the gold code; None without mentions."""
        return round(self.top1_hits / self.n, 4) if self.n else None

    @property
    def top3(self) -> float | None:
        """Share of mentions with the gold code among the first three candidates; None when not ranked."""
        return round(self.top3_hits / self.n, 4) if self.n and self.ranked else None

    def as_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "n": self.n, "top1": self.top1, "top3": self.top3, "misses": self.misses}


def synthetic_accuracy(stage: CodeStage, mentions: Sequence[GoldMention]) -> list[Accuracy]:
    """Code every mention with the stage and score the chosen code and candidates against the gold."""
    diagnosis, lab = Accuracy("diagnosis (ICD-10-CM)", True), Accuracy("lab (LOINC)", True)
    ingredient = Accuracy("medication ingredient (RxNorm IN)", True)
    clinical_drug = Accuracy("medication clinical drug (RxNorm SCD)", False)
    for mention in mentions:
        entity = mention.entity()
        stage.code_entity(entity)
        candidates = [c.code for c in entity.candidates]
        if mention.kind == "medication":
            ingredient.add(mention.text, mention.ingredient, entity.ingredient_code, candidates)
            clinical_drug.add(mention.text, mention.code, entity.code, candidates)
        else:
            (diagnosis if mention.kind == "diagnosis" else lab).add(mention.text, mention.code, entity.code, candidates)
    return [diagnosis, ingredient, clinical_drug, lab]


def lookup_throughput(stage: CodeStage, mentions: Sequence[GoldMention],
                      minimum: int = MIN_THROUGHPUT_MENTIONS) -> dict[str, float | int]:
    """Mentions per second through one code stage: cold (each distinct mention looked up
    once, nothing remembered) and warm (the mentions repeated to at least `minimum`, as an
    archive repeats its phrases, answered from the actor's memory after the first time)."""
    stage.index.forget_answers()
    distinct = list({(m.entity().kind, m.entity().text): m for m in mentions}.values())
    started = time.perf_counter()
    for mention in distinct:
        stage.code_entity(mention.entity())
    cold_seconds = time.perf_counter() - started
    repeats = -(-minimum // len(mentions))
    entities = [mention.entity() for _ in range(repeats) for mention in mentions]
    started = time.perf_counter()
    for entity in entities:
        stage.code_entity(entity)
    seconds = time.perf_counter() - started
    return {"distinct_mentions": len(distinct), "cold_seconds": round(cold_seconds, 2),
            "cold_mentions_per_second": round(len(distinct) / cold_seconds, 1),
            "mentions": len(entities), "seconds": round(seconds, 2),
            "mentions_per_second": round(len(entities) / seconds, 1)}


# CodiEsp-D ----------------------------------------------------------------------------------

def normalise_icd(code: str) -> str:
    """A CodiEsp code as the index writes it: upper case, a dot after the 3-character category."""
    code = code.strip().upper()
    return code if "." in code or len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def read_codiesp_gold(path: Path) -> dict[str, set[str]]:
    """Case id -> its set of normalised diagnosis codes, from a `*D.tsv` file."""
    gold: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case_id, code = line.split("\t")[:2]
            gold.setdefault(case_id, set()).add(normalise_icd(code))
    return gold


def sentences(text: str) -> list[str]:
    """The translation's lines, split further where a sentence ends and a capital starts the next."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def _one_line_row(line_id: int, text: str) -> Row:
    """One printed row holding `text`, as OCR would give a line of the page."""
    top = 30.0 * line_id
    right = 10.0 * len(text)
    return Row([OcrLine(line_id, text, 1.0, [[0.0, top], [right, top], [right, top + 20], [0.0, top + 20]],
                        [0.0, top, right, top + 20])])


def narrative_extractor(index: TerminologyIndex) -> LexiconExtractor:
    """The lexicon extractor with the index's dictionaries, as the extract stage builds it."""
    return LexiconExtractor(lexicons_from_index(index))


@dataclass
class CaseCoding:
    """What the pipeline coded for one case."""

    case_id: str
    ranked: list[str]  # distinct chosen codes of every diagnosis mention, best score first
    suggested: list[str]  # `ranked`, then the mentions' other billable candidates by depth
    asserted: list[str]  # chosen codes of the patient's own conditions (no negated or family)
    evidence: dict[str, str]  # code -> the first mention coded to it


def code_case(case_id: str, text: str, extractor: LexiconExtractor, stage: CodeStage) -> CaseCoding:
    """Spot diagnoses sentence by sentence (each under a narrative heading), code them, rank the codes."""
    best: dict[str, float] = {}
    best_asserted: dict[str, float] = {}
    evidence: dict[str, str] = {}
    alternatives: list[list[str]] = []  # per mention: its billable candidates after the chosen code
    heading = _one_line_row(0, NARRATIVE_HEADING)
    for sentence in sentences(text):
        for entity in extractor.extract(case_id, 0, [heading, _one_line_row(1, sentence)]):
            if entity.kind != "diagnosis":
                continue
            stage.code_entity(entity)
            if entity.code is None:
                continue
            best[entity.code] = max(best.get(entity.code, -1.0), entity.code_score)
            evidence.setdefault(entity.code, entity.text)
            if entity.assertion not in DROPPED_ASSERTIONS:
                best_asserted[entity.code] = max(best_asserted.get(entity.code, -1.0), entity.code_score)
            alternatives.append([c.code for c in entity.candidates if c.code != entity.code and _billable(stage, c.code)])
    ranked = sorted(best, key=lambda code: -best[code])  # stable: equal scores stay in reading order
    suggested = list(ranked)
    for depth in range(SUGGESTION_DEPTH - 1):
        for codes in alternatives:
            if depth < len(codes) and codes[depth] not in suggested:
                suggested.append(codes[depth])
    return CaseCoding(case_id, ranked, suggested, sorted(best_asserted, key=lambda code: -best_asserted[code]),
                      evidence)


def _billable(stage: CodeStage, code: str) -> bool:
    concept = stage.index.concept(ICD10CM, code)
    return concept is not None and concept.billable


def miss_reason(code: str, coding: CaseCoding, index: TerminologyIndex) -> str:
    """Why a gold code is not among the predicted codes of its case (first reason that applies)."""
    concept = index.concept(ICD10CM, code)
    if concept is None:
        return "not in index"
    if not concept.billable:
        return "not billable in index"
    if any(category(predicted) == category(code) for predicted in coding.ranked):
        return "right category, other code"
    return "not found"


def in_gold_release(codes: list[str], gold: set[str], index: TerminologyIndex) -> list[str]:
    """Predicted codes as the gold's release writes them. CodiEsp is coded in the 2018 release
    and without the 7th character (T14.90, not T14.90XA); a code split since into leaves
    (M54.5 into M54.50/51/59, R51 into R51.0/R51.9) is a header in the index's release. A
    prediction under such a gold code, which the index no longer holds as billable, is that
    code; every other prediction stays as it is. Duplicates keep their first rank."""
    split = [g for g in gold if not _billable_in(index, g)]
    mapped = [next((g for g in split if code != g and code.startswith(g.rstrip("X").rstrip("."))), code)
              for code in codes]
    return list(dict.fromkeys(mapped))


def _billable_in(index: TerminologyIndex, code: str) -> bool:
    concept = index.concept(ICD10CM, code)
    return concept is not None and concept.billable


def _display(index: TerminologyIndex, code: str) -> str | None:
    concept = index.concept(ICD10CM, code)
    return concept.display if concept else None


def codiesp_accuracy(codiesp_dir: Path, stage: CodeStage, cases: int | None = None) -> dict[str, Any]:
    """CodiEsp-D on the English dev set: micro P/R/F1, MAP, category F1 and a breakdown of misses.

    `cases`: the first N cases by id (None: all 250).
    """
    index = stage.index
    started = time.perf_counter()
    gold = read_codiesp_gold(codiesp_dir / "dev" / "devD.tsv")
    case_ids = sorted(gold)[:cases]
    extractor = narrative_extractor(index)
    texts = codiesp_dir / "dev" / "text_files_en"
    codings = [code_case(case_id, (texts / f"{case_id}.txt").read_text(encoding="utf-8"), extractor, stage)
               for case_id in case_ids]
    exact = micro_scores((set(c.ranked), gold[c.case_id]) for c in codings)
    by_category = micro_scores(({category(p) for p in c.ranked}, {category(g) for g in gold[c.case_id]})
                               for c in codings)
    def mean_ap(ranking: str, release_mapped: bool = False) -> float:
        total = 0.0
        for c in codings:
            ranked = getattr(c, ranking)
            if release_mapped:
                ranked = in_gold_release(ranked, gold[c.case_id], index)
            total += average_precision(ranked, gold[c.case_id])
        return round(total / len(codings), 4)

    reasons: Counter[str] = Counter()
    miss_samples: dict[str, list[dict[str, str | None]]] = {reason: [] for reason in MISS_REASONS}
    false_positives: list[dict[str, str | None]] = []
    for coding in codings:
        for code in sorted(gold[coding.case_id] - set(coding.ranked)):
            reason = miss_reason(code, coding, index)
            reasons[reason] += 1
            if len(miss_samples[reason]) < SAMPLE_SIZE:
                miss_samples[reason].append({"case": coding.case_id, "code": code, "display": _display(index, code)})
        for code in coding.ranked:
            if code not in gold[coding.case_id] and len(false_positives) < 3 * SAMPLE_SIZE:
                false_positives.append({"case": coding.case_id, "code": code, "display": _display(index, code),
                                        "mention": coding.evidence[code]})
    return {
        "cases": len(codings), "cases_available": len(gold), "seconds": round(time.perf_counter() - started, 1),
        "exact": exact.as_dict(), "category": by_category.as_dict(), "map": mean_ap("suggested"),
        "map_gold_release": mean_ap("suggested", release_mapped=True),
        "map_chosen_codes": mean_ap("ranked"), "map_patient_conditions": mean_ap("asserted"),
        "missed_gold_codes": {reason: reasons[reason] for reason in MISS_REASONS},
        "missed_samples": miss_samples, "false_positive_samples": false_positives,
    }


# Report -------------------------------------------------------------------------------------

def goals(synthetic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The diagnosis goals on the synthetic corpus, each with whether it passed (no diagnoses: failed)."""
    diagnosis = next(row for row in synthetic if row["measure"].startswith("diagnosis"))
    return [{"goal": f"diagnoses {name} {_pct(diagnosis[key])} >= {_pct(floor)}",
             "passed": diagnosis[key] is not None and diagnosis[key] >= floor}
            for name, key, floor in (("top-1", "top1", DIAGNOSIS_TOP1_GOAL), ("top-3", "top3", DIAGNOSIS_TOP3_GOAL))]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, one section per measurement, goals last."""
    meta, results = report["metadata"], report["indexes"]
    lines = [f"# Coding accuracy ({meta['finished']}, {meta['cpu_count']} cores, load {meta['load_average_1m']})", "",
             "| index | version | terms | fresh build s | open s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['index']['name']} | {r['index']['version']} | {r['index']['terms']:,} | "
              f"{r['index']['fresh_build_seconds']} | {r['index']['open_seconds']} |" for r in results]
    lines += ["", f"## Synthetic corpus: {meta['synthetic_documents']} documents, seed {meta['seed']}, "
                  "gold facts as written", "", "| index | measure | n | top-1 | top-3 |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['index']['name']} | {row['measure']} | {row['n']} | {_pct(row['top1'])} | {_pct(row['top3'])} |"
              for r in results for row in r["synthetic"]]
    lines += ["", "## Lookup throughput (one CodeStage)", "",
              "| index | distinct mentions, cold | cold mentions/s | repeated mentions, warm | warm mentions/s |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['index']['name']} | {r['throughput']['distinct_mentions']} | "
              f"{r['throughput']['cold_mentions_per_second']} | {r['throughput']['mentions']} | "
              f"{r['throughput']['mentions_per_second']} |" for r in results]
    codiesp = [r for r in results if r.get("codiesp")]
    if codiesp:
        lines += ["", "## CodiEsp-D dev, English translation (micro-averaged; MAP as the track scores it)", "",
                  "| index | cases | precision | recall | F1 | MAP (ranked list) | MAP, codes split since 2018 "
                  "read in the gold's release | MAP chosen codes | MAP patient's own conditions | "
                  "F1 on 3-char category | seconds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['index']['name']} | {c['cases']}/{c['cases_available']} | {_pct(c['exact']['precision'])} | "
                  f"{_pct(c['exact']['recall'])} | {_pct(c['exact']['f1'])} | {c['map']:.3f} | {c['map_gold_release']:.3f} | "
                  f"{c['map_chosen_codes']:.3f} | {c['map_patient_conditions']:.3f} | "
                  f"{_pct(c['category']['f1'])} | {c['seconds']} |" for r in codiesp for c in [r["codiesp"]]]
        lines += ["", "Missed gold codes by reason:", "", "| index | " + " | ".join(MISS_REASONS) + " |",
                  "|---|" + "---:|" * len(MISS_REASONS)]
        lines += [f"| {r['index']['name']} | "
                  + " | ".join(str(r["codiesp"]["missed_gold_codes"][reason]) for reason in MISS_REASONS) + " |"
                  for r in codiesp]
    lines += [f"\nCodiEsp skipped [{r['index']['name']}]: {r['codiesp_skipped']}"
              for r in results if "codiesp_skipped" in r]
    lines += ["", "## Goals", ""]
    lines += [f"- {'PASS' if g['passed'] else 'FAIL'} [{r['index']['name']}] {g['goal']}" for r in results
              for g in r["goals"]]
    return "\n".join(lines) + "\n"


def run_metadata(args: argparse.Namespace, mentions: Sequence[GoldMention], seconds: float) -> dict[str, Any]:
    """What a reader needs to compare two runs: settings, corpus, machine (cores, load) and run time."""
    return {"synthetic_documents": args.docs, "seed": args.seed, "mentions": dict(Counter(m.kind for m in mentions)),
            "codiesp_dir": str(args.codiesp_dir), "codiesp_cases": args.codiesp_cases, "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "platform": platform.platform(), "seconds": round(seconds, 1),
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def measure_stage(stage: CodeStage, mentions: Sequence[GoldMention], codiesp_dir: Path, codiesp_cases: int | None,
                  throughput_minimum: int = MIN_THROUGHPUT_MENTIONS) -> dict[str, Any]:
    """Every measurement on one set-up code stage: synthetic accuracy, goals, throughput, CodiEsp."""
    synthetic = [score.as_dict() for score in synthetic_accuracy(stage, mentions)]
    result: dict[str, Any] = {
        "code_stage": {"top_k": stage.top_k, "min_score": stage.min_score}, "synthetic": synthetic,
        "goals": goals(synthetic), "throughput": lookup_throughput(stage, mentions, throughput_minimum),
    }
    if (codiesp_dir / "dev" / "devD.tsv").is_file():
        result["codiesp"] = codiesp_accuracy(codiesp_dir, stage, codiesp_cases)
    else:
        result["codiesp_skipped"] = f"no CodiEsp dev set under {codiesp_dir}"
    return result


def measure_index(name: str, args: argparse.Namespace, mentions: Sequence[GoldMention]) -> dict[str, Any]:
    """Build or reuse one index, open it in a code stage and measure."""
    figures = prepare_index(name, index_sources(name), args.cache_dir)
    stage, figures.open_seconds = open_code_stage(Path(figures.path))
    return {"index": asdict(figures)} | measure_stage(stage, mentions, args.codiesp_dir, args.codiesp_cases)


def default_codiesp_dir() -> Path:
    """`eval/codiesp` under the shared folder the `terminology=shared` config points at."""
    return Path(load_config(["terminology=shared"]).terminology.shared_dir) / "eval" / "codiesp"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", choices=INDEX_NAMES, help="one index only (default: both, measured separately)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for coding_accuracy.{json,md}")
    parser.add_argument("--codiesp-dir", type=Path, default=None,
                        help="CodiEsp folder (default: eval/codiesp in the config's shared_dir, ../shared)")
    parser.add_argument("--codiesp-cases", type=int, default=None, help="first N dev cases by id (default: all)")
    parser.add_argument("--docs", type=int, default=60, help="synthetic documents")
    parser.add_argument("--seed", type=int, default=11, help="synthetic corpus seed")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the measured indexes are kept")
    args = parser.parse_args(argv)
    args.codiesp_dir = args.codiesp_dir or default_codiesp_dir()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the reports, print the table; 1 when a goal fails."""
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medrec-synth-") as corpus:
        generate_corpus(Path(corpus), args.docs, args.seed)
        mentions = gold_mentions(Path(corpus) / GOLD_DIR)
    results = [measure_index(name, args, mentions) for name in ([args.index] if args.index else INDEX_NAMES)]
    report = {"metadata": run_metadata(args, mentions, time.perf_counter() - started), "indexes": results}
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coding_accuracy.json").write_text(json.dumps(report, indent=1))
    (args.out / "coding_accuracy.md").write_text(markdown)
    print(markdown)
    return 0 if all(g["passed"] for r in results for g in r["goals"]) else 1


if __name__ == "__main__":
    sys.exit(main())
