"""Screenshots of the web console's pages for the README (docs/images/console-*.png).

Starts a broker on a temporary directory with a little data, opens each page in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``) and saves a PNG per page.

    python tools/console_screenshots.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {
    "overview": "#/",
    "topic": "#/topic/orders",
    "messages": "#/messages?topic=orders&partition=0&limit=12",
    "groups": "#/groups",
    "queue": "#/queue/shipping",
}


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from logstream import Admin, Consumer, GroupAdmin, Producer, QueueConsumer
    from logstream.testing.broker import run_broker
    from logstream.types import TopicPartition

    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, run_broker(tmp, http_listen="127.0.0.1:0") as b:
        admin = Admin(b.address)
        for name, parts in (("orders", 3), ("payments", 2), ("audit", 1)):
            admin.create_topic(name, partitions=parts)
        producer = Producer(b.address)
        for i in range(3000):
            doc = {"order": i, "customer": f"c-{i % 97}", "total": round(i * 1.37, 2)}
            producer.send("orders", json.dumps(doc).encode(), key=b"c-%d" % (i % 97))
            if i % 3 == 0:
                producer.send("payments", b"paid %d" % i)
        producer.flush(30)
        consumer = Consumer(b.address, group="billing", auto_offset_reset="earliest")
        consumer.assign([TopicPartition("orders", p) for p in range(3)])
        consumer.commit({TopicPartition("orders", p): 600 for p in range(3)})
        consumer.close()
        with GroupAdmin(b.address) as ga:  # a queue group with a few dead letters
            ga.create_queue_group("shipping", topics=["payments"], lease_ms=60_000)
        with QueueConsumer(b.address, group="shipping", max_records=20) as q:
            taken: list = []
            deadline = time.monotonic() + 10
            while len(taken) < 20 and time.monotonic() < deadline:
                taken += q.poll(0.5)
            for n, m in enumerate(taken):
                if n % 7 == 3:
                    m.reject(reason="address does not parse")
                elif n < 12:
                    m.ack()
            q.commit()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--window-size=1200,800"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            for name, page in PAGES.items():
                driver.get(f"http://{b.server.http.address}/{page}")
                for _ in range(3):  # a few refreshes, so that rates and charts have points
                    producer.send("orders", b'{"late": true}', key=b"c-1")
                    producer.flush(10)
                    time.sleep(2.1)
                driver.save_screenshot(str(out / f"console-{name}.png"))
                print(f"wrote docs/images/console-{name}.png")
        finally:
            driver.quit()
            producer.close()
            admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
