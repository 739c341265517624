"""Tiny hand-written release files in the official formats, shared by the reader and build tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# CDC ICD-10-CM tabular XML: a chapter > section > diag tree. S06 carries a sevenChrDef that
# applies to its leaf S06.0X0; T07 is a 3-character leaf with its own sevenChrDef (padded with X).
ICD10CM_TABULAR_XML = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.tabular>
  <version>2026</version>
  <chapter>
    <name>4</name>
    <desc>Endocrine, nutritional and metabolic diseases (E00-E89)</desc>
    <section id="E08-E13">
      <desc>Diabetes mellitus (E08-E13)</desc>
      <diag>
        <name>E11</name>
        <desc>Type 2 diabetes mellitus</desc>
        <inclusionTerm><note>diabetes (mellitus) due to insulin secretory defect</note></inclusionTerm>
        <diag>
          <name>E11.9</name>
          <desc>Type 2 diabetes mellitus without complications</desc>
        </diag>
      </diag>
    </section>
  </chapter>
  <chapter>
    <name>9</name>
    <desc>Diseases of the circulatory system (I00-I99)</desc>
    <section id="I10-I1A">
      <desc>Hypertensive diseases (I10-I1A)</desc>
      <diag>
        <name>I10</name>
        <desc>Essential (primary) hypertension</desc>
        <inclusionTerm>
          <note>high blood pressure</note>
          <note>hypertension (arterial) (benign) (essential) (malignant) (primary) (systemic)</note>
        </inclusionTerm>
      </diag>
    </section>
  </chapter>
  <chapter>
    <name>19</name>
    <desc>Injury, poisoning and certain other consequences of external causes (S00-T88)</desc>
    <section id="S00-S09">
      <desc>Injuries to the head (S00-S09)</desc>
      <diag>
        <name>S06</name>
        <desc>Intracranial injury</desc>
        <sevenChrDef>
          <extension char="A">initial encounter</extension>
          <extension char="D">subsequent encounter</extension>
          <extension char="S">sequela</extension>
        </sevenChrDef>
        <diag>
          <name>S06.0</name>
          <desc>Concussion</desc>
          <diag>
            <name>S06.0X0</name>
            <desc>Concussion without loss of consciousness</desc>
          </diag>
        </diag>
      </diag>
    </section>
    <section id="T07-T07">
      <desc>Injuries involving multiple body regions (T07)</desc>
      <diag>
        <name>T07</name>
        <desc>Unspecified multiple injuries</desc>
        <sevenChrDef>
          <extension char="A">initial encounter</extension>
        </sevenChrDef>
      </diag>
    </section>
  </chapter>
</ICD10CM.tabular>
"""


def icd10cm_order_line(order: int, code: str, billable: bool, short: str, long: str) -> str:
    """One line of `icd10cm-order-YYYY.txt`: order(5) sp code(7) sp flag sp short(60) sp long."""
    return f"{order:05d} {code:<7} {int(billable)} {short:<60} {long}\n"


ICD10CM_ORDER_LINES = [
    icd10cm_order_line(1, "I10", True, "Essential (primary) hypertension", "Essential (primary) hypertension"),
    icd10cm_order_line(2, "E11", False, "Type 2 diabetes mellitus", "Type 2 diabetes mellitus"),
    icd10cm_order_line(3, "E119", True, "Type 2 diabetes mellitus without complications",
               "Type 2 diabetes mellitus without complications"),
    icd10cm_order_line(4, "J449", True, "Chronic obstructive pulmonary disease, unspecified",
               "Chronic obstructive pulmonary disease, unspecified"),
    icd10cm_order_line(5, "S060X0A", True, "Concussion w/o loss of consciousness, init",
               "Concussion without loss of consciousness, initial encounter"),
]


def rxnconso_line(rxcui: str, sab: str, tty: str, name: str, suppress: str = "N") -> str:
    # RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|
    return f"{rxcui}|ENG||||||{rxcui}0|||{rxcui}|{sab}|{tty}|{rxcui}|{name}||{suppress}|4096|\n"


