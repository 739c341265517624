"""Code stage: each entity -> top-k terminology candidates with scores, and a chosen code."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline.readers.medications import read_product
from pipeline.records import CodeCandidate, Entity
from pipeline.spotter import SPOTTED
from pipeline.stages.base import Resources, Stage
from terminology_index import ICD10CM

# Words that join two conditions ICD-10-CM may code together.
_LINKED = re.compile(r"\s+(?:with|w/|due to|secondary to|and)\s+", re.IGNORECASE)
CODED_KINDS = ("diagnosis", "medication", "allergy", "lab", "vital")
# Coded only where a site loaded SNOMED CT or CPT; without them "uncoded" would flag every one.
CODED_WHEN_LOADED = ("procedure",)
# A candidate this good is the product itself (an exact or OCR-tolerant name match).
_EXACT = 0.85
_NEXT_BEST = 0.97  # a candidate offered after the chosen one scores a little under it
_VITAL_LOOKUP_NAMES = {"pulse": "heart rate", "spo2": "spo2", "temperature": "body temperature"}
# The LOINC codes FHIR's vital-signs profiles fix (R4 Observation "Vital Signs" profiles,
# hl7.org/fhir/R4/observation-vitalsigns.html) and US Core 6.1 adds for children (pediatric
# BMI-for-age, weight-for-length, head circumference percentile). A vitals list names these
# measures; where one is a candidate it is the code, as FHIR consumers query vitals by them.
VITAL_SIGN_PROFILE_CODES = frozenset({
    "85353-1", "9279-1", "8867-4", "2708-6", "59408-5", "8310-5", "8302-2", "8306-3", "9843-4", "29463-7",
    "39156-5", "85354-9", "8480-6", "8462-4", "59576-9", "77606-2", "8289-1",
})
_PROFILE_MIN_SCORE = 0.4  # a vitals list corroborates a weaker name match ("Wt-for-length pctl")


class CodeStage(Stage):
    """Looks entities up in the LanceDB index (opened once per actor) and picks a code.

    Only billable ICD-10-CM codes are chosen; a header may stay a candidate. A medication
    with a strength is coded to its clinical drug (SCD) when exactly one fits, else to the
    ingredient, and the ingredient is always kept. No match leaves the code empty and flags
    the entity: a default code never stands in for "not found".
    """

    name: ClassVar[str] = "code"
    required_columns = Stage.required_columns + ("entities",)

    def __init__(self, index_path: str, top_k: int = 5, min_score: float = 0.5,
                 resources: Resources | None = None):
        super().__init__(resources or Resources(num_cpus=0.5, batch_size=16, concurrency=1))
        if not 1 <= top_k <= 50:
            raise ValueError("top_k must be between 1 and 50")
        self.index_path, self.top_k, self.min_score = index_path, top_k, min_score
        self.index = None

    def setup(self) -> None:
        from pipeline.terminology import TerminologyIndex

        # The query encoder loads on the first semantic lookup, if any (about 0.4 s; `QueryEncoder`).
        self.index = TerminologyIndex(Path(self.index_path))

    def process_page(self, row: dict[str, Any]) -> dict[str, Any]:
        entities = [Entity.from_row(e) for e in row["entities"] or []]
        coded: list[Entity] = []
        for entity in entities:
            coded.append(entity)
            if entity.code is not None:  # coded upstream: the LLM chose it from this index's candidates
                continue
            if entity.kind == "diagnosis":
                also_reported = self.code_combination(entity)
                if also_reported is None:
                    self.code_entity(entity)
                else:
                    coded.extend(also_reported)
            # "No known allergies" names no substance to code.
            elif entity.kind in CODED_KINDS and not (entity.kind == "allergy" and entity.assertion == "negated"):
                self.code_entity(entity)
            elif entity.kind in CODED_WHEN_LOADED and self.index.has_kind(entity.kind):
                self.code_entity(entity)
        row["entities"] = [entity.to_row() for entity in coded]
        return row

    def code_combination(self, entity: Entity) -> list[Entity] | None:
        """"X with Y" where ICD-10-CM has one code for both: the entity takes the combination
        code, and Y (a CKD stage, say) is returned as its own entity when coders report it too.
        None when the text is not such a pair."""
        parts = _LINKED.split(entity.text, maxsplit=1)
        if len(parts) != 2:
            return None
        first, second = (self._exact_code(part) for part in parts)
        rule = self.index.combination(first.code, second.code) if first and second else None
        if rule is None:
            return None
        combined, keep_second = rule
        entity.candidates = [CodeCandidate(ICD10CM, combined.code, combined.display, 1.0,
                                           f"combination:{first.code}+{second.code}"), first, second]
        entity.code, entity.code_system, entity.code_display, entity.code_score = (
            combined.code, ICD10CM, combined.display, min(first.score, second.score))
        entity.confidence = round(entity.confidence * entity.code_score, 4)
        if not keep_second:
            return []
        stage = replace(entity, entity_id=f"{entity.entity_id}-2", text=parts[1].strip(), code=second.code,
                        code_display=second.display, code_score=second.score, candidates=[second],
                        flags=list(entity.flags))
        return [stage]

    def _exact_code(self, text: str) -> CodeCandidate | None:
        """The billable code of a part of a combined mention, when it matches near-exactly."""
        for candidate in self.index.candidates("diagnosis", text.strip(), self.top_k):
            if candidate.score >= 0.9 and self._choosable(candidate.system, candidate.code):
                return candidate
        return None

    def code_entity(self, entity: Entity) -> None:
        assert self.index is not None, "setup() opens the index"
        query = entity.text
        if entity.kind == "vital":
            query = _VITAL_LOOKUP_NAMES.get(entity.attribute or "", entity.attribute or entity.text)
        elif entity.kind == "allergy" and entity.attribute:
            query = entity.attribute
        candidates = self.index.candidates(entity.kind, query, self.top_k)
        if entity.kind == "medication" and not any(c.score >= _EXACT for c in candidates):
            # The product as written is no RxNorm name ("Acetaminophen 325 mg tab"): code its
            # drug, then the clinical drug of that strength and form (below).
            product = read_product(query)
            drug = product.name if product is not None else entity.attribute
            # A combination ("a 325 mg / b 10 mg") is never coded as one of its drugs.
            if drug and "/" not in drug:
                candidates = self._drug_candidates(drug)
        spotted = [c for c in entity.candidates if c.match == SPOTTED]
        if spotted:  # what the extractor's spotter found these words to name
            candidates = self.index.with_spotted(candidates, spotted, query, self.top_k)
        if entity.kind == "lab":
            candidates = self.index.prefer_lab_property(candidates, query, entity.unit, self.top_k)
            # A result under a panel's title is measured in the panel's specimen.
            specimen = self.index.panel_specimen(entity.panel) if entity.panel else None
            if specimen:
                candidates = self.index.in_specimen(candidates, specimen, self.top_k)
        entity.candidates = candidates
        chosen = next(
            (c for c in candidates if c.score >= self.min_score and self._choosable(c.system, c.code)), None
        )
        if entity.kind in ("lab", "vital") and "vital" in (entity.section or "").lower():
            chosen = next((c for c in candidates if c.code in VITAL_SIGN_PROFILE_CODES
                           and c.score >= _PROFILE_MIN_SCORE), chosen)
        if chosen is None:
            entity.flags.append("uncoded")
            return
        entity.code, entity.code_system, entity.code_display, entity.code_score = (
            chosen.code, chosen.system, chosen.display, chosen.score)
        if entity.kind == "medication":
            self._refine_to_clinical_drug(entity)
        elif entity.kind == "allergy":
            entity.ingredient_code = self.index.concept(chosen.system, chosen.code).ingredient
        elif chosen.system == ICD10CM:
            self._offer_category_default(entity, chosen)
        entity.confidence = round(entity.confidence * chosen.score, 4)

    def _offer_category_default(self, entity: Entity, chosen: CodeCandidate) -> None:
        """The chosen code's category default (R10.9 beside R10.31) as the next candidate: where
        the text is vaguer than the code it matched, the coder reviewing it takes that one."""
        default = self.index.billable_leaf(chosen.code[:3], entity.text)
        if default is None or any(c.code == default.code for c in entity.candidates):
            return
        offered = CodeCandidate(ICD10CM, default.code, default.display, round(chosen.score * _NEXT_BEST, 4),
                                f"category-default-of:{chosen.code}")
        at = next((i for i, c in enumerate(entity.candidates) if c.code == chosen.code), 0) + 1
        entity.candidates = (entity.candidates[:at] + [offered] + entity.candidates[at:])[:self.top_k]

    def _drug_candidates(self, drug: str) -> list[CodeCandidate]:
        """Candidates for a drug name; where the index names none exactly, for its leading words.

        "Metoprolol tartrate": a salt (or another word) that an index holding only ingredients
        does not name; its leading words name the ingredient exactly. A shorter name is taken
        only on an exact match, so a drug the index does not know stays uncoded."""
        candidates = self.index.candidates("medication", drug, self.top_k)
        words = drug.split()
        while len(words) > 1 and not any(c.score >= _EXACT for c in candidates):
            words.pop()
            shorter = self.index.candidates("medication", " ".join(words), self.top_k)
            if any(c.score >= _EXACT for c in shorter):
                return shorter
        return candidates

    def _choosable(self, system: str, code: str) -> bool:
        concept = self.index.concept(system, code)
        return concept is not None and concept.billable

    def _refine_to_clinical_drug(self, entity: Entity) -> None:
        concept = self.index.concept(entity.code_system, entity.code)
        entity.ingredient_code = concept.ingredient if concept else None
        if not entity.ingredient_code or entity.dose_value is None:
            return
        strength_mg = {"mg": 1.0, "mcg": 0.001, "g": 1000.0}.get(entity.dose_unit or "")
        if strength_mg is None:
            return
        drug = self.index.clinical_drug(entity.ingredient_code, entity.dose_value * strength_mg, entity.value)
        if drug is not None:
            entity.code, entity.code_display = drug.code, drug.display
