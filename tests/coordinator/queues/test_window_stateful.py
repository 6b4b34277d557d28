"""The partition window against the reference model (tests/coordinator/queues/model.py):
random admit / acquire / ack / nack / reject / extend / release / time / advance /
dead-letter sequences, plain and key-ordered, with and without no-ACK mode; after every
step the windows must agree on every record and every per-offset result."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from logstream.coordinator.queues import views
from logstream.coordinator.queues.columns import ACQUIRED, DELAYED, FINISHED_STATES
from logstream.coordinator.queues.settings import Backoff
from logstream.coordinator.queues.window import PartitionWindow

from .model import ModelWindow

T0 = 1_000_000
BACKOFF = Backoff(100, 400)
members = st.integers(0, 2)
leases = st.sampled_from([50, 200, 1_000])


class WindowMachine(RuleBasedStateMachine):
    real: PartitionWindow
    model: ModelWindow

    @initialize(
        start=st.integers(0, 5),
        capacity=st.integers(1, 8),
        max_deliveries=st.integers(1, 3),
        key_ordered=st.booleans(),
        auto_ack=st.sampled_from([False, False, False, True]),
        drop_expired=st.booleans(),
    )
    def setup(
        self,
        start: int,
        capacity: int,
        max_deliveries: int,
        key_ordered: bool,
        auto_ack: bool,
        drop_expired: bool,
    ) -> None:
        opts = dict(
            capacity=capacity,
            max_deliveries=max_deliveries,
            key_ordered=key_ordered,
            auto_ack=auto_ack,
            drop_expired=drop_expired,
        )
        self.real = PartitionWindow(start, **opts)  # type: ignore[arg-type]
        self.model = ModelWindow(start, **opts, backoff_initial=100, backoff_max=400)  # type: ignore[arg-type]
        self.now = T0

    def offsets(self, data: st.DataObject) -> list[int]:
        hi = self.model.end + 2
        return data.draw(st.lists(st.integers(-1, hi), max_size=4))

    @rule(
        data=st.data(),
        n=st.integers(0, 5),
    )
    def admit(self, data: st.DataObject, n: int) -> None:
        keys = data.draw(st.lists(st.sampled_from([None, 1, 2, 3]), min_size=n, max_size=n))
        later = st.sampled_from([0, 0, 0, self.now - 10, self.now + 150, self.now + 5_000])
        deliver = data.draw(st.lists(later, min_size=n, max_size=n))
        expires = data.draw(st.lists(later, min_size=n, max_size=n))
        got = self.real.admit(
            n,
            keys=np.array([k or 0 for k in keys], np.uint64),
            keyed=np.array([k is not None for k in keys], np.uint8),
            deliver_at_ms=np.array(deliver, np.int64),
            expires_at_ms=np.array(expires, np.int64),
        )
        assert got == self.model.admit(keys, deliver, expires)

    @rule(member=members, max_records=st.integers(0, 5), lease=leases)
    def acquire(self, member: int, max_records: int, lease: int) -> None:
        got = self.real.acquire(member, max_records, self.now, lease)
        assert got.tolist() == self.model.acquire(member, max_records, self.now, lease)

    @rule(member=members, data=st.data())
    def ack(self, member: int, data: st.DataObject) -> None:
        offs = self.offsets(data)
        assert self.real.ack(member, offs).codes.tolist() == self.model.ack(member, offs)

    @rule(member=members, data=st.data(), delay=st.one_of(st.none(), st.integers(0, 500)))
    def nack(self, member: int, data: st.DataObject, delay: int | None) -> None:
        offs = self.offsets(data)
        real = self.real.nack(member, offs, self.now, BACKOFF, delay)
        assert real.codes.tolist() == self.model.nack(member, offs, self.now, delay)

    @rule(member=members, data=st.data())
    def reject(self, member: int, data: st.DataObject) -> None:
        offs = self.offsets(data)
        assert self.real.reject(member, offs).codes.tolist() == self.model.reject(member, offs)

    @rule(member=members, data=st.data(), lease=leases)
    def extend(self, member: int, data: st.DataObject, lease: int) -> None:
        offs = self.offsets(data)
        real = self.real.extend(member, offs, self.now, lease).codes.tolist()
        assert real == self.model.extend(member, offs, self.now, lease)

    @rule(member=members)
    def release(self, member: int) -> None:
        assert self.real.release(member).tolist() == self.model.release(member)

    @rule(ms=st.sampled_from([0, 1, 49, 50, 99, 100, 150, 300, 1_000, 6_000]))
    def time_passes(self, ms: int) -> None:
        self.now += ms
        self.real.tick(self.now)
        self.model.tick(self.now)

    @rule()
    def advance(self) -> None:
        assert self.real.advance() == self.model.advance()

    @rule()
    def dead_letter(self) -> None:
        offsets, _, _ = views.dead_letter_pending(self.real)
        self.real.mark_dead(offsets)
        self.real.dead_pending = False
        assert offsets.tolist() == self.model.dead_letter()

    @invariant()
    def same_records(self) -> None:
        m = self.model
        offs, state = views.column(self.real, "state")
        tracked = dict(zip(offs.tolist(), range(len(offs)), strict=True))
        cols = {n: views.column(self.real, n)[1] for n in ("owner", "due_ms", "deliveries")}
        for o, r in m.recs.items():
            if o not in tracked:
                assert r.state in FINISHED_STATES, (o, r)
                continue
            i = tracked[o]
            assert (int(state[i]), int(cols["deliveries"][i])) == (r.state, r.deliveries), (o, r)
            if r.state == ACQUIRED:
                assert (int(cols["owner"][i]), int(cols["due_ms"][i])) == (r.owner, r.due)
            if r.state == DELAYED:
                assert int(cols["due_ms"][i]) == r.due
        assert set(tracked) <= set(m.recs)
        assert self.real.start_offset <= m.start or m.recs[m.start].state in FINISHED_STATES
        assert self.real.end_offset == m.end
        totals = (self.real.acked_total, self.real.dropped_total, self.real.redelivered_total)
        assert totals == (m.acked, m.dropped, m.redelivered)
        assert self.real.dead_total == m.dead


WindowMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("QUEUE_FUZZ_EXAMPLES", "100")),
    stateful_step_count=int(os.environ.get("QUEUE_FUZZ_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWindowAgainstModel = WindowMachine.TestCase
