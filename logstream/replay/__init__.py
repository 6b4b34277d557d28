"""Replaying a stretch of the log: the reading engine behind ``tail``, ``consume`` and
``export``, usable without the command line.

- :mod:`~logstream.replay.timespec`: the start/stop grammar (``beginning``, ``-N``,
  ``@TIME``...) and the spec objects it parses into.
- :mod:`~logstream.replay.ranges`: turn specs into one offset :class:`Range` per partition.
- :mod:`~logstream.replay.merge`: read ranges from a source in timestamp order.
- :mod:`~logstream.replay.filters`: key / value regex / header matching, sampling, rate limit.
- :mod:`~logstream.replay.session`: :class:`ReplayRequest` and :class:`Replay`, the whole
  read (last N or a range, following, or as a consumer-group member).
- :mod:`~logstream.replay.member`: reading as a member of a consumer group.
- Sources: :class:`BrokerSource` (a broker, through the client), :class:`DataDirSource` (a
  data directory, storage opened read-only), :class:`MemorySource` (lists in memory).

Layer: above ``client`` and ``storage``, below ``cli``; it never imports the broker, the
coordinator or grpc. Sources import their lower layer lazily, so importing this package loads
neither the client nor storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logstream.lazy import lazy_attributes

if TYPE_CHECKING:
    from logstream.replay.filters import Matcher, RateLimiter, RecordFilter, Sampler
    from logstream.replay.memory import MemorySource
    from logstream.replay.merge import Merger, ReadPacing, read_ranges
    from logstream.replay.ranges import Range, plan_ranges, resolve_partitions, tail_ranges
    from logstream.replay.session import Replay, ReplayRequest, ReplayStats
    from logstream.replay.source import GroupSource, RecordSource, supports_groups
    from logstream.replay.sources import BrokerSource, DataDirSource

# Imported on first use: every CLI command (serve too) parses times with `timespec` alone,
# without the codec and numpy that filters and sessions bring (docs/decisions/0044).
_LAZY = {
    "Matcher": "logstream.replay.filters",
    "RateLimiter": "logstream.replay.filters",
    "RecordFilter": "logstream.replay.filters",
    "Sampler": "logstream.replay.filters",
    "MemorySource": "logstream.replay.memory",
    "Merger": "logstream.replay.merge",
    "ReadPacing": "logstream.replay.merge",
    "read_ranges": "logstream.replay.merge",
    "Range": "logstream.replay.ranges",
    "plan_ranges": "logstream.replay.ranges",
    "resolve_partitions": "logstream.replay.ranges",
    "tail_ranges": "logstream.replay.ranges",
    "Replay": "logstream.replay.session",
    "ReplayRequest": "logstream.replay.session",
    "ReplayStats": "logstream.replay.session",
    "GroupSource": "logstream.replay.source",
    "RecordSource": "logstream.replay.source",
    "supports_groups": "logstream.replay.source",
    "BrokerSource": "logstream.replay.sources",
    "DataDirSource": "logstream.replay.sources",
}


__all__ = [
    "BrokerSource",
    "DataDirSource",
    "GroupSource",
    "Matcher",
    "MemorySource",
    "Merger",
    "Range",
    "RateLimiter",
    "ReadPacing",
    "RecordFilter",
    "RecordSource",
    "Replay",
    "ReplayRequest",
    "ReplayStats",
    "Sampler",
    "plan_ranges",
    "read_ranges",
    "resolve_partitions",
    "supports_groups",
    "tail_ranges",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
