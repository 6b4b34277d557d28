"""The console's queue-group pages in headless Chromium against a real broker process:
depth and in-flight per group, a poisoned record in the dead-letter view with its DLQ
headers, and the redrive button (dry-run count, confirm) putting it back in the queue."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import chromium, click, needs_chromium, no_console_errors, texts, wait
from monitoring_helpers import Monitored, http_get, start_monitored

from logstream import Admin, GroupAdmin, Producer, QueueConsumer

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def queue_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    m = start_monitored(tmp_path_factory.mktemp("queues") / "data")
    with Admin(m.address) as admin:
        admin.create_topic("jobs", partitions=1)
    with Producer(m.address) as producer:
        for i in range(4):
            producer.send("jobs", b"task-%d" % i, key=b"k%d" % i, partition=0)
        producer.flush(10)
    with GroupAdmin(m.address) as ga:
        ga.create_queue_group("workers", topics=["jobs"], lease_ms=60_000)
    try:
        yield m
    finally:
        m.proc.terminate()


def _take(q: QueueConsumer, want: int) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        got += q.poll(0.5)
    assert len(got) == want, got
    return got


def _row(driver: Any, selector: str, first_cell: str) -> str | None:
    rows = texts(driver, selector) or []
    return next((r for r in rows if r.split()[:1] == [first_cell]), None)


def test_poisoned_record_shows_in_the_dead_letter_view_and_redrive_brings_it_back(
    queue_broker: Monitored, browser: Any
) -> None:
    base = f"http://{queue_broker.http}"
    with QueueConsumer(queue_broker.address, group="workers", max_records=2) as q:
        held = _take(q, 2)
        poison = next(m for m in held if m.offset == 1)
        poison.reject(reason="cannot parse")
        assert q.commit() == []

        # the list: depth 3 (2 waiting, 1 in flight), 1 dead-lettered
        browser.get(f"{base}/#/queues")
        row = wait(browser, lambda d: _row(d, "tbody tr", "workers"))
        assert row.split()[1:6] == ["3", "2", "1", "0", "1"]
        click(browser, "nav-queues")
        wait(browser, lambda d: texts(d, "a.queue-link") == ["workers"])
        click(browser, selector="a.queue-link")

        # the group's page: the letter with its DLQ headers, not redriven yet
        letter = wait(browser, lambda d: _row(d, "#dead-letters tbody tr", "0"))
        assert "rejected: cannot parse" in letter
        assert "jobs/0@1" in letter and "task-1" in letter and letter.endswith("no")
        assert "in flight 1" in browser.find_element("id", "queue-totals").text
        assert "1 not redriven" in browser.page_source
        assert "null" not in browser.find_element("id", "view").text  # every key is set

        # redrive: a dry-run count first, nothing moves until confirmed
        click(browser, "redrive")
        count = wait(browser, lambda d: texts(d, "#redrive-count"))
        assert "1 dead letters would go back" in count[0]
        status, body = http_get(f"{base}/api/queue?group=workers")
        assert status == 200 and json.loads(body)["total"]["depth"] == 3  # the dry run: no change
        click(browser, "redrive-execute")
        wait(browser, lambda d: texts(d, "#redrive-result") == ["Redriven 1 dead letters."])
        wait(browser, lambda d: (_row(d, "#dead-letters tbody tr", "0") or "").endswith("yes"))
        assert "0 not redriven" in browser.page_source

        for m in held:
            if m is not poison:
                m.ack()
        assert q.commit() == []
        # the record is back in the queue: a member gets task-1 again (a new copy)
        again = _take(q, 3)
        assert sorted(m.value for m in again) == [b"task-0", b"task-1", b"task-2", b"task-3"][1:]
        for m in again:
            m.ack()
        assert q.commit() == []
    no_console_errors(browser)


def test_redrive_api_refuses_bad_bodies(queue_broker: Monitored) -> None:
    import urllib.error
    import urllib.request

    def post(body: bytes, kind: str = "application/json") -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://{queue_broker.http}/api/redrive",
            data=body,
            headers={"Content-Type": kind},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    assert post(b'{"group": "workers"}')[0] == 200
    status, body = post(b"group=workers", "application/x-www-form-urlencoded")
    assert status == 400 and "application/json" in body
    status, body = post(b'{"group": "nope"}')
    assert status == 404 and "GROUP_ID_NOT_FOUND" in body
    status, body = post(b'{"group": "workers", "execute": "yes"}')
    assert status == 400 and "true or false" in body


def test_a_long_topic_list_is_paged_and_filtered(
    tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    m = start_monitored(tmp_path_factory.mktemp("many") / "data")
    try:
        with Admin(m.address) as admin:
            admin.create_topics([(f"many-{i:03d}", 1, None) for i in range(130)])
        browser.get("about:blank")
        browser.get_log("browser")  # drop the lines of pages of earlier tests' brokers
        browser.get(f"http://{m.http}/#/")
        links = wait(browser, lambda d: (t := texts(d, "a.topic-link")) and len(t) == 100 and t)
        assert links[:2] == ["many-000", "many-001"]  # no traffic: by name
        assert "rows 1-100 of 130" in browser.page_source
        click(browser, selector="button.page-next")
        links = wait(browser, lambda d: (t := texts(d, "a.topic-link")) and t[0] > "many-099" and t)
        assert links[0] == "many-100" and len(links) == 30
        wait(browser, lambda d: "rows 101-130 of 130" in d.page_source)  # kept across refreshes
        browser.find_element("id", "filter-topics").send_keys("many-12")
        wait(browser, lambda d: texts(d, "a.topic-link") == [f"many-12{i}" for i in range(10)])
        assert "filtered from 130" in browser.page_source
        no_console_errors(browser)
    finally:
        m.proc.terminate()
