"""The web console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by ``make test`` when missing) driven by selenium against a
real broker process. Pages load without console errors, charts draw, the message browser's
filters return the right records."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from browser_helpers import chromium, needs_chromium
from browser_helpers import css as _css
from browser_helpers import no_console_errors as _no_console_errors
from browser_helpers import wait as _wait
from monitoring_helpers import Monitored, http_get, start_monitored

from logstream import Admin, Consumer, Producer
from logstream.types import TopicPartition

pytestmark = needs_chromium
T0 = (int(time.time()) // 60 - 60) * 60_000


def _at(minute: int) -> int:
    return T0 + minute * 60_000


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    m = start_monitored(tmp_path_factory.mktemp("console") / "data")
    admin = Admin(m.address)
    admin.create_topic("orders", partitions=2)
    admin.create_topic("events", partitions=1)
    admin.close()
    producer = Producer(m.address)
    for i in range(30):
        value = json.dumps({"n": i, "item": f"thing-{i}"}).encode()
        producer.send("orders", value, key=b"k%d" % (i % 3), partition=0)
    producer.send("orders", b"\x00\xff binary", key=b"bin", partition=1)
    for i in range(20):  # a minute apart, an hour ago; every other one red
        color = b"red" if i % 2 == 0 else b"blue"
        headers = [("color", color), ("n", b"%d" % i)]
        producer.send("events", b"e%d" % i, headers=headers, partition=0, timestamp_ms=_at(i))
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
    yield from chromium()


def _offsets(driver: Any) -> list[int] | None:
    """The offsets shown in the results table; None while it is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return [int(r.text.split()[0]) for r in _css(driver, "#results tbody tr")]
    except StaleElementReferenceException:
        return None


def _form(driver: Any, **fields: str) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        box = driver.find_element(By.NAME, name)
        if box.tag_name != "select":
            box.clear()
        if value:
            box.send_keys(value)
    driver.find_element(By.ID, "browse-go").click()


def test_message_browser_time_window_and_header_filters(
    console_broker: Monitored, browser: Any
) -> None:
    browser.get(f"http://{console_broker.http}/#/messages?topic=events&partition=0")
    _wait(browser, lambda d: _offsets(d) == list(range(19, -1, -1)))
    iso = datetime.fromtimestamp(_at(5) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _form(browser, **{"from": iso, "to": str(_at(9))})
    _wait(browser, lambda d: _offsets(d) == [9, 8, 7, 6, 5])
    assert "time window offsets 5 to 10" in browser.page_source
    _form(browser, header="color=red")
    _wait(browser, lambda d: _offsets(d) == [8, 6])
    _form(browser, header="color=red", order="oldest first", to="")
    _wait(browser, lambda d: _offsets(d) == [6, 8, 10, 12, 14, 16, 18])
    first_row = _css(browser, "#results tbody tr")[0].text
    assert "color=red" in first_row and "n=6" in first_row
    _form(browser, header="n", **{"from": "", "to": ""})  # "has a header n": every record
    _wait(browser, lambda d: _offsets(d) == list(range(20)))
    _no_console_errors(browser)


def test_time_and_header_filters_through_the_api(console_broker: Monitored) -> None:
    base = f"http://{console_broker.http}/api/messages?topic=events&partition=0&order=oldest"
    page = json.loads(http_get(f"{base}&from_ms={_at(3) - 1}&to_ms={_at(4) + 1}")[1])
    assert [r["offset"] for r in page["records"]] == [3, 4]
    assert page["window"] == [3, 5]
    both = f"{base}&header=color%3Dblue&header=n%3D7"
    assert [r["offset"] for r in json.loads(http_get(both)[1])["records"]] == [7]
    assert json.loads(http_get(f"{base}&from_ms={_at(30)}")[1])["records"] == []
    status, body = http_get(f"{base}&from_ms={_at(5)}&to_ms={_at(4)}")
    assert status == 400 and "before from_ms" in json.loads(body)["error"]
    status, body = http_get(f"{base}&header=%3Dx")
    assert status == 400 and "NAME=VALUE" in json.loads(body)["error"]


def test_overview_lists_topics_and_draws_the_rate_chart(
    console_broker: Monitored, browser: Any
) -> None:
    browser.get(f"http://{console_broker.http}/#/")
    _wait(browser, lambda d: [a.text for a in _css(d, "a.topic-link")] == ["events", "orders"])
    # the bound gRPC address, not the configured port 0
    assert f"gRPC {console_broker.address}," in browser.find_element("id", "overview-broker").text
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
    assert "null" not in browser.find_element("id", "results").text  # no next page, no "null"
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
    assert status == 400 and "integer" in json.loads(body)["error"]
    assert http_get(f"{base}/static/../server.py")[0] == 404
    assert http_get(f"{base}/static/console.js")[0] == 200
