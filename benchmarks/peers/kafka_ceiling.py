"""The Kafka replay ceiling: a server that answers Fetch from batches built in memory.

What can one confluent-kafka consumer process replay on this machine, in this run, from a
Kafka server that does nothing? This server holds one topic of one partition, built at
start-up as librdkafka builds a producer's batches (v2 record batches of up to 1,000,000
bytes, no key, no compression) and keeps them as the bytes it sends. It answers
ApiVersions, Metadata, FindCoordinator (the consumer has a group id) and Fetch (the
batches at the fetch offset, whole, up to the partition's byte limit), all on one asyncio
loop: no storage, no conversion, no per-request work beyond a bisect and the frame. The
listener's replay row next to this one tells whether the listener or the client sets the
rate (docs/kafka-protocol.md, "Replay").

    python -m benchmarks.peers.kafka_ceiling serve --port 9999 --records 1000000 --size 100
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import struct
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

READY_LINE = "kafka ceiling ready"
SYSTEM = "Kafka server answering from memory (ceiling)"
TOPIC = "ceiling"
BATCH_BYTES = 1_000_000  # librdkafka's default batch.size
_SIZE = struct.Struct(">i")
_BASE_OFFSET = struct.Struct(">q")


def build_batches(records: int, size: int) -> tuple[list[int], list[bytes]]:
    """The partition's batches and their base offsets, as a producer would have sent them."""
    from aiokafka.record._crecords import DefaultRecordBatchBuilder

    from .workload import payloads

    pool = payloads(size, records)
    bases: list[int] = []
    batches: list[bytes] = []
    offset = 0
    while offset < records:
        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, BATCH_BYTES)
        first = offset
        while offset < records:
            value = pool[offset % len(pool)]
            if builder.append(offset - first, 1_700_000_000_000, None, value, []) is None:
                break
            offset += 1
        raw = bytearray(builder.build())
        _BASE_OFFSET.pack_into(raw, 0, first)  # outside the batch's CRC
        bases.append(first)
        batches.append(bytes(raw))
    return bases, batches


