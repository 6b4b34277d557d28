"""In-memory state log and dead-letter outbox: for tests, and to embed a queue group in one
process. Both keep everything in lists; ``crashed_at`` gives what survives a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from logstream.coordinator.queues.deadletter import DeadLetter


class MemoryStateLog:
    """A :class:`~.statelog.StateLogWriter` keeping appended units in a list."""

    def __init__(self, units: Sequence[Sequence[bytes]] = (), *, compact: bool = True) -> None:
        self.units: list[list[bytes]] = [list(u) for u in units]
        self.appends = 0
        self.compact = compact  # False: keep history (tests crash at every earlier point)

    def append(self, records: Sequence[bytes]) -> None:
        self.units.append([bytes(r) for r in records])
        self.appends += 1

    def append_checkpoint(self, units: Sequence[Sequence[bytes]]) -> None:
        for unit in units:
            self.append(unit)
        if self.compact:
            del self.units[: -len(units)]

    def records(self) -> Iterator[bytes]:
        for unit in self.units:
            yield from unit

    def crashed_at(self, units: int) -> MemoryStateLog:
        """What a crash after the first ``units`` appends leaves."""
        return MemoryStateLog(self.units[:units])

    def nbytes(self) -> int:
        return sum(len(r) for u in self.units for r in u)


class MemoryOutbox:
    """A :class:`~.deadletter.DeadLetterOutbox` that keeps the letters it was given."""

    def __init__(self, letters: Sequence[DeadLetter] = ()) -> None:
        self.letters: list[DeadLetter] = list(letters)
        self.fail_next = False

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("dead-letter write failed (injected)")
        self.letters.extend(letters)

    def written(
        self,
        group: str,
        source_topic: str,
        source_partition: int,
        offsets: np.ndarray,
        since_ms: int = 0,
    ) -> np.ndarray:
        have = {
            d.source_offset
            for d in self.letters
            if (d.group, d.source_topic, d.source_partition)
            == (group, source_topic, source_partition)
            and (not since_ms or d.time_ms > since_ms)
        }
        return np.isin(offsets, np.fromiter(have, np.int64, len(have)))

    def crashed_at(self, letters: int) -> MemoryOutbox:
        return MemoryOutbox(self.letters[:letters])
