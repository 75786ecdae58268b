"""The real server in headless Chromium: the health endpoint, the pages, and what only a
browser shows (a reload, two tabs at once, a form cleared on submit, a click that changes the
URL). One server of the small workspace serves every test that needs its caches."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core.base.paths import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(extra_env: dict[str, str]):
    """The real `streamlit run app.py` on a free port, until the block ends."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", **extra_env},
    )
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    assert response.read() == b"ok"
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def open_page(browser, url: str) -> None:
    """Open a deep link. A server's first session shows Streamlit's "Page not found" notice
    for a page that app.py registers (st.navigation runs after routing); close it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[role="dialog"], h1') or None
    )
    for dialog in browser.find_elements(By.CSS_SELECTOR, '[role="dialog"]'):
        dialog.find_element(By.CSS_SELECTOR, 'button[aria-label="Close"]').click()


@pytest.fixture(scope="module")
def server():
    with serve({}) as url:
        yield url


@pytest.fixture(scope="module")
def small_server(small_app_env):
    """One server of the small workspace for every test below that needs its caches."""
    with serve(small_app_env) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_shows_the_workspace_in_the_sidebar(server, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    sidebar = WebDriverWait(browser, 90).until(
        lambda driver: next(
            (
                element
                for element in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
                if "blocks.9.hook_resid_post" in element.text
            ),
            None,
        )
    )
    assert "google/gemma-3-270m" in sidebar.text
    assert "offline-gemma3-270m" in sidebar.text
    WebDriverWait(browser, 30).until(
        lambda driver: "Workspace" in driver.find_element(By.TAG_NAME, "h1").text
    )
    shot = Path(tmp_path_factory.mktemp("screens")) / "workspace.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0


def _field(browser, label: str, timeout: float = 120):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, f'[aria-label="{label}"]')
    )


def _set_number(browser, label: str, value: int) -> None:
    from selenium.webdriver.common.keys import Keys

    element = _field(browser, label)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(str(value), Keys.TAB)


def _click(browser, text: str) -> None:
    from selenium.webdriver.common.by import By

    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == text).click()


def _tiny_run_settings(browser) -> None:
    """Two features, c = 2, two questions per set, one loss row per text. c is typed: its
    box starts at a suggestion for the features shown when it first appears, which depends
    on how far the page got before n was typed."""
    from selenium.webdriver.support.ui import WebDriverWait

    _set_number(browser, "n", 2)
    WebDriverWait(browser, 60).until(lambda d: "2 features:" in d.page_source)
    _set_number(browser, "c (or m for scale)", 2)
    _set_number(browser, "Questions per set (0 = all)", 2)
    _set_number(browser, "Loss rows per text", 1)


def _results(browser, timeout: float = 600) -> str:
    """The result table's and metrics' text, once the run has finished."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        table = WebDriverWait(browser, timeout).until(
            lambda d: next(
                (
                    t
                    for t in d.find_elements(By.CSS_SELECTOR, '[data-testid="stTable"]')
                    if "WMDP-bio, all questions" in t.text
                ),
                None,
            )
        )
    except TimeoutException:
        shown = browser.find_elements(
            By.CSS_SELECTOR, '[data-testid="stAlert"], [role="progressbar"]'
        )
        raise AssertionError(f"no results; the page shows: {[e.text for e in shown]}") from None
    metrics = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]')
    return "\n".join([table.text, *(m.text for m in metrics)])


def test_label_a_feature_reload_and_see_it(small_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{small_server}/search")
    _set_number(browser, "Feature id", 123)
    _field(browser, "Label").send_keys("ribosome assembly")
    _click(browser, "Save label")
    WebDriverWait(browser, 60).until(lambda d: "123: ribosome assembly" in d.page_source)
    browser.refresh()
    WebDriverWait(browser, 120).until(
        lambda d: any(
            "123: ribosome assembly" in element.text
            for element in d.find_elements(By.CSS_SELECTOR, '[data-testid="stText"]')
        )
    )


def test_deep_link_shows_highlighted_tokens(small_server, small_app_env, browser, monkeypatch):
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from core.cache.store import SparseActivationStore
    from core.workspace.workspace import Workspace

    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    cache = SparseActivationStore.for_workspace(
        Workspace.open("offline-gemma3-270m"), "forget_corpus"
    )
    feature = int(np.argmax(np.diff(cache.csc()[0])))
    open_page(browser, f"{small_server}/examples?feature={feature}")
    tokens = WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "span.ul-tok") or None
    )
    shaded = [t for t in tokens if "rgba(209, 73, 91, 0)" not in t.get_attribute("style")]
    assert shaded, "no token is highlighted"
    assert any("outline" in t.get_attribute("style") for t in tokens)
    WebDriverWait(browser, 120).until(lambda d: f"Label feature {feature}" in d.page_source)


