"""The rendered report in a real browser (headless Chromium): no console error, no request to
any host, working filters, alt text everywhere; full-page and phone-width screenshots.

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and
selenium (pip install selenium). Screenshots go to $AUDITOR_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.report import render_report
from tests.helpers.run_fixtures import HOSTILE_CLASSES, build_run, full_run, many_classes_run

# Drives headless Chromium: `-m 'not browser'` leaves it out (README).
pytestmark = pytest.mark.browser

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first_existing(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None) or shutil.which(name)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install selenium (the test extra installs it)")
    binary = _first_existing(CHROMIUM_PATHS, "chromium")
    driver_path = _first_existing(DRIVER_PATHS, "chromedriver")
    if binary is None or driver_path is None:
        pytest.fail(
            "headless Chromium is needed for this test: install chromium and chromedriver "
            "(Debian/Ubuntu: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    run = full_run(tmp_path_factory.mktemp("browser") / "run", classes=HOSTILE_CLASSES)
    return render_report(run).resolve().as_uri()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AUDITOR_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _requests(driver: object) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        if message["method"] == "Network.loadingFailed":
            urls.append("FAILED " + message["params"].get("errorText", ""))
    return urls


def test_report_loads_without_console_errors_or_outside_requests(
    browser: object, report_url: str
) -> None:
    browser.get_log("browser")  # type: ignore[attr-defined]
    browser.get_log("performance")  # type: ignore[attr-defined]
    browser.get(report_url)  # type: ignore[attr-defined]
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
    assert severe == []
    requests = _requests(browser)
    outside = [u for u in requests if not (u.startswith("data:") or u == report_url)]
    assert outside == []
    assert report_url in requests


def test_class_filter_leaves_only_that_class_visible(browser: object, report_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(report_url)  # type: ignore[attr-defined]
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery-cards .card")  # type: ignore[attr-defined]
    classes = {c.get_attribute("data-class") for c in cards}
    assert len(classes) >= 2
    button = browser.find_element(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, 'button[data-filter="cls"][data-value="class-0"]'
    )
    assert button.text == HOSTILE_CLASSES[0]  # the class name shows as text, not markup
    button.click()
    visible = [c for c in cards if c.is_displayed()]
    assert visible
    assert {c.get_attribute("data-class") for c in visible} == {"class-0"}
    assert len(visible) < len(cards)
    assert button.get_attribute("aria-pressed") == "true"
    browser.find_element(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, 'button[data-filter="cls"][data-value="all"]'
    ).click()
    assert all(c.is_displayed() for c in cards)


def test_flag_filter_keeps_cards_with_that_code(browser: object, report_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(report_url)  # type: ignore[attr-defined]
    browser.find_element(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, 'button[data-filter="flag"][data-value="fixed_location"]'
    ).click()
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery-cards .card")  # type: ignore[attr-defined]
    for card in cards:
        has_code = "fixed_location" in card.get_attribute("data-flags").split()
        assert card.is_displayed() == has_code


def test_clicking_an_image_opens_it_enlarged(browser: object, report_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(report_url)  # type: ignore[attr-defined]
    image = browser.find_element(By.CSS_SELECTOR, "#gallery-cards img.zoomable")  # type: ignore[attr-defined]
    image.click()
    dialog = browser.find_element(By.ID, "zoom")  # type: ignore[attr-defined]
    assert dialog.get_attribute("open") is not None
    shown = dialog.find_elements(By.TAG_NAME, "img")
    assert shown
    assert shown[0].size["width"] > image.size["width"]


def test_every_image_has_alt_text(browser: object, report_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(report_url)  # type: ignore[attr-defined]
    images = browser.find_elements(By.TAG_NAME, "img")  # type: ignore[attr-defined]
    assert len(images) > 10
    assert all((img.get_attribute("alt") or "").strip() for img in images)
    # Every embedded image decodes (a broken data URI has naturalWidth 0).
    broken = browser.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).filter(i => i.naturalWidth === 0).length"
    )
    assert broken == 0


def test_screenshots_full_page_and_phone_width(
    browser: object, report_url: str, screenshot_dir: Path
) -> None:
    browser.set_window_size(1280, 900)  # type: ignore[attr-defined]
    browser.get(report_url)  # type: ignore[attr-defined]
    height = browser.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    browser.set_window_size(1280, int(height) + 140)  # type: ignore[attr-defined]
    full = screenshot_dir / "report_full.png"
    assert browser.save_screenshot(str(full))  # type: ignore[attr-defined]
    browser.set_window_size(400, 900)  # type: ignore[attr-defined]
    overflow = browser.execute_script(  # type: ignore[attr-defined]
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    height = browser.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    browser.set_window_size(400, int(height) + 140)  # type: ignore[attr-defined]
    phone = screenshot_dir / "report_phone.png"
    assert browser.save_screenshot(str(phone))  # type: ignore[attr-defined]
    assert full.stat().st_size > 10_000
    assert phone.stat().st_size > 10_000
    assert overflow <= 0  # nothing wider than a phone screen: tables scroll inside their box


# ---------------------------------------------------------------- the report at 2 and 1 000 classes

#: Upper bound of the report's size at 1 000 classes (every class in the table, capped lists).
MAX_REPORT_BYTES_AT_1000_CLASSES = 3_000_000


@pytest.fixture(scope="module", params=[2, 1000], ids=["2-classes", "1000-classes"])
def scaled_report(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    run = many_classes_run(tmp_path_factory.mktemp(f"k{request.param}") / "run",
                           n_classes=request.param)
    return request.param, render_report(run)


def _visible_rows(driver: object) -> list[str]:
    return driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('#class-table tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[0].textContent.trim())")


def test_first_screen_reads_the_verdict_and_summary_without_console_errors(
    browser: object, scaled_report: tuple[int, Path], screenshot_dir: Path,
) -> None:
    from selenium.webdriver.common.by import By

    n, path = scaled_report
    browser.set_window_size(1280, 900)  # type: ignore[attr-defined]
    browser.get_log("browser")  # type: ignore[attr-defined]
    browser.get(path.resolve().as_uri())  # type: ignore[attr-defined]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # type: ignore[attr-defined]
    sentence = browser.find_element(By.CSS_SELECTOR, ".verdict .sentence")  # type: ignore[attr-defined]
    summary = browser.find_element(By.CSS_SELECTOR, "dl.executive")  # type: ignore[attr-defined]
    top = browser.execute_script(  # type: ignore[attr-defined]
        "return [arguments[0].getBoundingClientRect().bottom, "
        "arguments[1].getBoundingClientRect().top, window.innerHeight]", sentence, summary)
    assert top[0] < top[2]
    assert top[1] < top[2]  # the plain-word summary starts on the first screen
    assert "shortcut learning found" in sentence.text
    cards = browser.find_elements(By.CSS_SELECTOR, "ol.findings > li")  # type: ignore[attr-defined]
    assert 1 <= len(cards) <= 10
    assert browser.save_screenshot(str(screenshot_dir / f"report_{n}_classes_first_screen.png"))  # type: ignore[attr-defined]
    if n == 1000:
        assert path.stat().st_size < MAX_REPORT_BYTES_AT_1000_CLASSES


def test_class_table_filters_and_sorts_in_the_page(
    browser: object, scaled_report: tuple[int, Path],
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    n, path = scaled_report
    browser.get(path.resolve().as_uri())  # type: ignore[attr-defined]
    assert len(_visible_rows(browser)) == n
    search = browser.find_element(By.ID, "class-search")  # type: ignore[attr-defined]
    search.send_keys("c0001")
    assert _visible_rows(browser) == ["c0001"]
    search.clear()
    search.send_keys(" ")  # an input event with an empty query shows every class again
    assert len(_visible_rows(browser)) == n
    Select(browser.find_element(By.ID, "class-kind")).select_by_value("flagged")  # type: ignore[attr-defined]
    flagged = _visible_rows(browser)
    expected = {"c0000"} | {f"c{k:04d}" for k in range(1, n) if k % 3 == 0 or k % 10 == 0}
    assert set(flagged) == expected
    Select(browser.find_element(By.ID, "class-kind")).select_by_value("all")  # type: ignore[attr-defined]
    button = browser.find_element(  # type: ignore[attr-defined]
        By.XPATH, "//table[@id='class-table']//th/button[text()='Class']")
    button.click()
    names = _visible_rows(browser)
    assert names == sorted(names)
    button.click()
    assert _visible_rows(browser) == sorted(names, reverse=True)
    count = browser.find_element(By.ID, "class-count").text  # type: ignore[attr-defined]
    assert count == f"{n} of {n} classes shown"


def test_a_link_to_a_hidden_class_row_clears_the_filter(
    browser: object, scaled_report: tuple[int, Path],
) -> None:
    from selenium.webdriver.common.by import By

    n, path = scaled_report
    browser.get(path.resolve().as_uri())  # type: ignore[attr-defined]
    browser.find_element(By.ID, "class-search").send_keys("no such class")  # type: ignore[attr-defined]
    assert _visible_rows(browser) == []
    browser.execute_script("window.location.hash = 'class-0'")  # type: ignore[attr-defined]
    assert len(_visible_rows(browser)) == n


def test_compare_page_loads_without_console_errors_and_filters(
    browser: object, tmp_path: Path, screenshot_dir: Path,
) -> None:
    from selenium.webdriver.common.by import By

    from auditor.compare import compare_runs
    from auditor.report.compare_page import write_comparison

    before = build_run(tmp_path / "a", classes=HOSTILE_CLASSES, flagged=False,
                       optional_sections=False, seed=1)
    after = full_run(tmp_path / "b", classes=HOSTILE_CLASSES)
    _, page = write_comparison(compare_runs(before, after), tmp_path / "cmp")
    browser.set_window_size(1280, 900)  # type: ignore[attr-defined]
    browser.get_log("browser")  # type: ignore[attr-defined]
    browser.get(page.resolve().as_uri())  # type: ignore[attr-defined]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # type: ignore[attr-defined]
    assert browser.find_elements(By.CSS_SELECTOR, "#changed-cards .card")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "class-search").send_keys("<b>")  # type: ignore[attr-defined]
    assert _visible_rows(browser) == ['Mañana "quoted" & <b>bold</b>']
    height = browser.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    browser.set_window_size(1280, int(height) + 140)  # type: ignore[attr-defined]
    assert browser.save_screenshot(str(screenshot_dir / "compare_full.png"))  # type: ignore[attr-defined]
