"""A small finished output folder made in-process: a born-digital page through the pipeline's
own stages (render, classify, lexicon extract, code, validate), table writers and FHIR
assembler, without Ray and without OCR (every page has a text layer)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.assemble.grouped import assemble_group
from pipeline.config import ValidateConfig
from pipeline.manifest import write_manifest
from pipeline.review.users import add_user
from pipeline.schemas import PAGE_SCHEMA
from pipeline.stages.classify import ClassifyStage
from pipeline.stages.code import CodeStage
from pipeline.stages.extract import LexiconExtractStage
from pipeline.stages.render import RenderStage
from pipeline.stages.validate import RuleEngine, ValidateStage
from pipeline.tables import PageTableWriter, finish_entity_tables

PASSWORDS = {"rita": "reviewer-password", "sam": "supervisor-password", "alex": "auditor-password"}
ROLES = {"rita": "reviewer", "sam": "supervisor", "alex": "auditor"}


# A discharge summary with readings the validation rules doubt: a dose out of range, a
# discharge before the admission, a diagnosis no code matches, a lab value that does not fit its unit.
DOUBTFUL_PAGE = [
    "North Valley General Hospital",
    "Patient: Testcase, Robin",
    "MRN: 4400123",
    "DOB: 03/04/1950",
    "DISCHARGE SUMMARY",
    "Admission Date: 06/12/2024",
    "Discharge Date: 06/10/2024",
    "Sex: Female",
    "DISCHARGE DIAGNOSES:",
    "1. Essential hypertension",
    "2. Zorblatt wobble syndrome",
    "DISCHARGE MEDICATIONS:",
    "1. Metformin 5000 mg PO twice daily",
    "2. Lisinopril 10 mg PO daily",
    "LABS:",
    "Potassium 45 mmol/L (3.5 - 5.0)",
]


def write_doubtful_pdf(path: Path) -> None:
    import pymupdf

    path.parent.mkdir(parents=True, exist_ok=True)
    document = pymupdf.open()
    page = document.new_page(width=612, height=792)
    for number, line in enumerate(DOUBTFUL_PAGE):
        page.insert_text((72, 72 + 22 * number), line, fontsize=11)
    document.save(path)


# The rules the fixture's queue rests on, matched by text so a change in how the lexicon names
# a drug (`attribute`) does not empty the queue the tests work through.
FIXTURE_RULES = """
- {id: dose-metformin-text, flag: dose_out_of_range, kind: medication, field: dose, check: range, where: {text_contains: metformin}, params: {min: 250, max: 2000, unit: mg}, severity: warning, message: "Metformin dose outside 250-2000 mg"}
- {id: discharge-before-admission, flag: discharge_before_admission, kind: encounter, field: discharge_date, check: date_order, where: {attribute: discharge_date}, params: {earlier: admission_date}, severity: error, message: "Discharge date before the admission date of the same document"}
"""


def build_output(root: Path, index_path: Path) -> Path:
    """The doubtful discharge summary (born-digital) -> `root/out`, laid out as `medrec run` lays it out."""
    records = root / "records"
    write_doubtful_pdf(records / "fac-north" / "discharge_summary-9999.pdf")
    rules_path = root / "rules.yaml"
    rules_path.write_text(FIXTURE_RULES)
    out = root / "out"
    out.mkdir()
    manifest = write_manifest(records, out / "manifest.parquet", None)
    batch = pa.Table.from_pylist(manifest.to_pylist(), schema=PAGE_SCHEMA)
    config = ValidateConfig(today="2026-11-01", rules_path=str(rules_path))
    for stage in (RenderStage(), ClassifyStage(), LexiconExtractStage(str(index_path)),
                  CodeStage(str(index_path)), ValidateStage(config=config)):
        batch = stage.process_batch(batch)
    rules = RuleEngine.from_config(config)
    tables = PageTableWriter(out / "tables", out / "quarantine.parquet", rules)
    tables.write_batch(batch)
    tables.close_pages()
    assembly_input, _ = finish_entity_tables(out / "tables", tables.documents, rules)
    table = pq.read_table(assembly_input)
    fhir = out / "fhir"
    fhir.mkdir()
    counts: Counter[str] = Counter()
    handles = {}
    for key in sorted(set(table["patient_key"].to_pylist())):
        group = table.filter(pc.equal(table["patient_key"], key))
        for row in assemble_group(group, "medrec 0.1.0", "test-index", "1970-01-01T00:00:00Z").to_pylist():
            if row["json"]:
                kind = row["resource_type"]
                if kind not in handles:
                    handles[kind] = (fhir / f"{kind}.ndjson").open("w")
                handles[kind].write(row["json"] + "\n")
                counts[kind] += 1
    for handle in handles.values():
        handle.close()
    tables.quarantine.close()
    assembly_input.unlink()
    (fhir / "manifest.json").write_text(json.dumps({
        "transactionTime": "1970-01-01T00:00:00Z", "terminology_version": "test-index", "pipeline_version": "medrec 0.1.0",
        "output": [{"type": k, "url": f"{k}.ndjson", "count": n} for k, n in sorted(counts.items())]}, indent=1))
    return out


@pytest.fixture(scope="session")
def pristine_output(tmp_path_factory: pytest.TempPathFactory, terminology_index_path: Path) -> Path:
    """Built once per session; tests work on copies (`output`)."""
    return build_output(tmp_path_factory.mktemp("review-src"), terminology_index_path)


@pytest.fixture
def output(pristine_output: Path, tmp_path: Path) -> Path:
    """A fresh copy of the output folder (the corpus it points at is shared and read-only)."""
    return Path(shutil.copytree(pristine_output, tmp_path / "out"))


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    for name, role in ROLES.items():
        add_user(path, name, role, PASSWORDS[name])
    return path
