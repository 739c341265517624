"""Readers for official release formats and the starter sets kept in the package.

Each reader yields `Concept` rows. Release files are read in place; nothing is fetched.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from terminology_index import CPT, ICD10CM, LOINC, RXNORM, SNOMED
from terminology_index.concepts import Concept


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _tsv_rows(handle: io.TextIOBase) -> Iterator[dict[str, str]]:
    yield from csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def require_file(path: Path, what: str, how: str) -> Path:
    """A missing release file is an error that names the path and how to provide it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}: {how}")
    return path


def _dotted(code: str) -> str:
    return code if len(code) <= 3 or "." in code else f"{code[:3]}.{code[3:]}"


# ICD-10-CM -----------------------------------------------------------------------------


def bundled_icd10cm_xml() -> Path:
    """The CDC tabular XML that ships inside the `simple-icd-10-cm` package."""
    # Located by its spec, not imported: importing the package parses the whole XML (4 s),
    # and every run asks for this path to fingerprint the index's sources.
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the simple-icd-10-cm package is not installed: install it or set the XML path")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    matches = sorted(p for p in data.iterdir() if p.name.startswith("icd10") and p.name.endswith(".xml"))
    if not matches:
        raise FileNotFoundError(f"no ICD-10-CM tabular XML in {data}: reinstall simple-icd-10-cm")
    return Path(str(matches[-1]))


def read_icd10cm_tabular_xml(path: Path) -> Iterator[Concept]:
    """CDC ICD-10-CM tabular XML: codes, inclusion terms, and 7th-character expansions.

    A code with no child codes is billable, unless a seventh character applies to it, in
    which case the billable codes are the code padded with 'X' plus each seventh character.
    """
    root = ET.parse(require_file(path, "ICD-10-CM tabular XML", "install simple-icd-10-cm or set the path")).getroot()

    def seventh_characters(diag: ET.Element) -> list[tuple[str, str]]:
        definition = diag.find("sevenChrDef")
        if definition is None:
            return []
        return [(e.get("char", ""), (e.text or "").strip()) for e in definition.findall("extension")]

    def walk(diag: ET.Element, inherited: list[tuple[str, str]]) -> Iterator[Concept]:
        code = (diag.findtext("name") or "").strip()
        desc = (diag.findtext("desc") or "").strip()
        sevenths = seventh_characters(diag) or inherited
        children = diag.findall("diag")
        billable = not children and not sevenths
        yield Concept(ICD10CM, code, desc, desc, "preferred", "diagnosis", billable)
        for note in diag.findall("inclusionTerm/note"):
            term = (note.text or "").strip()
            if term:
                yield Concept(ICD10CM, code, desc, term, "inclusion", "diagnosis", billable)
        if not children and sevenths:
            bare = code.replace(".", "")
            padded = bare.ljust(6, "X")
            for char, meaning in sevenths:
                full = _dotted(padded + char)
                display = f"{desc}, {meaning}"
                yield Concept(ICD10CM, full, display, display, "preferred", "diagnosis", True)
        for child in children:
            yield from walk(child, sevenths)

    for section in root.iter("section"):
        for diag in section.findall("diag"):
            yield from walk(diag, [])


def read_icd10cm_tsv(path: Path) -> Iterator[Concept]:
    """The order-file TSV in ../shared/terminology (code, code_dotted, billable, descriptions)."""
    with _open_text(require_file(path, "ICD-10-CM TSV", "point terminology.icd10cm_tsv at it")) as handle:
        for row in _tsv_rows(handle):
            display = row["long_description"]
            yield Concept(ICD10CM, row["code_dotted"], display, display, "preferred", "diagnosis", row["billable"] == "1")
            if row["short_description"] != display:
                yield Concept(ICD10CM, row["code_dotted"], display, row["short_description"], "synonym", "diagnosis",
                              row["billable"] == "1")


def read_icd10cm_order_file(path: Path) -> Iterator[Concept]:
    """CDC `icd10cm-order-YYYY.txt`: fixed width (order, code, billable flag, short, long)."""
    with _open_text(require_file(path, "ICD-10-CM order file", "copy the CDC release file there")) as handle:
        for line in handle:
            if len(line) < 16:
                continue
            code, billable = line[6:14].strip(), line[14:15] == "1"
            short, long = line[16:77].strip(), line[77:].strip()
            yield Concept(ICD10CM, _dotted(code), long, long, "preferred", "diagnosis", billable)
            if short and short != long:
                yield Concept(ICD10CM, _dotted(code), long, short, "synonym", "diagnosis", billable)


# RxNorm --------------------------------------------------------------------------------

RXNORM_KEPT_TTYS = {"IN", "PIN", "MIN", "BN", "SCD", "SBD", "SCDC", "GPCK", "BPCK"}


