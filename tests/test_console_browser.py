"""The console in a real browser: Debian's chromium, headless, driven by
Selenium through chromium-driver. Log in, search for a rejected message,
open its "why", release a quarantined message and see it arrive at a real
smtp-sink, look at the statistics, log out.

With MXGATE_SCREENSHOTS=DIR the pages are also saved as PNGs there (the
ones in docs/images were made so: see docs/console.md)."""
import os
import pathlib
import shutil
import smtplib
import subprocess
import sys

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from helpers import wait_for
from test_console import start_console

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY = 'at data match header Subject ~ /hold me/ quarantine "held for review"\n'


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def traffic(g):
    """A morning's worth of decisions: refused recipients, accepted and held mail."""
    with smtplib.SMTP("127.0.0.1", g.port, timeout=10) as s:
        s.ehlo("client.test")
        for n, domain in enumerate(["spam.test", "spam.test", "bulk.test"]):
            s.mail(f"offer{n}@{domain}")
            assert s.rcpt(f"someone{n}@nowhere.test")[0] == 554
            s.rset()
    for n, subject in enumerate(["Quarterly report", "hold me: invoice overdue", "Lunch on Friday?"]):
        with smtplib.SMTP("127.0.0.1", g.port, timeout=10) as s:
            s.sendmail(f"colleague{n}@partner.test", ["bob@example.com"],
                       f"From: Colleague <colleague{n}@partner.test>\r\nSubject: {subject}\r\n"
                       f"Message-ID: <b{n}@partner.test>\r\n\r\nSee the attached figures.\r\n".encode())


def test_console_in_a_real_browser(gateway_factory, mxgate_bin, sink, browser):
    g, url = start_console(gateway_factory, mxgate_bin, downstream=sink.address, relay_extra='tls = "none"', policy=POLICY)
    traffic(g)
    shots = os.environ.get("MXGATE_SCREENSHOTS")
    if shots:
        # Two days of a busy MX's history behind the test's own traffic, as a
        # rotated log file the index reads like any other, so the pictures show more.
        pathlib.Path(shots).mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_audit_log.py"), "--records", "6000", "--hours", "48",
                        "--out", str(g.dir / "audit.log.1")], check=True)

    def shot(name):
        if shots:
            browser.save_screenshot(str(pathlib.Path(shots) / f"console-{name}.png"))

    wait = WebDriverWait(browser, 10)
    browser.get(url + "/")
    wait.until(EC.presence_of_element_located((By.ID, "user")))
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "user").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("correct horse battery")
    browser.find_element(By.ID, "login").click()
    wait.until(EC.presence_of_element_located((By.ID, "search")))

    # Search for the rejected message; the index catches up within a second or two.
    def rejected_rows():
        browser.get(url + "/")
        Select(browser.find_element(By.ID, "verdict")).select_by_value("rejected")
        browser.find_element(By.ID, "to").send_keys("nowhere.test")
        browser.find_element(By.ID, "search").click()
        return browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    rows = wait_for(lambda: len(rejected_rows()) == 3 and browser.find_elements(By.CSS_SELECTOR, "#results tbody tr"),
                    15, "three rejected recipients in the search")
    assert "someone" in rows[0].text and "554" in rows[0].text
    shot("search")

    rows[0].find_element(By.CSS_SELECTOR, "a.why").click()
    wait.until(EC.presence_of_element_located((By.ID, "session")))
    assert "Why: session" in browser.find_element(By.TAG_NAME, "h1").text
    assert "554 5.7.1" in browser.page_source and "nowhere.test" in browser.page_source
    shot("why")

    # Release the held message: it arrives at the real smtp-sink.
    browser.get(url + "/quarantine")
    browser.find_element(By.CSS_SELECTOR, "#held a.view").click()
    wait.until(EC.presence_of_element_located((By.ID, "held-id")))
    assert "invoice overdue" in browser.page_source
    shot("quarantine")
    browser.find_element(By.ID, "release").click()
    result = wait.until(EC.presence_of_element_located((By.ID, "result")))
    assert "released" in result.text and sink.address in result.text
    dumps = sink.dumps(3)   # the two accepted messages, then the released one
    assert any(b"Message-ID: <b1@partner.test>" in d for d in dumps)
    browser.get(url + "/quarantine")
    assert browser.find_elements(By.ID, "no-results")

    browser.get(url + "/stats")
    wait.until(EC.presence_of_element_located((By.ID, "chart-hourly")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 5
    assert "spam.test" in browser.page_source
    shot("stats")

    # Log out: the session is over, and pages send the browser back to the login.
    browser.find_element(By.ID, "logout").click()
    wait.until(EC.presence_of_element_located((By.ID, "user")))
    browser.get(url + "/stats")
    wait.until(EC.presence_of_element_located((By.ID, "user")))
    assert "/login" in browser.current_url
