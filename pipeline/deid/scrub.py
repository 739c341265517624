"""Free-text scrubbing with Microsoft Presidio (analyzer + anonymizer), offline and without an NER model.

Presidio's default NLP engine is spaCy's `en_core_web_lg`, which is not a PyPI package and
which Presidio downloads at run time when it is missing: neither is allowed here (sites are
air-gapped, CI installs from the registry only). So the analyzer runs Presidio's spaCy engine
over `spacy.blank("en")` (tokens only, nothing to load or download) and every recogniser is
self-contained: Presidio's own pattern recognisers (phone, e-mail, URL, SSN, dates, IP,
licences, NHS numbers, insurance ids ...), ours for record numbers, street addresses, ZIP
codes and ages, a name recogniser (names after labels, titles and before credentials), and
one deny-list recogniser per patient built from that patient's own extracted identifiers,
which catches a given name alone in a sentence where no pattern would.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Callable

import re
import spacy
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MedicalLicenseRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig

from pipeline.dates import iso_date
from pipeline.deid.generalise import DatePolicy, is_over_age_cap
from pipeline.deid.identifiers import PatientIdentifiers

log = logging.getLogger(__name__)
logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # it logs every call at INFO

# Presidio entity -> the Safe Harbor identifier type the report counts it under.
SAFE_HARBOR_TYPE = {
    "PERSON": "names", "PATIENT_NAME": "names", "OWN_NAME": "names", "BIRTH_DATE": "dates",
    "STREET_ADDRESS": "geographic", "CITY_STATE_ZIP": "geographic", "OWN_ADDRESS": "geographic",
    "DATE_TIME": "dates", "OWN_DATE": "dates", "AGE_OVER_CAP": "ages_over_89",
    "PHONE_NUMBER": "phone_fax", "OWN_PHONE": "phone_fax",
    "EMAIL_ADDRESS": "email", "URL": "url", "IP_ADDRESS": "ip_address",
    "US_SSN": "ssn", "US_ITIN": "ssn", "UK_NHS": "health_plan_numbers",
    "MEDICAL_RECORD_NUMBER": "medical_record_numbers", "OWN_NUMBER": "medical_record_numbers",
    "US_BANK_NUMBER": "account_numbers", "CREDIT_CARD": "account_numbers", "IBAN_CODE": "account_numbers",
    "US_DRIVER_LICENSE": "licence_numbers", "MEDICAL_LICENSE": "licence_numbers", "US_PASSPORT": "licence_numbers",
    "DEVICE_ID": "device_numbers", "LONG_NUMBER": "other_unique_numbers",
}

# A checked e-mail domain from the public-suffix snapshot inside the tldextract wheel: Presidio's
# recogniser calls tldextract's module default, which fetches the list over the network first.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class _OfflineEmailRecognizer(EmailRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


_NAME_WORD = r"\p{Lu}[\p{L}\p{N}'\-]+"  # María, O'Neil, Smith-Jones; Synthea-style names carry digits
# Words of one name are one space (or ", ") apart; a word followed by ":" is the next label.
_NAME = rf"{_NAME_WORD}(?:(?:,[ \t]|[ \t])(?![A-Za-z]+:)(?:[A-Z]\.|{_NAME_WORD})){{0,3}}"
# A label naming the patient; then labels naming others (relatives, contacts, clinicians).
_PATIENT_LABELS = r"(?i:patient(?:[ \t]+name)?|name|pt)"
_OTHER_LABELS = (r"(?i:guardian|mother|father|spouse|husband|wife|son|daughter|next[ \t]+of[ \t]+kin|"
                 r"emergency[ \t]+contact|contact|seen[ \t]+by|signed(?:[ \t]+by)?|electronically[ \t]+signed[ \t]+by|"
                 r"dictated[ \t]+by|referred[ \t]+by|referring(?:[ \t]+physician)?|attending(?:[ \t]+physician)?|"
                 r"physician|provider|author|cc)")
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof)"
_MONTH = (r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_CREDENTIALS = r"(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PhD|FNP|DNP|DDS|MBBS|FRCP)"
_STREET_TYPES = (r"(?i:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|"
                 r"circle|cir|highway|hwy|parkway|pkwy|square|sq|trail|trl)")


def _recogniser(entity: str, patterns: list[tuple[str, str, float]], flags: int = re.MULTILINE) -> PatternRecognizer:
    """A Presidio pattern recogniser; case-sensitive unless a pattern says `(?i:...)` (names are capitalised)."""
    return PatternRecognizer(supported_entity=entity, name=f"medrec_{entity.lower()}",
                             patterns=[Pattern(name, rx, score) for name, rx, score in patterns],
                             global_regex_flags=flags)


# Labels of a form drawn as a row of labels over a row of values, which a text layer or OCR
# gives as k label lines followed by k value lines; label -> the entity its value is.
FORM_LABELS = {
    "patient name": "PATIENT_NAME", "patient": "PATIENT_NAME", "name": "PATIENT_NAME",
    "date of birth": "BIRTH_DATE", "dob": "BIRTH_DATE", "birth date": "BIRTH_DATE",
    "mrn": "MEDICAL_RECORD_NUMBER", "medical record number": "MEDICAL_RECORD_NUMBER", "record number": "MEDICAL_RECORD_NUMBER",
    "account number": "MEDICAL_RECORD_NUMBER", "nhs number": "MEDICAL_RECORD_NUMBER",
    "date of service": "DATE_TIME", "dos": "DATE_TIME", "visit date": "DATE_TIME", "admission date": "DATE_TIME",
    "provider": "PERSON", "physician": "PERSON", "attending": "PERSON", "referring physician": "PERSON",
    "phone": "PHONE_NUMBER", "telephone": "PHONE_NUMBER", "address": "STREET_ADDRESS",
    "sex": None, "gender": None, "age": None,  # labels that hold their place in the row, values kept
}


class FormBlockRecognizer(EntityRecognizer):
    """Values of a label row drawn over a value row: k label lines, then k value lines in the same order.

    No pattern sees "ARTEAGA, EVA" as a name on its own line; its place under "PATIENT NAME" does.
    """

    def __init__(self) -> None:
        entities = sorted({e for e in FORM_LABELS.values() if e})
        super().__init__(supported_entities=entities, name="medrec_form_block", supported_language="en")

    def load(self) -> None:
        """Nothing to load: a table of labels."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        lines, offsets, start = text.split("\n"), [], 0
        for line in lines:
            offsets.append(start)
            start += len(line) + 1
        results, i = [], 0
        while i < len(lines):
            j = i
            while j < len(lines) and _label(lines[j]) in FORM_LABELS:
                j += 1
            if j == i:
                i += 1
                continue
            for k, label_line in enumerate(lines[i:j]):
                value_index = j + k
                entity = FORM_LABELS[_label(label_line)]
                if value_index >= len(lines) or not entity or entity not in entities:
                    continue
                value = lines[value_index]
                lead = len(value) - len(value.lstrip())
                if value.strip():
                    begin = offsets[value_index] + lead
                    results.append(RecognizerResult(entity, begin, begin + len(value.strip()), 0.9))
            i = j + (j - i)
        return results


