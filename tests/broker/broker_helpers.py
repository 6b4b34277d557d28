"""Raw-stub helpers for broker tests (a unique module name: importable from any test file)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from logstream.codec import iter_batches
from logstream.protocol import admin_pb2, admin_pb2_grpc, common_pb2, log_pb2, log_pb2_grpc


class Client:
    """Raw stubs plus a few one-line helpers (deliberately not the client package)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.log = log_pb2_grpc.LogStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> admin_pb2.TopicResult:
        spec = admin_pb2.TopicSpec(
            name=name, partitions=partitions, config={k: str(v) for k, v in config.items()}
        )
        resp = self.admin.CreateTopics(admin_pb2.CreateTopicsRequest(topics=[spec]), timeout=10)
        return resp.topics[0]

    def produce(
        self,
        topic: str,
        partition: int,
        *batches: bytes,
        acks: int = common_pb2.ACKS_LEADER,
        timeout: float = 10,
    ) -> log_pb2.PartitionProduceResponse:
        req = log_pb2.ProduceRequest(
            acks=acks,
            partitions=[
                log_pb2.PartitionProduceData(topic=topic, partition=partition, batches=batches)
            ],
        )
        return self.log.Produce(req, timeout=timeout).partitions[0]

    def fetch(
        self, topic: str, partition: int, offset: int = 0, *, max_bytes: int = 0, **kw: Any
    ) -> log_pb2.FetchPartitionResponse:
        req = log_pb2.FetchRequest(
            partitions=[
                log_pb2.FetchPartition(
                    topic=topic, partition=partition, offset=offset, max_bytes=max_bytes
                )
            ],
            **kw,
        )
        return self.log.Fetch(req, timeout=30).partitions[0]

    def read_all(self, topic: str, partition: int = 0) -> list[tuple[int, bytes | None]]:
        """Every (offset, value) from the start to the current end, fetched in rounds."""
        out: list[tuple[int, bytes | None]] = []
        offset = 0
        while True:
            resp = self.fetch(topic, partition, offset, max_bytes=1 << 20)
            assert resp.error_code == 0, resp.error_message
            if not resp.records:
                return out
            for batch in iter_batches(resp.records):
                for i in range(len(batch)):
                    record_offset = batch.header.base_offset + i
                    if record_offset >= offset:
                        out.append((record_offset, batch.value(i)))
            offset = out[-1][0] + 1 if out else offset

    def assert_serving(self) -> None:
        """The broker still answers a full create/produce/fetch round trip."""
        from logstream.codec import encode_batch

        name = f"alive-{uuid.uuid4().hex[:8]}"
        assert self.create_topic(name).error_code == 0
        res = self.produce(name, 0, encode_batch([b"still alive"]))
        assert res.error_code == 0 and res.results[0].error_code == 0
        assert [v for _, v in self.read_all(name)] == [b"still alive"]


def rss_anon(pid: int) -> int:
    """Anonymous resident memory in bytes: the heap, not the page cache of mapped segments."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/<pid>/status")


def run_sampling_rss(pid: int, threads: list[threading.Thread], timeout: float = 120) -> int:
    """Start ``threads`` and sample ``pid``'s anonymous RSS every 5 ms until they end (or
    ``timeout``); returns the peak's growth over the RSS before they started."""
    base = peak = rss_anon(pid)
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        peak = max(peak, rss_anon(pid))
        time.sleep(0.005)
    for t in threads:
        t.join(timeout=1)
    return peak - base