RXNCONSO_LINES = [
    rxnconso_line("6809", "RXNORM", "IN", "metformin"),
    rxnconso_line("861007", "RXNORM", "SCD", "metformin hydrochloride 500 MG Oral Tablet"),
    rxnconso_line("1191", "RXNORM", "IN", "aspirin"),
    rxnconso_line("243670", "RXNORM", "SCD", "aspirin 81 MG Oral Tablet"),
    # Other sources' atoms for the same concepts: must be skipped, even with a kept TTY (ATC has IN).
    rxnconso_line("861007", "MTHSPL", "DP", "METFORMIN HYDROCHLORIDE 500 mg ORAL TABLET [spl brand]"),
    rxnconso_line("6809", "ATC", "IN", "metformin (atc A10BA02)"),
    # A suppressed RxNorm atom: must be skipped.
    rxnconso_line("999001", "RXNORM", "SCD", "obsolete aspirin 325 MG Oral Tablet", suppress="O"),
]

# RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|DIR|RG|SUPPRESS|CVF|
# RELA is what RXCUI2 has to RXCUI1: "861007 has_ingredient 6809".
RXNREL_LINES = [
    "6809||CUI|RO|861007||CUI|has_ingredient|1||RXNORM||||N||\n",
    "861007||CUI|RO|6809||CUI|ingredient_of|2||RXNORM||||N||\n",
    "1191||CUI|RO|243670||CUI|has_ingredient|3||RXNORM||||N||\n",
]

LOINC_CSV = (
    '"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP","CLASS",'
    '"CLASSTYPE","LONG_COMMON_NAME","SHORTNAME","STATUS","EXAMPLE_UCUM_UNITS"\n'
    '"2345-7","Glucose","MCnc","Pt","Ser/Plas","Qn","","CHEM","1",'
    '"Glucose [Mass/volume] in Serum or Plasma","Glucose SerPl-mCnc","ACTIVE","mg/dL"\n'
    '"8867-4","Heart rate","NRat","Pt","XXX","Qn","","HRTRATE.ATOM","2",'
    '"Heart rate","Heart rate","ACTIVE","/min"\n'
    '"2339-0","Glucose","MCnc","Pt","Bld","Qn","","CHEM","1",'
    '"Glucose [Mass/volume] in Blood","Glucose Bld-mCnc","DEPRECATED","mg/dL"\n'
    '"72133-2","Oswestry Disability Index","Score","Pt","^Patient","Qn","","SURVEY.OSWESTRY","4",'
    '"Oswestry Disability Index score","ODI score","ACTIVE","{score}"\n'
)


def write_release_files(folder: Path) -> dict[str, Path]:
    """Write every tiny release file under `folder`; returns their paths by role."""
    folder.mkdir(parents=True, exist_ok=True)
    rrf = folder / "rrf"
    rrf.mkdir(exist_ok=True)
    paths = {
        "xml": folder / "icd10cm-tabular-2026.xml",
        "order": folder / "icd10cm-order-2026.txt",
        "rrf": rrf,
        "rxnconso": rrf / "RXNCONSO.RRF",
        "rxnrel": rrf / "RXNREL.RRF",
        "loinc": folder / "Loinc.csv",
    }
    paths["xml"].write_text(ICD10CM_TABULAR_XML, encoding="utf-8")
    paths["order"].write_text("".join(ICD10CM_ORDER_LINES), encoding="utf-8")
    paths["rxnconso"].write_text("".join(RXNCONSO_LINES), encoding="utf-8")
    paths["rxnrel"].write_text("".join(RXNREL_LINES), encoding="utf-8")
    paths["loinc"].write_text(LOINC_CSV, encoding="utf-8")
    return paths


@pytest.fixture
def release_files(tmp_path: Path) -> dict[str, Path]:
    """Fresh copies of the tiny release files in this test's tmp_path."""
    return write_release_files(tmp_path / "releases")


@pytest.fixture
def order_line():
    """Formats one line of the CDC order file, for tests that change a release."""
    return icd10cm_order_line