def _label(line: str) -> str:
    return " ".join(line.strip().rstrip(":").lower().split())


def _site_recognisers() -> list[EntityRecognizer]:
    return [
        FormBlockRecognizer(),
        _recogniser("PATIENT_NAME", [
            ("after a patient label", rf"(?<=\b{_PATIENT_LABELS}[ \t]*[:#\-][ \t]*){_NAME}", 0.85),
            ("under a label row", rf"(?<=^[ \t]*(?i:patient[ \t]+name)[ \t]+\S[^\n]*\n[ \t]*){_NAME}", 0.85),
            ("before an id label", rf"(?<=^[ \t]*){_NAME}(?=[ \t]+(?i:mrn|dob|d\.o\.b\.?|date[ \t]+of[ \t]+birth)[ \t]*[:#])", 0.8),
            ("family, given", rf"\b{_NAME_WORD},[ \t]+{_NAME_WORD}(?=[ \t]+\d{{1,4}}[/\-.]\d{{1,2}}[/\-.]\d{{1,4}})", 0.7),
        ]),
        _recogniser("PERSON", [
            ("after a label", rf"(?<=\b{_OTHER_LABELS}[ \t]*[:#\-][ \t]*){_NAME}", 0.85),
            ("after a title", rf"(?<=\b{_TITLES}\.?[ \t]+){_NAME}", 0.85),
            ("before credentials", rf"{_NAME_WORD}(?:[ \t]+(?:[A-Z]\.|{_NAME_WORD})){{1,2}}(?=,?[ \t]+{_CREDENTIALS}\b)", 0.8),
        ]),
        _recogniser("MEDICAL_RECORD_NUMBER", [
            ("labelled id", r"(?<=\b(?i:mrn|medical[ \t]+record(?:[ \t]+(?:number|no\.?|#))?|record[ \t]+(?:no\.?|number|#)|"
                            r"patient[ \t]+id|hospital[ \t]+(?:no\.?|number)|account(?:[ \t]+(?:no\.?|number|#))?|acct\.?|"
                            r"nhs[ \t]+(?:no\.?|number)|member[ \t]+id|policy(?:[ \t]+(?:no\.?|number))?|chart[ \t]+(?:no\.?|#))"
                            r"[ \t]*[:#]?[ \t]*)(?=[A-Za-z\-]*\d)[A-Za-z0-9][A-Za-z0-9\-]{2,}", 0.9),
        ]),
        _recogniser("MEDICAL_RECORD_NUMBER", [
            ("under an MRN label row", r"(?<=^[ \t]*(?i:mrn|medical[ \t]+record[ \t]+(?:number|no\.?))\b[^\n]*\n[ \t]*)"
                                       r"(?=[A-Za-z\-]*\d)[A-Za-z0-9][A-Za-z0-9\-]{3,}", 0.85),
        ]),
        _recogniser("DEVICE_ID", [
            ("labelled device", r"(?<=\b(?i:serial(?:[ \t]+(?:no\.?|number|#))?|s/n|device[ \t]+id|udi|lot(?:[ \t]+(?:no\.?|#))?|"
                                r"model[ \t]+(?:no\.?|#)|licen[cs]e(?:[ \t]+(?:no\.?|number|#))?|dea(?:[ \t]+(?:no\.?|#))?|"
                                r"npi|plate)[ \t]*[:#]?[ \t]*)(?=[A-Za-z\-]*\d)[A-Za-z0-9][A-Za-z0-9\-]{3,}", 0.85),
        ]),
        _recogniser("STREET_ADDRESS", [
            ("number street type", rf"\b\d{{1,6}}[ \t]+(?:[A-Z][A-Za-z0-9'\-]*\.?[ \t]+){{1,4}}{_STREET_TYPES}\b\.?"
                                   r"(?:,?[ \t]+(?i:apt|suite|unit|#)\.?[ \t]*[A-Za-z0-9\-]+)?", 0.85),
            ("po box", r"\b(?i:p\.?[ \t]?o\.?[ \t]+box)[ \t]+\d+", 0.85),
        ]),
        _recogniser("CITY_STATE_ZIP", [
            ("city, ST zip", r"\b[A-Z][A-Za-z.'\-]+(?:[ \t]+[A-Z][A-Za-z.'\-]+){0,3},[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b", 0.85),
            ("ST zip", r"\b[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b", 0.6),
        ]),
        _recogniser("DATE_TIME", [  # month-name dates, which Presidio's date recogniser does not cover
            ("month d, yyyy", rf"\b{_MONTH}\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?,?[ \t]+\d{{4}}\b", 0.85),
            ("d month yyyy", rf"\b\d{{1,2}}(?:st|nd|rd|th)?[ \t]+{_MONTH}\.?,?[ \t]+\d{{4}}\b", 0.85),
        ]),
        _recogniser("AGE_OVER_CAP", [
            ("age", r"\b(?:(?i:age[ \t]*:?[ \t]*)(?:9\d|1[0-4]\d)|(?:9\d|1[0-4]\d)(?=[ \t\-]*(?i:years?[ \t\-]*old|year-old|yo\b|y/o|y\.o\.)))", 0.9),
        ]),
        _recogniser("LONG_NUMBER", [("six or more digits", r"(?<![\d.])\d{6,}(?![\d.])", 0.5)]),
    ]


