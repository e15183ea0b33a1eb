"""The live web view in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) follows a `--demo --serve` run through the demo's camera cut to its summary."""
# Tier: device (slow: headless Chromium on a --demo --serve run).
from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.device, pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=900,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def wait_for(what: str, condition, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return value


def test_the_page_follows_a_demo_run_through_the_camera_cut_to_its_summary(browser, tmp_path):
    jsonl = tmp_path / "run.jsonl"
    # the shipped demo recording (real MNIST + FSDD), as `make demo` plays it on a clone without data
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--demo", "--serve", "0", "--jsonl",
                             str(jsonl)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split("web view: ")[1].strip()
        cut = re.search(r"camera off ([\d.]+)-([\d.]+) s", proc.stdout.readline())
        cut_start, cut_end = float(cut[1]), float(cut[2])
        port = int(url.rstrip("/").rsplit(":", 1)[1])

        def state() -> dict:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/state")
            return json.loads(conn.getresponse().read())

        wait_for("the recognizer's first prediction", lambda: (state()["prediction"] or {}).get("verb"), 60)
        assert state()["prediction"]["t"] < cut_start - 2, "the machine is too slow to watch the cut"
        browser.get(url)
        js = browser.execute_script
        first_ms = wait_for("a prediction on the page", lambda: js("return window.karmma.firstPredictionMs"), 5)
        assert first_ms < 1000, f"first prediction shown {first_ms:.0f} ms after the page started loading"
        text = lambda: browser.find_element("id", "prediction").text  # noqa: E731
        texts = {text()}
        wait_for("the prediction text to change", lambda: texts.add(text()) or len(texts) > 1, 5)
        assert any(re.fullmatch(r"\S+ \S+ \u2014 confidence \d+ %", t) for t in texts), texts   # action, then confidence

        count0, t0 = js("return [window.karmma.predictions, window.karmma.lastT]")
        time.sleep(2.0)
        count1, t1 = js("return [window.karmma.predictions, window.karmma.lastT]")
        made = sum(1 for line in jsonl.read_text().splitlines()
                   if '"prediction"' in line and t0 < json.loads(line)["t"] <= t1)
        assert made >= 8 and count1 - count0 >= made, (count1 - count0, made)  # every prediction, ~8/s

        badge = lambda: browser.find_element("id", "badge-V").get_attribute("data-state")  # noqa: E731
        missing = wait_for("the camera badge to turn missing", lambda: badge() != "used" and badge(), cut_start + 5)
        assert missing in ("reconnecting", "stale"), missing
        assert "missing" in browser.find_element("id", "badge-V").get_attribute("class")
        assert js("return window.karmma.lastT") > cut_start - 0.5
        shot_dir = REPO / "runs"  # screenshots and the timings stay here, uncommitted
        shot_dir.mkdir(exist_ok=True)
        browser.save_screenshot(str(shot_dir / "web_view_camera_cut.png"))
        wait_for("the camera badge to come back", lambda: badge() == "used", cut_end - cut_start + 6)
        assert js("return window.karmma.lastT") > cut_end
        assert browser.find_element("id", "eventlist").text  # the timeline has had events
        browser.save_screenshot(str(shot_dir / "web_view.png"))

        proc.send_signal(signal.SIGTERM)  # a clean stop: the summary goes to the page before the server closes
        summary = wait_for("the summary", lambda: browser.find_element("id", "summary").text, 10)
        assert summary.startswith("run ended:") and "capture-to-prediction ms: p50" in summary
        browser.save_screenshot(str(shot_dir / "web_view_summary.png"))
        (shot_dir / "web_view.json").write_text(json.dumps({
            "first_prediction_ms_after_navigation": round(first_ms), "page_predictions_in_2s": count1 - count0,
            "recognizer_predictions_in_2s": made, "camera_badge_while_cut": missing}) + "\n")
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
