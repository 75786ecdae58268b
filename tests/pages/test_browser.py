"""The real server in headless Chromium: health endpoint, then the page and its sidebar."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.workspace.paths import REPO_ROOT

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
    """Open a deep link. A new session first shows Streamlit's "Page not found" notice for a
    page that app.py registers (st.navigation runs after routing); close it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    try:
        dialog = WebDriverWait(browser, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[role="dialog"]') or None
        )[0]
        dialog.find_element(By.CSS_SELECTOR, 'button[aria-label="Close"]').click()
    except Exception:  # no notice shown: nothing to close
        pass


@pytest.fixture(scope="module")
def server():
    with serve({}) as url:
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


def test_label_a_feature_reload_and_see_it(small_app_env, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def field(label: str):
        return WebDriverWait(browser, 120).until(
            lambda driver: driver.find_element(By.CSS_SELECTOR, f'[aria-label="{label}"]')
        )

    with serve(small_app_env) as url:
        open_page(browser, f"{url}/search")
        feature = field("Feature id")
        feature.send_keys(Keys.CONTROL, "a")
        feature.send_keys("123")
        field("Label").send_keys("ribosome assembly")
        button = next(
            b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Save label"
        )
        button.click()
        WebDriverWait(browser, 60).until(lambda d: "123: ribosome assembly" in d.page_source)
        browser.refresh()
        WebDriverWait(browser, 120).until(
            lambda d: any(
                "123: ribosome assembly" in element.text
                for element in d.find_elements(By.CSS_SELECTOR, '[data-testid="stText"]')
            )
        )


def test_deep_link_shows_highlighted_tokens(small_app_env, browser, monkeypatch):
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from core.cache.store import ActivationCache
    from core.workspace.workspace import Workspace

    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    cache = ActivationCache.for_workspace(Workspace.open("offline-gemma3-270m"), "forget_corpus")
    feature = int(np.argmax(np.diff(cache.csc()[0])))
    with serve(small_app_env) as url:
        open_page(browser, f"{url}/examples?feature={feature}")
        tokens = WebDriverWait(browser, 120).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "span.ul-tok") or None
        )
        shaded = [t for t in tokens if "rgba(209, 73, 91, 0)" not in t.get_attribute("style")]
        assert shaded, "no token is highlighted"
        assert any("outline" in t.get_attribute("style") for t in tokens)
        assert f"Label feature {feature}" in browser.page_source


def test_move_a_slider_run_and_see_the_accuracy_table(small_app_env, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def field(label: str):
        return WebDriverWait(browser, 120).until(
            lambda driver: driver.find_element(By.CSS_SELECTOR, f'[aria-label="{label}"]')
        )

    def set_number(label: str, value: int) -> None:
        element = field(label)
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(str(value), Keys.TAB)

    with serve(small_app_env) as url:
        open_page(browser, f"{url}/intervene")
        set_number("n", 2)
        WebDriverWait(browser, 60).until(lambda d: "2 features:" in d.page_source)
        set_number("Questions per set (0 = all)", 2)
        set_number("Loss rows per text", 1)
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
        run = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Run")
        run.click()
        table = WebDriverWait(browser, 300).until(
            lambda d: next(
                (
                    t
                    for t in d.find_elements(By.CSS_SELECTOR, '[data-testid="stTable"]')
                    if "WMDP-bio, all questions" in t.text
                ),
                None,
            )
        )
        assert "MMLU side effect" in table.text and "CE loss on forget text" in table.text