def _presidio_recognisers() -> list:
    """Presidio's pattern-only recognisers (none of them needs an NER model)."""
    return [
        PhoneRecognizer(), _OfflineEmailRecognizer(), UrlRecognizer(), UsSsnRecognizer(), UsItinRecognizer(),
        DateRecognizer(), IpRecognizer(), UsLicenseRecognizer(), MedicalLicenseRecognizer(), NhsRecognizer(),
        CreditCardRecognizer(), IbanRecognizer(), UsPassportRecognizer(), UsBankRecognizer(),
    ]


class _BlankSpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine on a blank English tokenizer.

    `SpacyNlpEngine.load` downloads any model that is not installed (and would try "blank:en"
    as a package name): this `load` builds the blank pipeline itself. Presidio 2.2.362, not
    newer: from 2.2.363 on it wants PyYAML >= 6.0.3, which paddlex (==6.0.2) refuses.
    """

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}


def build_analyzer() -> AnalyzerEngine:
    """The analyzer, built once per process: blank English tokenizer, pattern recognisers, no download."""
    nlp = _BlankSpacyEngine()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recogniser in _presidio_recognisers() + _site_recognisers():
        registry.add_recognizer(recogniser)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def own_recognisers(identifiers: PatientIdentifiers, min_chars: int) -> list[PatternRecognizer]:
    """Deny-list recognisers from one patient's own identifiers, matched case-insensitively on word bounds."""
    recognisers = []
    for entity, terms in (("OWN_NAME", identifiers.name_terms(min_chars)), ("OWN_NUMBER", identifiers.number_terms(min_chars)),
                          ("OWN_ADDRESS", identifiers.address_terms(min_chars)), ("OWN_DATE", identifiers.date_terms()),
                          ("OWN_PHONE", identifiers.phone_terms())):
        if terms:
            recognisers.append(PatternRecognizer(supported_entity=entity, name=f"own_{entity.lower()}",
                                                 patterns=[Pattern(entity.lower(), rx, 1.0) for rx in terms]))
    return recognisers


