"""OffsetCommitter alone, over a stub transport: what it sends, what it skips, how it maps
the broker's answers."""

from __future__ import annotations

from typing import Any

import pytest

from logstream import errors
from logstream.client.commits import OffsetCommitter
from logstream.client.subscription import SubscriptionState
from logstream.protocol import group_pb2
from logstream.types import OffsetAndMetadata, TopicPartition

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


class StubGroupTransport:
    """Answers CommitOffsets with the queued outcomes (an exception, or per-partition error
    codes), and FetchOffsets from what was committed."""

    def __init__(self) -> None:
        self.commits: list[group_pb2.CommitOffsetsRequest] = []
        self.outcomes: list[Any] = []
        self.stored: dict[TopicPartition, int] = {}

    def commit_offsets(
        self, request: group_pb2.CommitOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.CommitOffsetsResponse:
        self.commits.append(request)
        outcome = self.outcomes.pop(0) if self.outcomes else {}
        if isinstance(outcome, BaseException):
            raise outcome
        resp = group_pb2.CommitOffsetsResponse()
        for o in request.offsets:
            code = outcome.get((o.topic, o.partition), 0)
            resp.partitions.add(topic=o.topic, partition=o.partition, error_code=code)
            if not code:
                self.stored[TopicPartition(o.topic, o.partition)] = o.offset
        return resp

    def fetch_offsets(
        self, request: group_pb2.FetchOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.FetchOffsetsResponse:
        resp = group_pb2.FetchOffsetsResponse()
        for p in request.partitions:
            off = self.stored.get(TopicPartition(p.topic, p.partition), -1)
            resp.offsets.add(topic=p.topic, partition=p.partition, offset=off)
        return resp


def _committer(transport: StubGroupTransport, epoch: int = 3) -> OffsetCommitter:
    state = SubscriptionState(reset=-2, max_buffer_bytes=1 << 20)
    state.assign([TP0, TP1])
    return OffsetCommitter(
        state,
        transport,  # type: ignore[arg-type]
        "g",
        lambda: ("member-1", epoch),
        request_timeout_s=1.0,
    )


def test_a_commit_carries_the_member_identity_and_every_offset() -> None:
    transport = StubGroupTransport()
    _committer(transport).commit({TP0: 5, TP1: OffsetAndMetadata(7, "m")})
    (req,) = transport.commits
    assert (req.group_id, req.member_id, req.member_epoch) == ("g", "member-1", 3)
    assert [(o.partition, o.offset, o.metadata) for o in req.offsets] == [(0, 5, ""), (1, 7, "m")]


def test_unchanged_positions_are_not_committed_again() -> None:
    transport = StubGroupTransport()
    committer = _committer(transport)
    committer.commit_changed({TP0: 5, TP1: 2})
    committer.commit_changed({TP0: 5, TP1: 3})
    assert [[o.offset for o in r.offsets] for r in transport.commits] == [[5, 2], [3]]
    committer.forget([TP0])
    committer.commit_changed({TP0: 5})
    assert len(transport.commits) == 3


def test_a_stale_epoch_is_retried_once_then_fails_as_commit_failed() -> None:
    transport = StubGroupTransport()
    transport.outcomes = [errors.IllegalGenerationError("stale")]
    _committer(transport).commit({TP0: 1})
    assert len(transport.commits) == 2
    transport.outcomes = [errors.IllegalGenerationError("stale")] * 2
    with pytest.raises(errors.CommitFailedError, match="rejected"):
        _committer(transport).commit({TP0: 1})


def test_a_partition_error_raises_after_the_others_were_recorded() -> None:
    transport = StubGroupTransport()
    transport.outcomes = [{("t", 1): errors.UnknownTopicOrPartitionError.code}]
    committer = _committer(transport)
    with pytest.raises(errors.UnknownTopicOrPartitionError):
        committer.commit({TP0: 4, TP1: 4})
    committer.commit_changed({TP0: 4, TP1: 4})  # only the failed one goes again
    assert [o.partition for o in transport.commits[-1].offsets] == [1]


def test_fetch_committed_gives_none_where_nothing_is_committed() -> None:
    transport = StubGroupTransport()
    committer = _committer(transport)
    committer.commit({TP0: 9})
    assert committer.fetch_committed([TP0, TP1]) == {TP0: OffsetAndMetadata(9, ""), TP1: None}


def test_commit_async_reports_to_the_callback() -> None:
    transport = StubGroupTransport()
    committer = _committer(transport)
    seen: list[tuple[dict[TopicPartition, int], BaseException | None]] = []
    committer.commit_async({TP0: 2}, lambda offsets, err: seen.append((dict(offsets), err)))
    committer.close()
    assert seen == [({TP0: 2}, None)]
