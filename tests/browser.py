"""Headless Debian Chromium driven by Selenium with Debian's chromedriver (no driver downloads)."""

from __future__ import annotations

import shutil
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(width: int = 1920, height: int = 1080, performance_log: bool = False) -> webdriver.Chrome:
    """A headless Chromium whose viewport is exactly ``width`` x ``height`` CSS pixels (device scale 1),
    with the browser console (and, with ``performance_log``, DevTools network events) in its logs.

    Raises (never skips) when Chromium or chromedriver is missing: `make test` installs them (Debian
    packages chromium and chromium-driver)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            raise RuntimeError(f"{path} is missing: run `make test` (it installs chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='opswatch-chromium-')}"):
        options.add_argument(flag)
    logs = {"browser": "ALL", **({"performance": "ALL"} if performance_log else {})}
    options.set_capability("goog:loggingPrefs", logs)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    set_viewport(driver, width, height)
    return driver


def set_viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Emulate a ``width`` x ``height`` screen (the window size alone includes the browser's own UI)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def console_errors(driver: webdriver.Chrome) -> list[dict]:
    """Browser console entries of level SEVERE."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
