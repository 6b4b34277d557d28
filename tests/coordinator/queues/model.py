"""A reference model of one partition window: a dict of plain records, no numpy, no
parking, every rule written the obvious way. The state machine checks the real window
against it after every step."""

from __future__ import annotations

from dataclasses import dataclass

from logstream.coordinator.queues.columns import (
    ACKED,
    ACQUIRED,
    AVAILABLE,
    DEAD,
    DEAD_PENDING,
    DELAYED,
    DROPPED,
    REASON_EXPIRED,
    REASON_MAX_DELIVERIES,
    REASON_REJECTED,
)
from logstream.coordinator.queues.results import FINISHED, NOT_HELD, NOT_IN_WINDOW, OK, REPEATED

FINAL = (ACKED, DEAD, DROPPED)


@dataclass
class Rec:
    state: int = AVAILABLE
    owner: int = -1
    due: int = 0
    deliveries: int = 0
    key: int | None = None
    expires: int = 0
    reason: int = 0


class ModelWindow:
    def __init__(
        self,
        start: int,
        capacity: int,
        max_deliveries: int,
        key_ordered: bool = False,
        auto_ack: bool = False,
        drop_expired: bool = False,
        backoff_initial: int = 1_000,
        backoff_max: int = 60_000,
    ) -> None:
        self.first = self.start = self.end = start
        self.capacity = capacity
        self.max_deliveries = max_deliveries
        self.key_ordered = key_ordered
        self.auto_ack = auto_ack
        self.drop_expired = drop_expired
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.recs: dict[int, Rec] = {}
        self.acked = self.dead = self.dropped = self.redelivered = 0

    def admit(
        self,
        keys: list[int | None],
        deliver_at: list[int],
        expires: list[int],
    ) -> int:
        n = min(len(keys), self.capacity - (self.end - self.start))
        for i in range(max(n, 0)):
            r = Rec(key=keys[i], expires=expires[i])
            if deliver_at[i] > 0:
                r.state, r.due = DELAYED, deliver_at[i]
            self.recs[self.end] = r
            self.end += 1
        return max(n, 0)

    def advance(self) -> int:
        while self.start < self.end and self.recs[self.start].state in (*FINAL, DELAYED):
            self.start += 1
        return self.start

    def _free(self, r: Rec) -> None:
        r.owner = -1
        if r.deliveries >= self.max_deliveries:
            r.state, r.reason = DEAD_PENDING, REASON_MAX_DELIVERIES
        else:
            r.state = AVAILABLE

    def tick(self, now: int) -> None:
        for r in self.recs.values():
            if r.state == ACQUIRED and r.due <= now:
                self._free(r)
            if r.state == DELAYED and r.due <= now:
                r.state = AVAILABLE
            if r.state in (AVAILABLE, DELAYED) and 0 < r.expires <= now:
                if self.drop_expired:
                    r.state = DROPPED
                    self.dropped += 1
                else:
                    r.state, r.reason = DEAD_PENDING, REASON_EXPIRED

    def _candidates(self) -> list[int]:
        order = sorted(self.recs)
        if not self.key_ordered:
            return [o for o in order if self.recs[o].state == AVAILABLE]

        def busy(r: Rec) -> bool:
            return r.state == ACQUIRED or (r.state == DELAYED and r.deliveries > 0)

        blocked = {r.key for r in self.recs.values() if r.key is not None and busy(r)}
        seen: set[int] = set()
        out = []
        for o in order:
            r = self.recs[o]
            if r.key is None:
                if r.state == AVAILABLE:
                    out.append(o)
                continue
            if r.state != AVAILABLE and not busy(r):
                continue  # finished, dead-pending, or scheduled for later: not a holder
            if r.key in seen:
                continue
            seen.add(r.key)
            if r.state == AVAILABLE and r.key not in blocked:
                out.append(o)
        return out

    def acquire(self, member: int, max_records: int, now: int, lease: int) -> list[int]:
        self.tick(now)
        got = self._candidates()[: max(max_records, 0)]
        for o in got:
            r = self.recs[o]
            r.deliveries += 1
            if r.deliveries > 1:
                self.redelivered += 1
            if self.auto_ack:
                r.state = ACKED
                self.acked += 1
            else:
                r.state, r.owner, r.due = ACQUIRED, member, now + lease
        return got

    def _codes(self, member: int, offsets: list[int]) -> list[int]:
        codes, seen = [], set()
        for o in offsets:
            if o in seen:
                codes.append(REPEATED)
                continue
            seen.add(o)
            if o < 0 or o >= self.end:
                codes.append(NOT_IN_WINDOW)
                continue
            if o < self.first:
                codes.append(FINISHED)
                continue
            r = self.recs[o]
            if r.state in (*FINAL, DEAD_PENDING):
                codes.append(FINISHED)
            elif r.state == ACQUIRED and r.owner == member:
                codes.append(OK)
            else:
                codes.append(NOT_HELD)
        return codes

    def _held(self, member: int, offsets: list[int]) -> tuple[list[int], list[Rec]]:
        codes = self._codes(member, offsets)
        return codes, [self.recs[o] for o, c in zip(offsets, codes, strict=True) if c == OK]

    def ack(self, member: int, offsets: list[int]) -> list[int]:
        codes, recs = self._held(member, offsets)
        for r in recs:
            r.state, r.owner = ACKED, -1
            self.acked += 1
        return codes

    def nack(self, member: int, offsets: list[int], now: int, delay: int | None) -> list[int]:
        codes, recs = self._held(member, offsets)
        for r in recs:
            r.owner = -1
            if r.deliveries >= self.max_deliveries:
                r.state, r.reason = DEAD_PENDING, REASON_MAX_DELIVERIES
                continue
            if delay is None:
                wait = min(self.backoff_initial * 2 ** (r.deliveries - 1), self.backoff_max)
            else:
                wait = delay
            r.due = now + wait
            r.state = DELAYED if wait > 0 else AVAILABLE
        return codes

    def reject(self, member: int, offsets: list[int]) -> list[int]:
        codes, recs = self._held(member, offsets)
        for r in recs:
            r.state, r.owner, r.reason = DEAD_PENDING, -1, REASON_REJECTED
        return codes

    def extend(self, member: int, offsets: list[int], now: int, lease: int) -> list[int]:
        codes, recs = self._held(member, offsets)
        for r in recs:
            r.due = now + lease
        return codes

    def release(self, member: int) -> list[int]:
        out = []
        for o, r in sorted(self.recs.items()):
            if r.state == ACQUIRED and r.owner == member:
                self._free(r)
                out.append(o)
        return out

    def dead_letter(self) -> list[int]:
        out = []
        for o, r in sorted(self.recs.items()):
            if r.state == DEAD_PENDING:
                r.state = DEAD
                self.dead += 1
                out.append(o)
        return out
