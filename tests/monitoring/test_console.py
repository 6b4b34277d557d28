"""The web console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by ``make test`` when missing) driven by selenium against a
real broker process. Pages load without console errors, charts draw, the message browser's
filters return the right records."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitoring_helpers import Monitored, http_get, start_monitored

from logstream import Admin, Consumer, Producer
from logstream.types import TopicPartition

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="chromium and chromium-driver are not installed (make test installs them)",
)
WAIT_S = 20


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    m = start_monitored(tmp_path_factory.mktemp("console") / "data")
    admin = Admin(m.address)
    admin.create_topic("orders", partitions=2)
    admin.close()
    producer = Producer(m.address)
    for i in range(30):
        value = json.dumps({"n": i, "item": f"thing-{i}"}).encode()
        producer.send("orders", value, key=b"k%d" % (i % 3), partition=0)
    producer.send("orders", b"\x00\xff binary", key=b"bin", partition=1)
    producer.flush(10)
    producer.close()
    consumer = Consumer(m.address, group="readers", auto_offset_reset="earliest")
    consumer.assign([TopicPartition("orders", 0)])
    consumer.commit({TopicPartition("orders", 0): 10})
    consumer.close()
    try:
        yield m
    finally:
        m.proc.terminate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
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


def _wait(driver: Any, condition: Any) -> Any:
    """Wait for ``condition``; live pages re-render every 2 s, so an element read while
    its table is replaced is retried, not an error."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def _no_console_errors(driver: Any) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _offsets(driver: Any) -> list[int] | None:
    """The offsets shown in the results table; None while it is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return [int(r.text.split()[0]) for r in _css(driver, "#results tbody tr")]
    except StaleElementReferenceException:
        return None


def test_overview_lists_topics_and_draws_the_rate_chart(
    console_broker: Monitored, browser: Any
) -> None:
    browser.get(f"http://{console_broker.http}/#/")
    _wait(browser, lambda d: [a.text for a in _css(d, "a.topic-link")] == ["orders"])
    # the rate chart draws a line (one poll gives a flat segment, later ones add points)
    points = _wait(
        browser,
        lambda d: [p.get_attribute("points").split() for p in _css(d, "svg.chart polyline")],
    )
    assert len(points) == 1 and len(points[0]) >= 2
    _no_console_errors(browser)


def test_topic_page_shows_partitions(console_broker: Monitored, browser: Any) -> None:
    browser.get(f"http://{console_broker.http}/#/topic/orders")
    _wait(browser, lambda d: "Topic orders" in d.page_source)
    first_table = _wait(browser, lambda d: [r.text.split() for r in _css(d, "table tbody tr")][:2])
    assert [r[0] for r in first_table] == ["0", "1"]
    assert first_table[0][2] == "30"  # end offset of partition 0
    _no_console_errors(browser)


def test_message_browser_filters_by_key_and_pages(console_broker: Monitored, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://{console_broker.http}/#/messages?topic=orders&partition=0&limit=5")
    _wait(browser, lambda d: _offsets(d) == [29, 28, 27, 26, 25])  # newest first
    key = browser.find_element(By.NAME, "key")
    key.clear()
    key.send_keys("k1")
    browser.find_element(By.NAME, "limit").clear()
    browser.find_element(By.NAME, "limit").send_keys("50")
    browser.find_element(By.ID, "browse-go").click()
    _wait(browser, lambda d: _offsets(d) == list(range(28, 0, -3)))
    assert "10 shown" in browser.page_source
    assert '"item": "thing-28"' in _css(browser, "#results tbody tr")[0].text  # pretty JSON
    # oldest first, paged
    browser.find_element(By.NAME, "key").clear()
    browser.find_element(By.NAME, "order").send_keys("oldest first")
    browser.find_element(By.NAME, "limit").clear()
    browser.find_element(By.NAME, "limit").send_keys("20")
    browser.find_element(By.ID, "browse-go").click()
    _wait(browser, lambda d: _offsets(d) == list(range(20)))
    browser.find_element(By.ID, "browse-next").click()
    _wait(browser, lambda d: _offsets(d) == list(range(20, 30)))
    _no_console_errors(browser)


def test_binary_values_show_as_hex(console_broker: Monitored, browser: Any) -> None:
    browser.get(f"http://{console_broker.http}/#/messages?topic=orders&partition=1")
    _wait(browser, lambda d: "1 shown" in d.page_source)
    assert "hex 00ff2062696e617279" in _css(browser, "#results tbody tr")[0].text
    _no_console_errors(browser)


def test_groups_page_shows_lag_and_a_chart(console_broker: Monitored, browser: Any) -> None:
    browser.get(f"http://{console_broker.http}/#/groups")
    _wait(browser, lambda d: "readers (" in d.page_source)
    # 30 records committed at 10 in partition 0, and partition 1 never committed (1 record)
    assert "lag 21" in browser.page_source
    _wait(browser, lambda d: _css(d, "svg.chart polyline"))
    browser.get(f"http://{console_broker.http}/#/queues")
    _wait(browser, lambda d: "No queue groups." in d.page_source)
    _no_console_errors(browser)


def test_text_filter_and_newest_paging_through_the_api(console_broker: Monitored) -> None:
    base = f"http://{console_broker.http}/api/messages?topic=orders&partition=0"
    status, body = http_get(f"{base}&text=thing-1&order=oldest")
    assert status == 200
    found = [r["offset"] for r in json.loads(body)["records"]]
    assert found == [1, *range(10, 20)]
    page = json.loads(http_get(f"{base}&limit=10")[1])
    assert [r["offset"] for r in page["records"]] == list(range(29, 19, -1))
    older = json.loads(http_get(f"{base}&limit=10&offset={page['next_offset']}")[1])
    assert [r["offset"] for r in older["records"]] == list(range(19, 9, -1))


def test_api_errors_are_json(console_broker: Monitored) -> None:
    base = f"http://{console_broker.http}"
    status, body = http_get(f"{base}/api/topic?name=missing")
    assert status == 404 and "UNKNOWN_TOPIC_OR_PARTITION" in json.loads(body)["error"]
    status, body = http_get(f"{base}/api/messages?topic=orders&partition=x")
    assert status == 400 and "integers" in json.loads(body)["error"]
    assert http_get(f"{base}/static/../server.py")[0] == 404
    assert http_get(f"{base}/static/console.js")[0] == 200
