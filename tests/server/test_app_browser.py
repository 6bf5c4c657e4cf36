"""The web app in a real browser: headless Chromium (Debian's chromium + chromium-driver, via Selenium)
opens the page of `t2v serve` with the embedded model, types a prompt, generates, and finds a video
element that plays."""

import shutil
import time

import httpx
import pytest

from t2v.models.loading import default_model_installed


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (see .ci/run)"
    ),
    pytest.mark.skipif(not default_model_installed(), reason="needs the embedded default model"),
]
PROMPT = "a red circle moving right on a black background"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations show there
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no Selenium Manager, no download
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_generate_in_the_browser(browser, tmp_path):
    generate_in_browser(browser, tmp_path, model=None)  # no --model: the embedded one


def generate_in_browser(browser, tmp_path, model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    from server_process import Server

    srv = Server(tmp_path / "data", model)
    try:
        srv.start(timeout=180)
        browser.get(srv.url + "/")
        prompt = WebDriverWait(browser, 60).until(
            EC.element_to_be_clickable((By.CSS_SELECTOR, "#t2v-prompt textarea"))
        )
        prompt.send_keys(PROMPT)
        browser.find_element(By.CSS_SELECTOR, "#t2v-generate").click()
        video = WebDriverWait(browser, 600, poll_frequency=0.5).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "#t2v-output video"))
        )
        state = {}
        deadline = time.time() + 60
        while time.time() < deadline:  # loaded, decodable, has a length, no media error
            state = browser.execute_script(
                "const v = arguments[0]; return {ready: v.readyState, duration: v.duration, "
                "error: v.error && v.error.code,"
                " src: v.currentSrc, w: v.videoWidth, h: v.videoHeight};",
                video,
            )
            if state["ready"] >= 2 and state["duration"] > 0:
                break
            time.sleep(0.5)
        browser.save_screenshot(str(tmp_path / "page.png"))
        assert state["ready"] >= 2 and state["duration"] > 0 and not state["error"], state
        assert state["w"] > 0 and state["h"] > 0, state
        assert browser.execute_script("return arguments[0].play().then(() => true, () => false)", video)
        blocked = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert not blocked, blocked[:3]  # the server's CSP lets the whole page work
        link = browser.find_element(By.CSS_SELECTOR, "#t2v-download")
        assert link.get_attribute("href").endswith("/video?download=1")
        jobs = httpx.get(srv.url + "/v1/jobs", timeout=30).json()["jobs"]  # the page's job is in the API's queue
        assert (
            jobs[0]["source"] == "app" and jobs[0]["status"] == "succeeded" and jobs[0]["params"]["prompt"] == PROMPT
        )
    finally:
        srv.kill()
