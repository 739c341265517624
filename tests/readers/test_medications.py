"""Medications: products read by strength and dose form, whatever the dictionary knows."""

from __future__ import annotations

import pytest
from reader_pages import column, of_kind

from pipeline.readers.medications import read_product


@pytest.mark.parametrize("line, description, name, dose, unit, form, instructions", [
    ("ciprofloxacin 250 mg oral tablet 1 tab bid", "ciprofloxacin 250 mg oral tablet", "ciprofloxacin", 250.0, "mg",
     "oral tablet", "1 tab bid"),
    ("hydrocodone bitartrate 5 mg / ibuprofen 200 mg oral tablet [vicoprofen]",
     "hydrocodone bitartrate 5 mg / ibuprofen 200 mg oral tablet [vicoprofen]", "hydrocodone bitartrate / ibuprofen",
     5.0, "mg", "oral tablet", ""),
    ("3 ml insulin lispro 100 unit/ml prefilled syringe 6 units tid", "3 ml insulin lispro 100 unit/ml prefilled syringe",
     "insulin lispro", 100.0, "unit/ml", "prefilled syringe", "6 units tid"),
    ("200 actuat albuterol 0.09 mg/actuat metered dose inhaler 2 puffs q4h prn wheeze",
     "200 actuat albuterol 0.09 mg/actuat metered dose inhaler", "albuterol", 0.09, "mg/actuat",
     "metered dose inhaler", "2 puffs q4h prn wheeze"),
    ("nicotine 21 mg/24hr transdermal patch", "nicotine 21 mg", "nicotine", 21.0, "mg", None, "/24hr transdermal patch"),
])
def test_products_are_read_with_their_parts(line, description, name, dose, unit, form, instructions) -> None:
    product = read_product(line)

    assert product is not None
    assert (product.description, product.name, product.dose, product.unit, product.form, product.instructions) == (
        description, name, dose, unit, form, instructions)


def test_a_line_without_a_strength_is_no_product() -> None:
    assert read_product("Fall risk score: 30") is None
    assert read_product("Follow up in 2 weeks") is None


def test_inline_list_wrapped_over_lines_gives_each_drug_with_route_from_form(read) -> None:
    lines = column("MEDICATIONS", "losartan 50 mg oral tablet; atorvastatin 20 mg oral",
                   "tablet; budesonide 0.5 mg/ml inhalation suspension")

    medications = of_kind(read(lines), "medication")

    assert [m.text for m in medications] == ["losartan 50 mg oral tablet", "atorvastatin 20 mg oral tablet",
                                             "budesonide 0.5 mg/ml inhalation suspension"]
    assert [m.route for m in medications] == ["PO", "PO", "INH"]
    assert all(m.status == "reported" for m in medications)


def test_a_lead_in_opens_a_prescribed_list_and_its_sig_gives_timing(read) -> None:
    lines = column("PLAN", "Recheck in a month. The patient was prescribed the following medications:",
                   "- doxycycline 100 mg oral capsule 1 capsule twice daily for 7 days",
                   "The patient was placed on a careplan:", "- warm compresses")

    medications = of_kind(read(lines), "medication")

    assert len(medications) == 1
    doxycycline = medications[0]
    assert (doxycycline.timing_frequency, doxycycline.timing_period, doxycycline.timing_period_unit) == (2, 1, "d")
    assert (doxycycline.duration_value, doxycycline.duration_unit, doxycycline.route) == (7.0, "d", "PO")


def test_outside_a_list_only_a_product_or_a_known_drug_with_a_dose_is_a_medication(read) -> None:
    lines = column("SOCIAL HISTORY", "Drinks 2 glasses of wine a week.", "Metformin 500 mg twice daily.",
                   "Works 40 hours a week.")

    assert [m.text for m in of_kind(read(lines), "medication")] == ["Metformin 500 mg"]


def test_a_pack_or_device_named_without_a_strength_is_a_medication_of_the_list(read) -> None:
    lines = column("MEDICATIONS", "metoprolol 25 mg oral tablet; Ortholine 21 day pack", "- Nicotine patch",
                   "- Spacer device", "- Tiotropium inhaler")

    meds = of_kind(read(lines), "medication")

    assert [(m.text, m.attribute, m.value, m.dose_value) for m in meds] == [
        ("metoprolol 25 mg oral tablet", "metoprolol", "oral tablet", 25.0),
        ("Ortholine 21 day pack", "Ortholine", "pack", None), ("Nicotine patch", "Nicotine", "patch", None),
        ("Spacer device", "Spacer", "device", None), ("Tiotropium inhaler", "Tiotropium", "inhaler", None)]
    assert meds[-1].route == "INH"  # the dose form gives the route none was written for


def test_outside_a_medication_list_a_form_without_a_strength_is_no_medication(read) -> None:
    lines = column("HISTORY OF PRESENT ILLNESS", "She brought her nicotine patch and a spacer device.")

    assert of_kind(read(lines), "medication") == []