def read_rxnorm_rrf(rxnconso: Path, rxnrel: Path | None = None) -> Iterator[Concept]:
    """NLM RxNorm RRF: RXNCONSO (SAB=RXNORM, not suppressed) and, if given, RXNREL links
    from clinical drugs to their ingredients."""
    require_file(rxnconso, "RXNCONSO.RRF", "unzip the NLM RxNorm release and point terminology.rxnorm_rrf_dir at rrf/")
    ingredient_of: dict[str, str] = {}
    if rxnrel is not None and rxnrel.is_file():
        with rxnrel.open(encoding="utf-8") as handle:
            for line in handle:
                f = line.rstrip("\n").split("|")
                # RXNREL: RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|SRUI|SAB|...
                if len(f) > 10 and f[10] == "RXNORM" and f[7] in ("has_ingredient", "ingredient_of"):
                    drug, ingredient = (f[4], f[0]) if f[7] == "has_ingredient" else (f[0], f[4])
                    ingredient_of.setdefault(drug, ingredient)
    with rxnconso.open(encoding="utf-8") as handle:
        for line in handle:
            f = line.rstrip("\n").split("|")
            # RXNCONSO: RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
            if len(f) < 17 or f[11] != "RXNORM" or f[12] not in RXNORM_KEPT_TTYS or f[16] not in ("N", ""):
                continue
            rxcui, tty, name = f[0], f[12], f[14]
            ingredient = rxcui if tty == "IN" else ingredient_of.get(rxcui)
            yield Concept(RXNORM, rxcui, name, name, "preferred", "medication", True, tty=tty, ingredient=ingredient)


def read_rxnorm_tsv(concepts: Path, relations: Path | None = None) -> Iterator[Concept]:
    """The RxNorm TSV extract in ../shared/terminology (rxcui, tty, name + relations)."""
    ingredient_of: dict[str, str] = {}
    precise_of: dict[str, str] = {}  # clinical component/drug -> its precise ingredient (a salt: PIN)
    if relations is not None:
        with _open_text(require_file(relations, "RxNorm relations TSV", "point terminology.rxnorm_relations at it")) as h:
            for row in _tsv_rows(h):
                if row["relation"] == "has_ingredient" and row["target_tty"] == "IN":
                    ingredient_of.setdefault(row["source_rxcui"], row["target_rxcui"])
                elif row["relation"] == "has_precise_ingredient" and row["target_tty"] == "PIN":
                    precise_of.setdefault(row["source_rxcui"], row["target_rxcui"])
    # A salt ("metoprolol tartrate") takes the ingredient of the drugs it is the precise ingredient of.
    for drug, salt in precise_of.items():
        if drug in ingredient_of:
            ingredient_of.setdefault(salt, ingredient_of[drug])
    with _open_text(require_file(concepts, "RxNorm concepts TSV", "point terminology.rxnorm_concepts at it")) as h:
        for row in _tsv_rows(h):
            rxcui, tty = row["rxcui"], row["tty"]
            ingredient = rxcui if tty == "IN" else ingredient_of.get(rxcui)
            yield Concept(RXNORM, rxcui, row["name"], row["name"], "preferred", "medication", True, tty=tty,
                          ingredient=ingredient)


# LOINC ---------------------------------------------------------------------------------


def read_loinc_csv(path: Path) -> Iterator[Concept]:
    """Regenstrief Loinc.csv or LoincTableCore.csv (also the gzipped TSV extract in shared/).

    Laboratory, clinical and survey classes (CLASSTYPE 1, 2 and 4) that are not deprecated;
    claims attachments (3) name no result. A scored instrument (PHQ-9, GAD-7, AUDIT-C) is
    looked up like a lab result, as in the starter set.
    """
    require_file(path, "LOINC table", "unzip the LOINC release and point terminology.loinc_table at Loinc.csv")
    delimiter = "\t" if ".tsv" in path.name else ","
    with _open_text(path) as handle:
        # The TSV extracts are written without quoting; official Loinc.csv quotes every field.
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        for row in reader:
            row = {k.lower(): v for k, v in row.items()}
            if row.get("status") == "DEPRECATED" or row.get("classtype") not in ("1", "2", "4"):
                continue
            code = row["loinc_num"]
            display = row.get("long_common_name") or row.get("component", "")
            kind = "vital" if row.get("classtype") == "2" else "lab"
            unit = row.get("example_ucum_units") or None
            yield Concept(LOINC, code, display, display, "preferred", kind, True, unit=unit)
            # Short name, and the friendlier names of the full table (DisplayName, consumer name).
            for column in ("shortname", "displayname", "consumer_name"):
                if row.get(column) and row[column] != display:
                    yield Concept(LOINC, code, display, row[column], "synonym", kind, True, unit=unit)
            # The component alone ("Hemoglobin") names many codes: a weaker, ambiguous term.
            if row.get("component") and row["component"] != display:
                yield Concept(LOINC, code, display, row["component"], "component", kind, True, unit=unit)