class IdleKafkaServer:
    """The requests a replaying confluent-kafka consumer sends, answered from memory."""

    def __init__(self, port: int, records: int, size: int) -> None:
        from kio.schema.errors import ErrorCode

        from logstream.kafka import wire
        from logstream.kafka.group_apis import VERSIONS as GROUP_VERSIONS

        self.wire = wire
        self.none = ErrorCode.none
        self.port = port
        self.bases, self.batches = build_batches(records, size)
        self.end = records
        # The listener's own table: librdkafka derives features from it (record batches
        # v2 need Produce 3+ beside Fetch 4+); a request this server lacks closes.
        wire.register(wire.FIND_COORDINATOR, GROUP_VERSIONS[wire.FIND_COORDINATOR])
        self.versions = dict(wire.SUPPORTED)

    def answer(self, frame: bytes) -> tuple[bytes, float] | None:
        """The response frame of one request and how long to hold it (a Fetch at the end
        waits its max_wait, as a broker's long-poll would), or None to close (an API it
        lacks)."""
        wire = self.wire
        req = wire.parse_request(frame)
        key, version = req.api_key, req.api_version
        hold = 0.0
        if key == wire.FETCH:
            body = self.fetch(req.body)
            if not any(p.records for t in body.responses for p in t.partitions):
                hold = min(wire.ms(req.body.max_wait), 500) / 1000
        elif key == wire.API_VERSIONS:
            mod = wire.response_module(key, version)
            keys = tuple(
                wire.build(mod.ApiVersion, api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(self.versions.items())
            )
            body = wire.build(mod.ApiVersionsResponse, error_code=self.none, api_keys=keys)
        elif key == wire.METADATA:
            body = self.metadata(wire.response_module(key, version))
        elif key == wire.FIND_COORDINATOR:
            mod = wire.response_module(key, version)
            body = wire.build(
                mod.FindCoordinatorResponse,
                error_code=self.none,
                node_id=0,
                host="127.0.0.1",
                port=self.port,
            )
        else:
            return None
        return wire.encode_response(key, version, req.correlation_id, body), hold

    def metadata(self, mod: Any) -> Any:
        build = self.wire.build
        partition = build(
            mod.MetadataResponsePartition,
            error_code=self.none,
            partition_index=0,
            leader_id=0,
            leader_epoch=0,
            replica_nodes=(0,),
            isr_nodes=(0,),
            offline_replicas=(),
        )
        topic = build(
            mod.MetadataResponseTopic,
            error_code=self.none,
            name=TOPIC,
            is_internal=False,
            partitions=(partition,),
            topic_authorized_operations=-(2**31),
        )
        broker = build(mod.MetadataResponseBroker, node_id=0, host="127.0.0.1", port=self.port)
        return build(
            mod.MetadataResponse,
            brokers=(broker,),
            cluster_id="ceiling",
            controller_id=0,
            topics=(topic,),
            topic_authorized_operations=-(2**31),
            cluster_authorized_operations=-(2**31),
        )

    def fetch(self, body: Any) -> Any:
        from logstream.kafka.fast_encode import (
            FetchAnswer,
            FetchPartitionAnswer,
            FetchTopicAnswer,
        )

        topics = []
        for t in body.topics:
            parts = []
            for p in t.partitions:
                limit = max(int(p.partition_max_bytes), 1)
                offset = int(p.fetch_offset)
                i = bisect.bisect_right(self.bases, offset) - 1 if offset < self.end else -1
                pieces: list[bytes | memoryview] = []
                used = 0
                while 0 <= i < len(self.batches) and (
                    not pieces or used + len(self.batches[i]) <= limit
                ):
                    pieces.append(self.batches[i])
                    used += len(self.batches[i])
                    i += 1
                parts.append(FetchPartitionAnswer(p.partition, 0, self.end, self.end, 0, pieces))
            topics.append(FetchTopicAnswer(t.topic, tuple(parts)))
        return FetchAnswer(tuple(topics))


class _Connection(asyncio.Protocol):
    def __init__(self, server: IdleKafkaServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while len(self.buf) >= 4:
            size = _SIZE.unpack_from(self.buf)[0]
            if len(self.buf) < 4 + size:
                return
            frame = bytes(self.buf[4 : 4 + size])
            del self.buf[: 4 + size]
            answer = self.server.answer(frame)
            if answer is None:
                self.transport.close()
                return
            response, hold = answer
            if hold:  # may overtake a later answer: librdkafka matches by correlation id
                asyncio.get_running_loop().call_later(hold, self.transport.write, response)
            else:
                self.transport.write(response)


async def _serve(port: int, records: int, size: int) -> None:
    idle = IdleKafkaServer(port, records, size)
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(idle), "127.0.0.1", port
    )
    print(READY_LINE, flush=True)
    async with server:
        await server.serve_forever()


def ceiling_server(records: int, size: int):  # -> servers.Server
    """Start the ceiling server like the other peers' servers (free loopback port, temp dir)."""
    from . import servers

    port = servers.free_port()
    wd = servers._workdir("kafka-ceiling")
    argv = [
        sys.executable, "-m", "benchmarks.peers.kafka_ceiling", "serve",
        "--port", str(port), "--records", str(records), "--size", str(size),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    srv = servers.Server("kafka-ceiling", argv, port, wd, ready_line=READY_LINE, env=env)
    srv.extra["config"] = "asyncio server, one topic of batches built in memory"
    return srv.start(timeout=120.0)


def replay(addr: str, topic: str, n: int, size: int):  # -> workload.Result
    """bench-peers' Kafka replay (``kafka_adapter.replay``: the same consumer, settings and
    loop) of ``n`` records of ``size`` bytes from a ceiling server started for it; ``addr``
    and ``topic`` (the listener's) are not used."""
    from . import kafka_adapter
    from .workload import Result

    srv = ceiling_server(n, size)
    try:
        cpu0 = srv.cpu_seconds()
        res = kafka_adapter.replay(srv.addr, TOPIC, n, size)
        cpu_ns = (srv.cpu_seconds() - cpu0) / max(res.records, 1) * 1e9
    finally:
        srv.stop()
    return Result(
        SYSTEM, "replay", res.records, res.bytes, res.seconds, extra={"ceiling_cpu_ns": cpu_ns}
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--records", type=int, required=True)
    serve.add_argument("--size", type=int, required=True)
    args = ap.parse_args(argv)
    asyncio.run(_serve(args.port, args.records, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
