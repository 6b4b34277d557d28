"""Helpers for the console tests in a real browser: headless Chromium (Debian's ``chromium``
and ``chromium-driver``, installed by ``make test`` when missing) driven by selenium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 20

needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="chromium and chromium-driver are not installed (make test installs them)",
)


def chromium() -> Iterator[Any]:
    """A headless Chromium session, quit at the end (for a fixture to yield from)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, condition: Any) -> Any:
    """Wait for ``condition``; live pages re-render every 2 s, so an element read while
    its table is replaced is retried, not an error."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return waiter.until(condition)


def no_console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> None:
    """No SEVERE browser log line, except those containing one of ``allowed`` (a refused
    request the test provoked is logged by Chromium as a failed resource load)."""
    severe = [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
    ]
    assert not severe, severe


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def texts(driver: Any, selector: str) -> list[str] | None:
    """The text of each element matching ``selector``; None while it is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return [e.text for e in css(driver, selector)]
    except StaleElementReferenceException:
        return None


def click(driver: Any, element_id: str = "", *, selector: str = "") -> None:
    """Click the element with this id (or the first matching the CSS ``selector``) once it
    exists, retried if a re-render replaced it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        found = (
            d.find_elements(By.CSS_SELECTOR, selector)
            if selector
            else d.find_elements(By.ID, element_id)
        )
        if not found:
            return False
        try:
            found[0].click()
        except StaleElementReferenceException:
            return False
        return True

    wait(driver, clicked)
