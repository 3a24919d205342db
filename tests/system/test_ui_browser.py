"""End to end: ``musicrec ui`` (Streamlit) in headless Chromium against a real API.

Needs Debian's ``chromium`` and ``chromedriver`` (``scripts/install-os-deps.sh``); skipped
without them, except under CI. Screenshots go to ``test-artifacts/``; with
``MUSICREC_DOCS_SCREENSHOTS=1`` they are also copied to ``docs/images/`` for the docs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_fixtures import (  # noqa: F401  (session fixtures)
    AB,
    INTERLEAVE,
    OnlineApi,
    clean_env,
    free_port,
    musicrec_executable,
    online_api,
    running,
    ui_model,
)

from musicrec.events.store import EventStore

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
DOCS_ENV = "MUSICREC_DOCS_SCREENSHOTS"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)
WAIT_S = 60
UI_START_TIMEOUT_S = 90.0


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (run scripts/install-os-deps.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def api_url(online_api: OnlineApi) -> str:  # noqa: F811
    """The fixture API with an event store and experiments running."""
    return online_api.url


@pytest.fixture(scope="module")
def ui_url(online_api: OnlineApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """``musicrec ui`` on a free loopback port, talking to the fixture API with its admin key."""
    _require_browser()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("ui-streamlit") / "streamlit.log"
    command = [musicrec_executable(), "ui", "--api-url", online_api.url, "--port", str(port)]
    env = clean_env(MUSICREC_UI_ADMIN_KEY=online_api.admin_key)
    with running(command, f"{url}/_stcore/health", log, env, UI_START_TIMEOUT_S):
        yield url


@pytest.fixture(scope="module")
def driver(ui_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Debian Chromium driven through Debian's chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(WAIT_S)
    # The viewport itself, not the window around it, gets the documented size.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield browser
    finally:
        browser.quit()


def _wait_idle(driver, wait) -> None:  # type: ignore[no-untyped-def]
    """Until Streamlit has finished the current run (its 'running' indicator is gone)."""
    from selenium.webdriver.common.by import By

    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))


def _save_screenshot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"could not write {path}"
    if os.environ.get(DOCS_ENV) == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / name)
    return path


def test_pick_a_mood_in_a_real_browser(driver, ui_url: str, api_url: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = httpx.post(
        f"{api_url}/recommend", json={"type": "mood", "mood": "jazz", "k": 12}, timeout=10
    ).json()["recommendations"]
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(ui_url)
    wait.until(lambda d: "Moods" in d.find_element(By.TAG_NAME, "body").text)
    button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".st-key-mood_jazz button"))
    assert "Jazz" in button.text
    button.click()
    first = f"1. {expected[0]['artist']}"
    wait.until(lambda d: first in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    body = driver.find_element(By.TAG_NAME, "body").text
    for rec in expected[:6]:
        assert rec["artist"] in body
    assert "Traceback" not in body
    driver.execute_script("window.scrollTo(0, 0)")
    path = _save_screenshot(driver, "ui-moods.png")
    assert path.stat().st_size > 10_000


def test_music_twins_explain_their_recommendations(driver, ui_url: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{ui_url}/twins")
    button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".st-key-twin_jazz button"))
    button.click()
    wait.until(lambda d: "because you like" in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Listens most to Miles Davis, John Coltrane, Bill Evans" in body
    assert "1. " in body and "Traceback" not in body
    _save_screenshot(driver, "ui-twins.png")


def test_about_page_draws_the_metrics_and_the_map(driver, ui_url: str, api_url: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    version = httpx.get(f"{api_url}/model", timeout=10).json()["version"]
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{ui_url}/about")
    wait.until(lambda d: version in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    charts = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, charts)) >= 2)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "How good is it?" in body and "A map of taste" in body
    assert "Traceback" not in body
    taste = driver.find_element(By.XPATH, "//*[text()='A map of taste']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", taste)
    _save_screenshot(driver, "ui-about-map.png")


def _their_list(api_url: str, user: str) -> list[str]:
    answer = httpx.get(f"{api_url}/users/{user}/recommendations", params={"k": 12}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [r["artist"] for r in answer.json()["recommendations"]]


def test_hide_an_artist_for_a_month_in_a_real_browser(  # type: ignore[no-untyped-def]
    driver,
    ui_url: str,
    online_api: OnlineApi,  # noqa: F811
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = httpx.get(f"{online_api.url}/users", params={"limit": 5}, timeout=10).json()["users"][4]
    before = _their_list(online_api.url, user)
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{ui_url}/for_you?listener={user}")
    wait.until(lambda d: f"1. {before[0]}" in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert f"Recommended for {user}" in body
    for rank, artist in enumerate(before[:6], start=1):
        assert f"{rank}. {artist}" in body
    clicked = time.time()
    driver.find_element(By.CSS_SELECTOR, ".st-key-hide_for_you_1 button").click()
    notice = f"{before[0]} is hidden for {user} until"
    wait.until(lambda d: notice in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    after = _their_list(online_api.url, user)
    assert before[0] not in after and len(after) == len(before)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert f"1. {before[0]}" not in body
    for rank, artist in enumerate(after[:6], start=1):
        assert f"{rank}. {artist}" in body
    assert "Traceback" not in body
    stored = EventStore(online_api.events_url).user_events(user)
    ban = stored[(stored["kind"] == "ban") & (stored["artist"] == before[0])]
    assert len(ban) == 1
    until = float(ban["until"].iloc[0])
    assert clicked + 30 * 86_400 - 5 <= until <= time.time() + 30 * 86_400 + 5
    driver.execute_script("window.scrollTo(0, 0)")
    _save_screenshot(driver, "ui-hide.png")


def test_experiments_page_charts_each_arm_in_a_real_browser(driver, ui_url: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{ui_url}/experiments")
    wait.until(lambda d: INTERLEAVE in d.find_element(By.TAG_NAME, "body").text)
    _wait_idle(driver, wait)
    charts = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, charts)) >= 2)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert AB in body and "Winner: control" in body
    assert "Arm candidate stopped" in body and "guardrail skip_rate" in body
    assert "Traceback" not in body
    driver.execute_script("window.scrollTo(0, 0)")
    _save_screenshot(driver, "ui-experiments.png")
