"""The workbench in a real headless Chromium (Debian's chromium + chromium-driver via Selenium):
log in, open the queue, correct a value and pick another code candidate with the keyboard,
then `apply-review` and find both in the FHIR NDJSON.

Set MEDREC_REVIEW_SCREENSHOT=FILE.png to keep a screenshot of the item view (the README's)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.assemble.fhir import resource_id
from pipeline.config import RenderConfig, ReviewConfig
from pipeline.review.app import Workbench, create_app
from pipeline.review.apply import apply_review
from pipeline.review.users import UserStore
from tests.review.conftest import PASSWORDS

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def server(output: Path, users_file: Path, terminology_index_path: Path):
    import uvicorn

    if not (CHROMIUM and DRIVER):
        pytest.skip("headless Chromium not installed: apt-get install chromium chromium-driver (.ci/run does)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workbench = Workbench([output], UserStore(users_file), b"k" * 32, ReviewConfig(), RenderConfig(),
                          terminology_index_path)
    server = uvicorn.Server(uvicorn.Config(create_app(workbench), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the workbench did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                     "--disable-gpu", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_review_with_the_keyboard_then_apply(server: str, browser, output: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{server}/queue")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.NAME, "username").send_keys("rita")
    browser.find_element(By.NAME, "password").send_keys(PASSWORDS["rita"], Keys.ENTER)
    wait_for(lambda: browser.current_url.endswith("/queue"))
    assert "open 3" in browser.find_element(By.ID, "counts").text

    # The worst item first: Metformin's dose. Enter opens the selected row.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ENTER)
    wait_for(lambda: "/item/" in browser.current_url)
    assert browser.find_element(By.ID, "value").text == "5000 mg"
    image = browser.find_element(By.CSS_SELECTOR, "#page-svg image")
    wait_for(lambda: browser.execute_script(
        "return new Promise(r => { const i = new Image(); i.onload = () => r(i.width > 0); i.onerror = () => r(false);"
        " i.src = arguments[0]; })", image.get_attribute("href")))
    if os.environ.get("MEDREC_REVIEW_SCREENSHOT"):
        time.sleep(0.3)
        browser.save_screenshot(os.environ["MEDREC_REVIEW_SCREENSHOT"])
    dose_url = browser.current_url

    browser.find_element(By.TAG_NAME, "body").send_keys("e")  # edit the value: focus in the field, text selected
    browser.switch_to.active_element.send_keys("500 mg", Keys.ENTER)
    wait_for(lambda: browser.current_url != dose_url)

    # Next: the diagnosis no code matched; pick its second candidate with "2", save with "c".
    assert "Zorblatt wobble syndrome" in browser.find_element(By.ID, "value").text
    code_url = browser.current_url
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    assert "D69.41" in browser.find_element(By.ID, "chosen").text
    browser.find_element(By.TAG_NAME, "body").send_keys("c")
    wait_for(lambda: browser.current_url != code_url)

    result = apply_review(output)
    assert result.entities_corrected == 2
    entities = {r["text"]: r for r in pq.read_table(output / "tables" / "entities.parquet").to_pylist()}
    patient_key = entities["Zorblatt wobble syndrome"]["patient_key"]

    def made_from(kind: str, text: str) -> dict:
        row = entities[text]
        wanted = resource_id(patient_key, kind, row["facility_id"], row["document_id"], row["entity_id"])
        lines = (output / "fhir" / f"{kind}.ndjson").read_text().splitlines()
        return next(r for r in map(json.loads, lines) if r["id"] == wanted)

    request = made_from("MedicationRequest", "Metformin 5000 mg")
    assert request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 500
    condition = made_from("Condition", "Zorblatt wobble syndrome")
    assert condition["code"]["coding"][0]["code"] == "D69.41"
