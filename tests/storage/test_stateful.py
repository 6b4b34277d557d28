"""A Hypothesis state machine over a real PartitionLog: append, roll, reopen, crash, retention,
checked against a reference model (a list of batches + bisect)."""

from __future__ import annotations

import bisect
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_helpers import make_batch

from logstream.codec import decode_batch, iter_batches
from logstream.errors import OffsetOutOfRangeError
from logstream.storage import PartitionLog, TopicConfig
from logstream.testing.clock import ManualClock

CONFIG = TopicConfig(
    segment_bytes=1024, flush_policy="never", retention_ms=-1, retention_bytes=2500
)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="logstream-fsm-"))
        self.clock = ManualClock()
        self.log = self._open(clean=False)
        self.bases: list[int] = []  # model: base offset of each batch
        self.counts: list[int] = []
        self.stamps: list[int] = []  # max timestamp of each batch
        self.end = 0
        self.start = 0

    def _open(self, clean: bool) -> PartitionLog:
        return PartitionLog(
            self.dir, topic="t", partition=0, config=CONFIG, clock=self.clock, clean_shutdown=clean
        )

    @rule(count=st.integers(1, 6), ts=st.integers(0, 10_000), size=st.integers(1, 120))
    def append(self, count: int, ts: int, size: int) -> None:
        r = self.log.append(make_batch(count, ts=ts, value_size=size))
        assert r.base_offset == self.end and r.last_offset == self.end + count - 1
        self.bases.append(self.end)
        self.counts.append(count)
        self.stamps.append(ts + count - 1)
        self.end += count

    @rule()
    def reopen_clean(self) -> None:
        assert self.log.close()
        self.log = self._open(clean=True)

    @rule()
    def crash(self) -> None:
        for seg in self.log.segments():
            seg.abandon()
        self.log = self._open(clean=False)
        assert self.log.recovery_report.bytes_truncated == 0

    @rule()
    def retention(self) -> None:
        self.log.enforce_retention()
        new_start = self.log.log_start_offset
        assert new_start >= self.start
        assert new_start == self.end or new_start in self.bases or new_start == 0
        self.start = new_start

    @precondition(lambda self: self.end > 0)
    @rule(data=st.data())
    def read_any_offset(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end - 1))
        k = bisect.bisect_right(self.bases, offset) - 1
        got = decode_batch(self.log.read(offset, 1))
        assert got.header.base_offset == self.bases[k]
        assert got.header.record_count == self.counts[k]

    @precondition(lambda self: self.end > 0)
    @rule(ts=st.integers(-5, 10_200))
    def lookup_timestamp(self, ts: int) -> None:
        first = bisect.bisect_left(self.bases, self.start)
        expected = None
        for i in range(first, len(self.bases)):
            if self.stamps[i] >= ts:
                expected = self.bases[i]
                break
        got = self.log.offset_for_timestamp(ts)
        if expected is None:
            assert got is None
        else:  # segments are searched by their max timestamp, like Kafka
            assert got is not None and got <= expected
            assert self.stamps[self.bases.index(got)] >= ts

    @invariant()
    def offsets_agree(self) -> None:
        assert self.log.log_end_offset == self.end
        assert self.log.log_start_offset == self.start
        assert self.log.log_start_offset <= self.log.flushed_offset <= self.log.log_end_offset
        assert self.log.read(self.end) == b""
        if self.start > 0:
            try:
                self.log.read(self.start - 1)
                raise AssertionError("read below the log start must fail")
            except OffsetOutOfRangeError as exc:
                assert exc.earliest == self.start

    @invariant()
    def whole_log_reads_back(self) -> None:
        if self.end == self.start:
            return
        data = self.log.read(self.start, 1 << 30)
        offsets = [int(o) for b in iter_batches(data) for o in b.offsets]
        assert offsets == list(range(self.start, self.end))

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LogMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestLogMachine = LogMachine.TestCase