@dataclass
class ScrubResult:
    text: str
    spans: list[tuple[int, int, str]]  # scrubbed (start, end, entity) in the input text


@dataclass
class Scrubber:
    """Scrubs the text of one patient: their own identifiers, patterns, names; dates shifted in place."""

    analyzer: AnalyzerEngine
    anonymizer: AnonymizerEngine
    policy: DatePolicy
    own: list[PatternRecognizer]
    min_score: float
    over_age_cap: bool = False  # the patient is over 89: their birth date must not show the year either
    reference_date: date = field(default_factory=date.today)  # ages are reckoned at it
    age_cap: int = 89
    counts: Counter[str] = field(default_factory=Counter)

    def analyze(self, text: str) -> list[RecognizerResult]:
        if not text or not text.strip():
            return []
        results = self.analyzer.analyze(text=text, language="en", ad_hoc_recognizers=self.own,
                                        score_threshold=self.min_score)
        return [r for r in results if r.entity_type in SAFE_HARBOR_TYPE]

    def scrub(self, text: str | None, results: list[RecognizerResult] | None = None) -> ScrubResult:
        """The text with every identifier replaced: `[NAME]`, `[MRN]` ..., dates shifted, ages over the cap as 90+."""
        if text is None:
            return ScrubResult(text, [])  # type: ignore[arg-type]
        results = self.analyze(text) if results is None else results
        if not results:
            return ScrubResult(text, [])
        anonymised = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self._operators())
        for item in anonymised.items:
            self.counts[SAFE_HARBOR_TYPE[item.entity_type]] += 1
        spans = [(r.start, r.end, r.entity_type) for r in results]
        return ScrubResult(anonymised.text, spans)

    def _operators(self) -> dict[str, OperatorConfig]:
        def replace(label: str) -> OperatorConfig:
            return OperatorConfig("replace", {"new_value": f"[{label}]"})

        shift: Callable[[str], str] = lambda written: self._shifted(written)  # noqa: E731
        return {
            "DEFAULT": replace("REDACTED"),
            "PERSON": replace("NAME"), "PATIENT_NAME": replace("NAME"), "OWN_NAME": replace("NAME"),
            "DATE_TIME": OperatorConfig("custom", {"lambda": shift}),
            "OWN_DATE": replace("DOB 90+") if self.over_age_cap else OperatorConfig("custom", {"lambda": shift}),
            "BIRTH_DATE": OperatorConfig("custom", {"lambda": self._birth_date}),
            "AGE_OVER_CAP": OperatorConfig("custom", {"lambda": lambda written: re.sub(r"\d+", "90+", written)}),
            "STREET_ADDRESS": replace("ADDRESS"), "OWN_ADDRESS": replace("ADDRESS"), "CITY_STATE_ZIP": replace("ADDRESS"),
            "PHONE_NUMBER": replace("PHONE"), "OWN_PHONE": replace("PHONE"),
            "MEDICAL_RECORD_NUMBER": replace("ID"), "OWN_NUMBER": replace("ID"), "LONG_NUMBER": replace("ID"),
            "EMAIL_ADDRESS": replace("EMAIL"), "URL": replace("URL"),
        }

    def _birth_date(self, written: str) -> str:
        """A birth date in text: shifted, or `[DOB 90+]` when it makes the patient older than the cap."""
        iso = iso_date(written, future_years=0)
        if self.over_age_cap or (iso and is_over_age_cap(iso, self.reference_date, self.age_cap)):
            return "[DOB 90+]"
        return self._shifted(written)

    def _shifted(self, written: str) -> str:
        """A date in text becomes the patient's shifted ISO date; one that does not parse is removed."""
        iso = iso_date(written)
        shifted = self.policy.apply(iso) if iso else None
        return shifted or "[DATE]"
