"""Committed offsets of one consumer's group: commit (sync and async) and fetch.

Used by :class:`~logstream.client.membership.GroupMembership` on the application thread
(``commit``, auto-commit in ``poll``, revocations) and by its commit thread
(``commit_async``). ``remember``/``forget`` keep the last committed offset per partition so
that unchanged positions are not committed again; the dict is touched only by those
callers, one at a time (the application thread, or the single commit thread while the
application waits on its Future, as Kafka's consumer also assumes).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from logstream import errors
from logstream.client.subscription import SubscriptionState
from logstream.client.transport_api import TransportLike
from logstream.errors import CommitFailedError
from logstream.protocol import common_pb2, group_pb2
from logstream.protocol.status import error_for_code
from logstream.types import OffsetAndMetadata, TopicPartition

log = logging.getLogger("logstream.client.group")

CommitCallback = Callable[[Mapping[TopicPartition, int], BaseException | None], None]


def tp_messages(tps: Iterable[TopicPartition]) -> list[common_pb2.TopicPartition]:
    """Sorted ``TopicPartition`` protocol messages."""
    return [common_pb2.TopicPartition(topic=t, partition=p) for t, p in sorted(tps)]


class OffsetCommitter:
    """CommitOffsets / FetchOffsets for one group, as the member ``identity()`` names."""

    def __init__(
        self,
        state: SubscriptionState,
        transport: TransportLike,
        group_id: str,
        identity: Callable[[], tuple[str, int]],
        *,
        request_timeout_s: float,
    ) -> None:
        self._state = state
        self._transport = transport
        self._group_id = group_id
        self._identity = identity
        self._timeout = request_timeout_s
        self._committed: dict[TopicPartition, int] = {}
        self._async: concurrent.futures.ThreadPoolExecutor | None = None

    def remember(self, tp: TopicPartition, offset: int) -> None:
        """``offset`` is what the group has committed for ``tp``."""
        self._committed[tp] = offset

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._committed.pop(tp, None)

    def commit_changed(self, positions: Mapping[TopicPartition, int]) -> None:
        """Commit the positions that differ from what was last committed."""
        offsets = {tp: off for tp, off in positions.items() if self._committed.get(tp) != off}
        if offsets:
            self.commit(offsets)

    def commit(self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata]) -> None:
        """Commit ``offsets`` (the next offset to read) synchronously. Raises
        CommitFailedError (fenced / stale), UnknownTopicOrPartitionError,
        OffsetOutOfRangeError, or another LogstreamError of the first failed partition."""
        norm = {
            TopicPartition(*tp): o if isinstance(o, OffsetAndMetadata) else OffsetAndMetadata(o)
            for tp, o in offsets.items()
        }
        if not norm:
            return
        for attempt in range(2):
            member_id, epoch = self._identity()
            req = group_pb2.CommitOffsetsRequest(
                group_id=self._group_id,
                member_id=member_id,
                member_epoch=epoch,
                offsets=[
                    group_pb2.OffsetCommit(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=om.offset,
                        metadata=om.metadata,
                    )
                    for tp, om in sorted(norm.items())
                ],
            )
            try:
                resp = self._transport.commit_offsets(req, timeout=self._timeout)
            except (errors.IllegalGenerationError, errors.UnknownMemberIdError) as exc:
                # The epoch may have moved on between our read and the broker's check:
                # retry once if we still own every partition.
                still_owned = set(norm) <= set(self._state.assigned())
                if attempt == 0 and still_owned and isinstance(exc, errors.IllegalGenerationError):
                    time.sleep(0.01)
                    continue
                raise CommitFailedError(
                    f"commit for group {self._group_id} rejected: {exc}"
                ) from exc
            break
        first: errors.LogstreamError | None = None
        for p in resp.partitions:
            tp = TopicPartition(p.topic, p.partition)
            if p.error_code:
                failure = error_for_code(p.error_code, p.error_message or str(tp))
                if isinstance(failure, errors.IllegalGenerationError):
                    # The partition was revoked from this member (or never its own).
                    failure = CommitFailedError(
                        f"commit for group {self._group_id} rejected: {failure}"
                    )
                first = first or failure
            elif tp in norm:
                self._committed[tp] = norm[tp].offset
        if first is not None:
            raise first

    def commit_async(
        self,
        snapshot: Mapping[TopicPartition, int | OffsetAndMetadata],
        callback: CommitCallback | None,
    ) -> concurrent.futures.Future[None]:
        """Commit ``snapshot`` on the commit thread; the callback gets (offsets, error or
        None)."""
        if self._async is None:
            self._async = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="logstream-commit"
            )

        def run() -> None:
            err: BaseException | None = None
            try:
                self.commit(snapshot)
            except BaseException as exc:
                err = exc
                raise
            finally:
                if callback is not None:
                    flat = {
                        tp: (o.offset if isinstance(o, OffsetAndMetadata) else o)
                        for tp, o in snapshot.items()
                    }
                    try:
                        callback(flat, err)
                    except Exception:
                        log.exception("commit_async callback raised")

        return self._async.submit(run)

    def fetch_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        tps = sorted({TopicPartition(*tp) for tp in partitions})
        req = group_pb2.FetchOffsetsRequest(group_id=self._group_id, partitions=tp_messages(tps))
        resp = self._transport.fetch_offsets(req, timeout=self._timeout)
        out: dict[TopicPartition, OffsetAndMetadata | None] = dict.fromkeys(tps)
        for o in resp.offsets:
            tp = TopicPartition(o.topic, o.partition)
            if o.error_code:
                raise error_for_code(o.error_code, o.error_message or str(tp))
            out[tp] = OffsetAndMetadata(o.offset, o.metadata) if o.offset >= 0 else None
        return out

    def close(self) -> None:
        """Wait for background commits to finish."""
        if self._async is not None:
            self._async.shutdown(wait=True)
