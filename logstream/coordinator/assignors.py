"""Server-side partition assignors: range, round-robin and sticky (the default).

Each assignor is a pure function::

    assign(subscriptions, partition_counts, previous) -> {member_id: frozenset[TopicPartition]}

- ``subscriptions``: member id -> the topics it subscribes to.
- ``partition_counts``: topic -> number of partitions (topics missing here are unknown and
  get no partitions).
- ``previous``: the last target assignment (member id -> partitions); only ``sticky`` uses it.

Every assignor gives each partition of a subscribed topic to exactly one member subscribed to
that topic, and every member id of ``subscriptions`` appears in the result (possibly with an
empty set). When all members subscribe to the same topics:

- ``roundrobin`` and ``sticky`` are balanced within one partition over the whole group;
- ``range`` is balanced within one partition per topic (like Kafka's, the first members of
  the sorted list may get one extra partition of every topic);
- ``sticky`` moves the fewest partitions possible: a member keeps everything it had up to
  its fair share, and only the surplus of over-full members and the partitions of departed
  members move.

With different subscriptions ``sticky`` falls back to "keep, fill the least loaded, then
move from the most to the least loaded while that narrows the gap by two or more".

All functions are deterministic (members and partitions are sorted) and thread-safe (no
shared state).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from logstream.errors import InvalidRequestError
from logstream.types import TopicPartition

Subscriptions = Mapping[str, Collection[str]]
PartitionCounts = Mapping[str, int]
Assignment = dict[str, frozenset[TopicPartition]]
Assignor = Callable[
    [Subscriptions, PartitionCounts, Mapping[str, Collection[TopicPartition]]], Assignment
]

DEFAULT_ASSIGNOR = "sticky"


def _partitions_of(topics: Collection[str], counts: PartitionCounts) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in sorted(set(topics)) for p in range(counts.get(t, 0))]


def _all_partitions(subs: Subscriptions, counts: PartitionCounts) -> list[TopicPartition]:
    topics = {t for ts in subs.values() for t in ts}
    return _partitions_of(topics, counts)


def range_assign(
    subscriptions: Subscriptions,
    partition_counts: PartitionCounts,
    previous: Mapping[str, Collection[TopicPartition]] | None = None,
) -> Assignment:
    """Per topic, split the partitions into contiguous ranges over the sorted subscribers."""
    out: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        n = partition_counts.get(topic, 0)
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not members or n == 0:
            continue
        base, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            size = base + (1 if i < extra else 0)
            out[m].update(TopicPartition(topic, p) for p in range(start, start + size))
            start += size
    return {m: frozenset(s) for m, s in out.items()}


def roundrobin_assign(
    subscriptions: Subscriptions,
    partition_counts: PartitionCounts,
    previous: Mapping[str, Collection[TopicPartition]] | None = None,
) -> Assignment:
    """Deal the sorted partitions of all topics one at a time over the sorted members,
    skipping members that do not subscribe to a partition's topic."""
    out: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return {}
    subs = {m: set(ts) for m, ts in subscriptions.items()}
    i = 0
    for tp in _all_partitions(subscriptions, partition_counts):
        for step in range(len(members)):
            m = members[(i + step) % len(members)]
            if tp.topic in subs[m]:
                out[m].add(tp)
                i = (i + step + 1) % len(members)
                break
    return {m: frozenset(s) for m, s in out.items()}


def sticky_assign(
    subscriptions: Subscriptions,
    partition_counts: PartitionCounts,
    previous: Mapping[str, Collection[TopicPartition]] | None = None,
) -> Assignment:
    """Balanced, and moving as few partitions as possible away from ``previous``."""
    previous = previous or {}
    members = sorted(subscriptions)
    if not members:
        return {}
    subs = {m: frozenset(subscriptions[m]) for m in members}
    all_tps = _all_partitions(subscriptions, partition_counts)
    valid = set(all_tps)

    # 1. Keep what each surviving member still may own (first claimant wins a duplicate).
    kept: dict[str, list[TopicPartition]] = {m: [] for m in members}
    taken: set[TopicPartition] = set()
    for m in members:
        for tp in sorted(previous.get(m, ())):
            if tp in valid and tp.topic in subs[m] and tp not in taken:
                kept[m].append(tp)
                taken.add(tp)
    homogeneous = len(set(subs.values())) == 1
    if homogeneous:
        result = _sticky_homogeneous(members, kept, all_tps, taken)
    else:
        result = _sticky_general(members, subs, kept, all_tps, taken)
    return {m: frozenset(s) for m, s in result.items()}


def _sticky_homogeneous(
    members: list[str],
    kept: dict[str, list[TopicPartition]],
    all_tps: list[TopicPartition],
    taken: set[TopicPartition],
) -> dict[str, list[TopicPartition]]:
    base, extra = divmod(len(all_tps), len(members))
    # The members that already hold the most get the `extra` larger quotas: fewest moves.
    by_size = sorted(members, key=lambda m: (-len(kept[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_size)}
    pool: list[TopicPartition] = [tp for tp in all_tps if tp not in taken]
    for m in members:
        surplus = len(kept[m]) - quota[m]
        if surplus > 0:
            pool.extend(kept[m][-surplus:])
            del kept[m][-surplus:]
    pool.sort()
    it = iter(pool)
    for m in sorted(members, key=lambda m: (len(kept[m]), m)):
        while len(kept[m]) < quota[m]:
            kept[m].append(next(it))
    return kept


def _sticky_general(
    members: list[str],
    subs: dict[str, frozenset[str]],
    kept: dict[str, list[TopicPartition]],
    all_tps: list[TopicPartition],
    taken: set[TopicPartition],
) -> dict[str, list[TopicPartition]]:
    for tp in all_tps:
        if tp in taken:
            continue
        eligible = [m for m in members if tp.topic in subs[m]]
        if eligible:
            target = min(eligible, key=lambda m: (len(kept[m]), m))
            kept[target].append(tp)
    # Move from the most to the least loaded eligible member while the gap is >= 2.
    # Each move lowers the sum of squared sizes, so the loop ends.
    changed = True
    while changed:
        changed = False
        for donor in sorted(members, key=lambda m: (-len(kept[m]), m)):
            for tp in sorted(kept[donor], reverse=True):
                eligible = [m for m in members if tp.topic in subs[m] and m != donor]
                if not eligible:
                    continue
                taker = min(eligible, key=lambda m: (len(kept[m]), m))
                if len(kept[taker]) + 2 <= len(kept[donor]):
                    kept[donor].remove(tp)
                    kept[taker].append(tp)
                    changed = True
                    break
            if changed:
                break
    return kept


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
}


def get_assignor(name: str) -> Assignor:
    """The assignor called ``name`` ("" means the default, sticky)."""
    try:
        return ASSIGNORS[name or DEFAULT_ASSIGNOR]
    except KeyError:
        raise InvalidRequestError(
            f"unknown assignor {name!r}; choose one of {', '.join(sorted(ASSIGNORS))}"
        ) from None
