"""The page at GET /: in a real headless Chromium, a test digit drawn on the canvas is recognised.

Chromium and its WebDriver are Debian packages (scripts/install-tools.sh chromium installs them).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=800,900"]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed: run `bash scripts/install-tools.sh chromium`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver, log_output=str(tmp_path / "chromedriver.log")), options=options)
    try:
        yield session
    finally:
        session.quit()


def shown_digit(browser, timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda b: b.find_element("id", "digit").text not in ("-", ""))
    return browser.find_element("id", "digit").text


def test_a_test_digit_drawn_on_the_canvas_is_recognised_with_probability_bars(served, prepared_dataset, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    images = np.load(prepared_dataset / "test_images.npy")
    labels = np.load(prepared_dataset / "test_labels.npy")
    browser.get(served.url)
    canvas = browser.find_element("id", "pad")
    assert canvas.size == {"width": 280, "height": 280} or canvas.size["width"] >= 280

    # real mouse strokes: a vertical bar, which is a 1
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -90).click_and_hold() \
        .move_by_offset(0, 60).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    assert shown_digit(browser) == "1"
    assert len(browser.find_elements("css selector", "#bars .bar")) == 10

    # test-set digits, painted on the canvas at 10x as a pen would leave them, then classified by the page
    for index in (0, 1, 2, 3, 4):
        browser.find_element("id", "clear").click()
        browser.execute_script("""
            const [pixels] = arguments, pen = document.getElementById("pad").getContext("2d");
            pixels.forEach((row, y) => row.forEach((v, x) => {
                pen.fillStyle = `rgb(${v},${v},${v})`; pen.fillRect(10 * x, 10 * y, 10, 10); }));
            classify();""", images[index].tolist())
        assert shown_digit(browser) == str(labels[index]), f"test image {index}"
        widths = [int(b.find_element("css selector", "div").value_of_css_property("width").removesuffix("px"))
                  for b in browser.find_elements("css selector", "#bars .bar")]
        assert widths.index(max(widths)) == labels[index], "the longest bar is the predicted digit"