def test_move_a_slider_run_and_see_the_accuracy_table(small_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{small_server}/intervene")
    _tiny_run_settings(browser)
    thumb = WebDriverWait(browser, 60).until(  # the first per-feature slider
        lambda d: next(
            (
                s
                for s in d.find_elements(By.CSS_SELECTOR, 'input[type="range"]')
                if (s.get_attribute("aria-label") or "").startswith("feature ")
            ),
            None,
        )
    )
    before = thumb.get_attribute("value")
    browser.execute_script("arguments[0].focus();", thumb)
    ActionChains(browser).send_keys(Keys.RIGHT, Keys.RIGHT).perform()
    WebDriverWait(browser, 10).until(lambda d: thumb.get_attribute("value") != before)
    _click(browser, "Run")
    shown = _results(browser)
    assert "MMLU side effect" in shown and "CE loss on forget text" in shown


def test_two_tabs_running_the_same_evaluation_agree_with_a_run_alone(
    small_server, small_app_env, browser
):
    """Both tabs press Run on the same settings: they share one background run (the server
    runs a setting once), show the same numbers, and these equal the same run made alone
    (its memo removed). The clean baseline's memo is kept: it is computed alone either way."""
    evals = Path(small_app_env["UNLEARNING_LENS_CACHE_DIR"]) / "offline-gemma3-270m" / "evals"
    for memo in evals.glob("run-*.json"):  # earlier tests' runs: this one is run afresh
        memo.unlink()
    tabs = []
    for _ in range(2):
        if tabs:
            browser.switch_to.new_window("tab")
        open_page(browser, f"{small_server}/intervene?multiplier=0.5")
        _tiny_run_settings(browser)
        tabs.append(browser.current_window_handle)
    for tab in tabs:  # Run in both, one right after the other
        browser.switch_to.window(tab)
        _click(browser, "Run")
    shown = []
    for tab in tabs:
        browser.switch_to.window(tab)
        shown.append(_results(browser))
    assert shown[0] == shown[1]
    browser.close()  # the second tab
    browser.switch_to.window(tabs[0])
    for memo in evals.glob("run-*.json"):
        memo.unlink()
    browser.refresh()  # the same settings, alone, with nothing memoised
    _tiny_run_settings(browser)
    _click(browser, "Run")
    assert _results(browser) == shown[0]


def test_the_set_note_clears_after_saving_a_set(small_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{small_server}/search")
    form = WebDriverWait(browser, 120).until(
        lambda d: next(
            (
                f
                for f in d.find_elements(By.CSS_SELECTOR, '[data-testid="stForm"]')
                if "Save the current set as" in f.text
            ),
            None,
        )
    )
    form.find_element(By.CSS_SELECTOR, 'input[aria-label="Save the current set as"]').send_keys(
        "browser set"
    )
    note = form.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Note"]')
    note.send_keys("kept from the scatter")
    next(b for b in form.find_elements(By.TAG_NAME, "button") if b.text == "Save set").click()
    WebDriverWait(browser, 60).until(lambda d: "Saved browser set" in d.page_source)
    note = WebDriverWait(browser, 30).until(
        lambda d: next(
            (
                f.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Note"]')
                for f in d.find_elements(By.CSS_SELECTOR, '[data-testid="stForm"]')
                if "Save the current set as" in f.text
            ),
            None,
        )
    )
    assert note.get_attribute("value") == ""


def test_clicking_a_neighbour_opens_it(small_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{small_server}/examples?feature=5")
    WebDriverWait(browser, 120).until(lambda d: "Label feature 5" in d.page_source)
    neighbour = WebDriverWait(browser, 300).until(  # the first nearest decoder direction
        lambda d: next(
            iter(d.find_elements(By.CSS_SELECTOR, '[class*="st-key-open-dec-"] button')), None
        )
    )
    opened = neighbour.text
    assert opened.isdigit() and opened != "5"
    neighbour.click()
    WebDriverWait(browser, 60).until(lambda d: f"Label feature {opened}" in d.page_source)
    WebDriverWait(browser, 30).until(
        lambda d: parse_qs(urlsplit(d.current_url).query).get("feature") == [opened]
    )
    assert _field(browser, "Feature").get_attribute("value") == opened


def test_a_gated_run_shows_the_gate_on_rates(small_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{small_server}/intervene")
    _tiny_run_settings(browser)
    gate = WebDriverWait(browser, 60).until(
        lambda d: next(
            (
                label
                for label in d.find_elements(By.CSS_SELECTOR, '[data-testid="stCheckbox"] label')
                if label.text.startswith("Gate (DSG)")
            ),
            None,
        )
    )
    gate.click()
    WebDriverWait(browser, 10).until(
        lambda d: gate.find_element(By.TAG_NAME, "input").is_selected()
    )
    _click(browser, "Run")
    shown = _results(browser)
    assert "gate on: WMDP-bio prompts (share of sequences edited)" in shown
    assert "alpha = " in browser.page_source