def read_loinc_versions(path: Path) -> Iterator[str]:
    """The VersionLastChanged of every LOINC row: the newest is the release the table is."""
    delimiter = "\t" if ".tsv" in path.name else ","
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with _open_text(path) as handle:
        for row in csv.DictReader(handle, delimiter=delimiter, quoting=quoting):
            lowered = {k.lower(): v for k, v in row.items()}
            value = lowered.get("version_last_changed") or lowered.get("versionlastchanged")
            if value:
                yield value


# SNOMED CT and CPT (licensed: read only where a site holds the release) -----------------

SNOMED_KIND_BY_HIERARCHY = {"disorder": "diagnosis", "finding": "diagnosis", "procedure": "procedure",
                            "substance": "medication"}


def read_snomed_rf2(description_file: Path) -> Iterator[Concept]:
    """SNOMED CT RF2 `sct2_Description_Snapshot-en_*.txt`: active descriptions of active
    concepts; the fully specified name's semantic tag ("(disorder)") gives the kind."""
    require_file(description_file, "SNOMED CT RF2 description snapshot",
                 "unzip the site's licensed SNOMED CT release and point terminology.sources.snomed_rf2 at it")
    fsn_tag: dict[str, str] = {}
    rows: list[tuple[str, str, str]] = []
    with description_file.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["active"] != "1":
                continue
            term, concept = row["term"], row["conceptId"]
            if row["typeId"] == "900000000000003001" and term.endswith(")") and "(" in term:
                fsn_tag[concept] = term[term.rindex("(") + 1:-1]
            else:
                rows.append((concept, term, row["typeId"]))
    for concept, term, _ in rows:
        kind = SNOMED_KIND_BY_HIERARCHY.get(fsn_tag.get(concept, ""))
        if kind:
            yield Concept(SNOMED, concept, term, term, "synonym", kind, True)


def read_cpt_csv(path: Path) -> Iterator[Concept]:
    """A site's CPT code file as CSV with `code` and `description` columns (AMA licence)."""
    require_file(path, "CPT CSV", "export the site's licensed CPT file as CSV (code, description)")
    with _open_text(path) as handle:
        for row in csv.DictReader(handle):
            row = {k.strip().lower(): v.strip() for k, v in row.items()}
            yield Concept(CPT, row["code"], row["description"], row["description"], "preferred", "procedure", True)


# Starter sets kept in the package --------------------------------------------------------


def _starter(name: str) -> io.TextIOBase:
    return (resources.files("terminology_index") / "data" / name).open("r", encoding="utf-8", newline="")


def read_loinc_starter() -> Iterator[Concept]:
    """Vital-sign and common lab LOINC codes with UCUM units and the names charts use."""
    with _starter("loinc_starter.tsv") as handle:
        for row in _tsv_rows(handle):
            # A scored instrument (LOINC class type 4, survey) is looked up like a lab result.
            kind = "lab" if row["kind"] == "survey" else row["kind"]
            yield Concept(LOINC, row["loinc_num"], row["display"], row["display"], "preferred", kind, True,
                          unit=row["ucum"])
            for synonym in filter(None, row["synonyms"].split("|")):
                yield Concept(LOINC, row["loinc_num"], row["display"], synonym, "abbreviation", kind, True,
                              unit=row["ucum"])


def read_rxnorm_starter() -> Iterator[Concept]:
    """Common medications: ingredients with brand names, and frequent clinical drugs."""
    with _starter("rxnorm_starter.tsv") as handle:
        for row in _tsv_rows(handle):
            yield Concept(RXNORM, row["rxcui"], row["name"], row["name"], "preferred", "medication", True,
                          tty=row["tty"], ingredient=row["ingredient_rxcui"])
            for synonym in filter(None, row["synonyms"].split("|")):
                yield Concept(RXNORM, row["rxcui"], row["name"], synonym, "synonym", "medication", True,
                              tty=row["tty"], ingredient=row["ingredient_rxcui"])


def read_icd10cm_clinical_synonyms(displays: dict[str, str]) -> Iterator[Concept]:
    """Standard clinical phrasings and abbreviations (HTN, DM2, CKD 3a) for ICD-10-CM codes,
    each row with its source (the ICD-10-CM Index or Tabular, the NLM abbreviation list)."""
    with _starter("icd10cm_synonyms.tsv") as handle:
        for row in _tsv_rows(handle):
            if not row.get("source"):
                raise ValueError(f"icd10cm_synonyms.tsv row for {row['code']} names no source")
            display = displays.get(row["code"], row["code"])
            for phrase in filter(None, row["phrase"].split("|")):
                yield Concept(ICD10CM, row["code"], display, phrase, "abbreviation", "diagnosis", True)
