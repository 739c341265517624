"""`medrec deidentify` on an identified output folder drawn in code (real assembler and table schemas)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B import get_fhir_model_class
from identified_output import ALICE, BERT, write_identified_output

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.deid.deidentify import deidentify
from pipeline.deid.identifiers import read_identified_copy
from pipeline.deid.keys import SiteKey
from pipeline.deid.residual import check_residual

KEY_A = b"site-a" * 8
KEY_B = b"site-b" * 8


def _cfg(*overrides: str):
    return load_config(["deid.reference_date=2026-11-01", *overrides]).deid


def _resources(folder: Path, resource_type: str) -> list[dict]:
    path = folder / "fhir" / f"{resource_type}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _all_text(folder: Path) -> str:
    """Every file name and every string in the folder, Parquet cells included."""
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts.append(str(path.relative_to(folder)))
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        else:
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deid")
    write_identified_output(root / "identified")
    for name, key in (("research_a", KEY_A), ("research_a_again", KEY_A), ("research_b", KEY_B)):
        report = deidentify(root / "identified", root / name, _cfg(), SiteKey(key))
        assert report.passed, report.as_json()
    return {"identified": root / "identified", "a": root / "research_a", "a2": root / "research_a_again",
            "b": root / "research_b", "root": root}


def test_no_identifier_of_any_patient_is_left(folders) -> None:
    text = _all_text(folders["a"]).lower()
    for patient in (ALICE, BERT):
        for identifier in (patient.given, patient.family, patient.mrn, patient.birth_date, patient.birth_date_us,
                           patient.phone, patient.phone[-8:], patient.street, patient.city, patient.zip5):
            assert identifier.lower() not in text, identifier
    for lineage in ("/archive/", "doc-alice", "doc-bert", ".pdf", ".png", ".tif", "fac-north", "Farquhar"):
        assert lineage.lower() not in text, lineage
    assert KEY_A.decode() not in text  # the key never travels with the copy
    assert not list(folders["a"].rglob("*.png")) and not list(folders["a"].rglob("*.tif"))  # images: none


def test_pseudonyms_are_stable_per_key_and_unrelated_across_keys(folders) -> None:
    for name in ("fhir/Patient.ndjson", "fhir/Condition.ndjson", "fhir/Provenance.ndjson"):
        assert (folders["a"] / name).read_bytes() == (folders["a2"] / name).read_bytes()
    ids_a = {r["id"] for t in ("Patient", "Encounter", "Condition") for r in _resources(folders["a"], t)}
    ids_b = {r["id"] for t in ("Patient", "Encounter", "Condition") for r in _resources(folders["b"], t)}
    assert len(ids_a) == len(ids_b) == 7 and not ids_a & ids_b
    # Documents of one patient stay linked: Alice's two DocumentReferences name one Patient.
    subjects = [r["subject"]["reference"] for r in _resources(folders["a"], "DocumentReference")]
    assert len(set(subjects)) == 2 and sorted(subjects.count(s) for s in set(subjects)) == [1, 2]
    patients = {r["patient_key"] for r in pq.read_table(folders["a"] / "tables" / "entities.parquet").to_pylist()}
    assert len(patients) == 2 and all(len(p) == 32 for p in patients)


def _encounter_dates(folder: Path) -> list[tuple[str, str | None]]:
    return sorted((e["period"]["start"], e["period"].get("end")) for e in _resources(folder, "Encounter"))


def test_dates_shift_per_patient_and_intervals_hold(folders) -> None:
    before, after = _encounter_dates(folders["identified"]), _encounter_dates(folders["a"])
    assert before != after
    alice_before = [d for d in before if d[0].startswith("2024")]
    shift = {(date.fromisoformat(a[0]) - date.fromisoformat(b[0])).days
             for b, a in zip(before, after) if b in alice_before}
    assert len(shift) == 1 and 0 not in shift  # one offset for all of Alice's dates
    for b, a in zip(before, after):
        if b[1] and a[1]:
            assert (date.fromisoformat(b[1]) - date.fromisoformat(b[0])) == (date.fromisoformat(a[1]) - date.fromisoformat(a[0]))
    pages = {r["document_id"]: r for r in pq.read_table(folders["a"] / "tables" / "pages.parquet").to_pylist()}
    page_dates = sorted(line["text"].split(": ")[1] for page in pages.values() for line in page["lines"]
                        if line["text"].startswith("Admission date"))
    assert set(page_dates) <= {start for start, _ in after} | {"[DATE]"}  # page text shifted by the same offset


def test_year_mode_keeps_years_only(tmp_path: Path, folders) -> None:
    report = deidentify(folders["identified"], tmp_path / "years", _cfg("deid.dates.mode=year"), SiteKey(KEY_A))
    assert report.passed
    assert all(len(start) == 4 for start, _ in _encounter_dates(tmp_path / "years"))


def test_fhir_is_valid_r4b_and_keeps_codes_values_units(folders) -> None:
    for path in sorted((folders["a"] / "fhir").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)

    def clinical(folder: Path) -> list:
        facts = []
        for condition in _resources(folder, "Condition"):
            facts.append(("Condition", [(c["system"], c["code"]) for c in condition["code"]["coding"]]))
        for obs in _resources(folder, "Observation"):
            facts.append(("Observation", obs["code"]["coding"][0]["code"], obs.get("valueQuantity"),
                          obs.get("referenceRange", [{}])[0].get("low"), obs.get("referenceRange", [{}])[0].get("high"),
                          obs.get("interpretation")))
        return sorted(facts, key=str)

    assert clinical(folders["a"]) == clinical(folders["identified"])
    manifest = json.loads((folders["a"] / "fhir" / "manifest.json").read_text())
    assert {e["type"]: e["count"] for e in manifest["output"]} == {
        t: len(_resources(folders["identified"], t)) for t in {e["type"] for e in manifest["output"]}}


def test_patient_generalised_safe_harbor(folders) -> None:
    patients = _resources(folders["a"], "Patient")
    assert all("name" not in p and "identifier" not in p and "telecom" not in p for p in patients)
    zips = sorted(p["address"][0]["postalCode"] for p in patients)
    assert zips == ["000", "602"]  # 692 is a restricted prefix
    old = [p for p in patients if p["address"][0]["postalCode"] == "000"][0]
    assert "birthDate" not in old and {"url": "urn:medrec:deid:age-over-cap", "valueString": "90+"} in old["extension"]
    young = [p for p in patients if p["address"][0]["postalCode"] == "602"][0]
    assert young["birthDate"] != ALICE.birth_date and young["birthDate"].startswith(("1960", "1961", "1962"))


def test_report_counts_changes_per_identifier_type(folders) -> None:
    report = json.loads((folders["a"] / "deid_report.json").read_text())
    changes = report["changes_by_identifier_type"]
    for kind in ("names", "dates", "geographic", "phone_fax", "medical_record_numbers", "file_names", "email",
                 "ages_over_89"):
        assert changes.get(kind, 0) > 0, kind
    residual = report["residual_check"]
    assert residual["left_total"] == 0 and residual["found_in_identified_copy"]["names"] > 0


def test_residual_check_catches_a_planted_identifier(tmp_path: Path, folders) -> None:
    identified = read_identified_copy(folders["identified"])
    research = tmp_path / "planted"
    research.mkdir()
    (research / "notes.md").write_text(f"left over: {ALICE.family}")
    assert check_residual(folders["identified"], research, identified, 4).left["names"] == 1
    (research / "notes.md").write_text("nothing here")
    (research / f"{ALICE.mrn}.json").write_text("{}")  # in a file name
    assert check_residual(folders["identified"], research, identified, 4).left["record_numbers"] == 1


def test_command_fails_when_an_identifier_slips_through_a_kept_column(tmp_path: Path) -> None:
    """A name hidden where the de-identifier keeps text as it is (a code display) fails the command."""
    identified = tmp_path / "identified"
    write_identified_output(identified)
    path = identified / "tables" / "entities.parquet"
    table = pq.read_table(path).to_pylist()
    for row in table:
        if row["kind"] == "diagnosis":
            row["code_display"] = f"Hypertension ({ALICE.family})"
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
    key = tmp_path / "site.key"
    key.write_bytes(KEY_A)
    code = main(["deidentify", str(identified), f"to={tmp_path / 'research'}", f"key_file={key}",
                 "deid.reference_date=2026-11-01"])
    assert code == 1
    report = json.loads((tmp_path / "research" / "deid_report.json").read_text())
    assert not report["passed"] and report["residual_check"]["left_in_research_copy"]["names"] >= 1
    assert report["residual_check"]["files_with_identifiers"] == {"tables/entities.parquet": 1}


def test_refuses_a_key_inside_the_copy_and_a_used_folder(tmp_path: Path, folders) -> None:
    with pytest.raises(FileExistsError):
        deidentify(folders["identified"], folders["a"], _cfg(), SiteKey(KEY_A))
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "site.key").write_bytes(KEY_A)
    with pytest.raises(ValueError, match="inside the research copy"):
        main(["deidentify", str(folders["identified"]), f"to={tmp_path / 'research'}",
              f"key_file={tmp_path / 'research' / 'site.key'}"])


def test_redacted_images_black_out_scrubbed_lines(tmp_path: Path) -> None:
    from PIL import Image

    identified = tmp_path / "identified"
    write_identified_output(identified, sources=tmp_path / "archive")
    report = deidentify(identified, tmp_path / "research", _cfg("deid.images=redacted"), SiteKey(KEY_A))
    assert report.passed and report.images_written["written"] == 3
    images = sorted((tmp_path / "research" / "images").rglob("*.png"))
    assert len(images) == 3 and all(ALICE.family not in str(p) and "doc-" not in str(p) for p in images)
    image = Image.open(images[0])
    # identified_output draws line i at y = 20 i .. 20 i + 14: line 0 is the title, line 1 "Patient: <name>".
    assert image.getpixel((200, 7)) == 255  # "DISCHARGE SUMMARY": nothing to hide
    assert image.getpixel((200, 27)) == 0  # the patient's name line is black
